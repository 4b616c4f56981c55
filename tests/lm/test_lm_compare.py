"""`run_compare` end to end on the micro Llama with the real ES, GRPO and judges (quick preset)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eggroll_ndcg.lm import compare


@pytest.fixture(scope="module")
def quick_run(micro_folder, small_retrieval_corpus, tmp_path_factory):
    """One quick compare, recording every task id the validation scorer and the trainers saw."""
    seen = {"val_scored": [], "trained": []}
    score, train = compare._Runner.val_reward, compare._Runner.train

    def spy_val(self, model):
        seen["val_scored"].extend(t.id for t in self.tasks["val"])
        return score(self, model)

    def spy_train(self, method, config, seed, work):
        seen["trained"].extend(t.id for t in self.tasks["train"])
        return train(self, method, config, seed, work)

    out = tmp_path_factory.mktemp("compare")
    mp = pytest.MonkeyPatch()
    mp.setattr(compare._Runner, "val_reward", spy_val)
    mp.setattr(compare._Runner, "train", spy_train)
    try:
        results = compare.run_compare(compare.LMCompareOptions.quick(model=str(micro_folder)), out, progress=False)
    finally:
        mp.undo()
    return results, out, seen


def test_outputs_exist_and_table_has_base_es_grpo(quick_run):
    results, out, _ = quick_run
    assert set(results["table"]) == {"base", "es", "grpo"}
    for name in ("results.json", "results.md", "timings.json"):
        assert (out / name).is_file()
    md = (out / "results.md").read_text()
    for method in ("| base |", "| es |", "| grpo |", "ES -> GRPO"):
        assert method in md
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "interpolation.png", "robustness.png", "update_cosine_by_layer.png", "update_share_and_rank.png"]
    for method in ("es", "grpo"):
        for seed in (0, 1):
            folder = out / "models" / f"{method}-seed{seed}"
            assert (folder / "model.safetensors").is_file() and (folder / "run.json").is_file()


def test_selection_uses_validation_ids_only_and_test_ids_are_disjoint(quick_run):
    results, _, seen = quick_run
    ids = results["tasks"]
    assert len(ids["test"]) == 2 and not set(ids["test"]) & (set(ids["train"]) | set(ids["val"]))
    assert set(seen["val_scored"]) == set(ids["val"])
    assert set(seen["trained"]) == set(ids["train"])
    grid = results["selection"]["es"]["grid"]
    best = max(grid, key=lambda e: e["val_reward"])
    assert results["selection"]["es"]["chosen"] == best["config"] and len(grid) == 2
    assert len(results["selection"]["grpo"]["grid"]) == len(grid)


def test_table_is_the_mean_over_seeds_of_the_per_prompt_judges(quick_run):
    results, _, _ = quick_run
    for method in ("es", "grpo"):
        per_prompt = results["per_prompt"][method]["retrieval_ndcg@10"]
        assert np.mean(per_prompt) == pytest.approx(results["table"][method]["test/retrieval_ndcg@10"][0])
    assert results["table"]["base"]["test/kl_to_base"][0] == pytest.approx(0.0, abs=1e-9)
    rows = results["significance"]
    assert {(r["method"], r["reference"]) for r in rows} == {("es", "base"), ("grpo", "base"), ("es", "grpo")}
    assert all(r["holm_p"] >= r["randomization_p"] for r in rows)
    assert not any(r["metric"] == "kl_to_base" and r["reference"] == "base" for r in rows)


def test_es_models_moved_only_perturbed_linear_weights(quick_run):
    results, _, _ = quick_run
    fp = results["weight_space"]["footprints"]["es"]
    assert fp["group_share"]["embedding"] == 0.0 and fp["group_share"]["norm"] == 0.0
    assert sum(fp["share"].values()) == pytest.approx(1.0)


def test_rerun_reuses_saved_models_and_is_deterministic(quick_run, micro_folder):
    results, out, _ = quick_run
    again = compare.run_compare(compare.LMCompareOptions.quick(model=str(micro_folder)), out, progress=False)
    assert json.dumps(again["table"], sort_keys=True) == json.dumps(results["table"], sort_keys=True)
    assert again["runs"] == json.loads(json.dumps(results["runs"]))


def test_paired_rows_holm_over_all_rows():
    rng = np.random.default_rng(0)
    per = {m: {"conciseness": rng.normal(size=8), "kl_to_base": rng.normal(size=8)} for m in ("base", "es", "grpo")}
    per["es"]["conciseness"] = per["base"]["conciseness"] + 5.0
    rows = compare.paired_rows(per, ["conciseness", "kl_to_base"])
    assert len(rows) == 4  # KL only ES vs GRPO
    es_base = next(r for r in rows if r["method"] == "es" and r["reference"] == "base")
    assert es_base["mean_difference"] == pytest.approx(5.0) and es_base["wins"] == 8
    assert es_base["randomization_p"] == pytest.approx(2 / 2**8)
