"""`eggroll-ndcg pareto` end to end on the synthetic collection: the written fronts are non-dominated, selected
on validation, their hypervolumes are moocore's/pymoo's, the PNG exists, and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymoo.indicators.hv import HV
from synthetic_collection import synthetic_encoded

import eggroll_ndcg.train.prepare as prepare
from eggroll_ndcg.cli import main

SMALL = ["--set", "pool_size=32", "--set", "batch_queries=16", "--set", "num_steps=4", "--set", "eval_every=2",
         "--set", "es.population_size=16", "--set", "es.sigma=0.05", "--set", "es.pair_chunk=4",
         "--set", "genetic.num_individuals=16", "--quiet"]


@pytest.fixture()
def synthetic_data(monkeypatch, synthetic_folder):
    """prepare_data on the synthetic embeddings (no encoder run)."""
    real = prepare.prepare_data
    monkeypatch.setattr(prepare, "prepare_data",
                        lambda config, progress=True: real(config, encoded=synthetic_encoded(synthetic_folder),
                                                           progress=False))
    return synthetic_folder


def _dominates(a, b) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


@pytest.fixture()
def front(synthetic_data, tmp_path, capsys):
    out = tmp_path / "front"
    code = main(["pareto", "--task", str(synthetic_data), "--objectives", "ndcg@10,share@10",
                 "--groups", "train_positive", "--seeds", "0,1", "--weights", "0,1", "--surrogate-weights", "0,1",
                 "--mmr-lambdas", "1,0.5", "--exposure-betas", "0,1", "--output-dir", str(out), *SMALL])
    assert code == 0, capsys.readouterr().err
    return out, json.loads((out / "front.json").read_text())


def test_every_written_front_is_non_dominated_and_its_hypervolume_is_pymoos(front):
    out, report = front
    assert report["reference"] == [0.0, -1.0]
    assert set(report["methods"]) == {"eggroll-weighted", "eggroll-pareto", "genetic-weighted", "genetic-pareto",
                                      "gradient-surrogate", "mmr-zero-shot", "mmr-gradient", "exposure-rerank",
                                      "zero-shot"}
    for method, entry in report["methods"].items():
        assert set(entry["seeds"]) == {"0", "1"}
        for seed in entry["seeds"].values():
            points = np.array(seed["front"])
            assert len(points) >= 1
            for a in points:
                assert not any(_dominates(b, a) for b in points), method
            reference = np.array(report["reference"])
            expected = HV(ref_point=-reference)(-points) if (points > reference).all(axis=1).any() else 0.0
            assert seed["hypervolume"] == pytest.approx(expected, abs=1e-12)
        values = [s["hypervolume"] for s in entry["seeds"].values()]
        assert entry["hypervolume_mean"] == pytest.approx(np.mean(values))
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_front_is_chosen_on_validation_not_on_test(front):
    _, report = front
    for entry in report["methods"].values():
        for seed in entry["seeds"].values():
            candidates = seed["candidates"]
            val = np.array([c["val"] for c in candidates])
            for c, v in zip(candidates, val):  # selected on val <=> no candidate dominates it on val
                assert c["selected_on_val"] == (not any(_dominates(w, v) for w in val))
            selected_test = [c["test"] for c in candidates if c["selected_on_val"]]
            for point in seed["front"]:
                assert point in selected_test


def test_paired_comparisons_are_eggroll_minus_baseline_per_seed(front):
    _, report = front
    for evolved in ("eggroll-weighted", "genetic-pareto"):
        cmp = report["comparisons"][f"{evolved} - mmr-zero-shot"]
        ours, theirs = report["methods"][evolved]["seeds"], report["methods"]["mmr-zero-shot"]["seeds"]
        assert cmp["per_seed"] == pytest.approx([ours[s]["hypervolume"] - theirs[s]["hypervolume"] for s in ours])


@pytest.mark.parametrize("extra,message", [
    (["--objectives", "ndcg@10"], "at least two"),
    (["--objectives", "ndcg@10,nothing@10"], "unknown objective"),
    (["--objectives", "ndcg@10,share@10", "--groups", "articles"], "unknown grouping"),
    (["--objectives", "ndcg@10,share@10", "--reference", "0"], "--reference"),
    (["--objectives", "ndcg@10,share@10", "--methods", "eggroll-pareto,genetic-paretto"], "unknown genetic-paretto"),
])
def test_bad_input_is_one_line(extra, message, synthetic_data, tmp_path, capsys):
    code = main(["pareto", "--task", str(synthetic_data), "--output-dir", str(tmp_path / "x"), *SMALL, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("eggroll-ndcg: ") and "\n" not in err and message in err, err


def _part(synthetic_data, tmp_path, name, methods, *extra):
    out = tmp_path / name
    code = main(["pareto", "--task", str(synthetic_data), "--objectives", "ndcg@10,share@10", "--groups",
                 "train_positive", "--seeds", "0,1", "--weights", "0,1", "--mmr-lambdas", "1,0.5", "--methods", methods,
                 "--output-dir", str(out), *SMALL, *extra])
    assert code == 0
    return str(out / "front.json")


def test_fronts_run_in_two_commands_and_merged_equal_one_command(front, synthetic_data, tmp_path, capsys):
    _, whole = front
    a = _part(synthetic_data, tmp_path, "a", "eggroll-weighted,zero-shot")
    b = _part(synthetic_data, tmp_path, "b", "mmr-zero-shot,zero-shot", "--set", "genetic.mutation_sigma=0.01")
    capsys.readouterr()
    assert main(["pareto", "--merge", a, b, "--output-dir", str(tmp_path / "merged")]) == 0
    printed = capsys.readouterr().out
    merged = json.loads((tmp_path / "merged" / "front.json").read_text())
    assert set(merged["methods"]) == {"eggroll-weighted", "zero-shot", "mmr-zero-shot"}  # zero-shot kept once
    for method, entry in merged["methods"].items():
        assert entry["seeds"] == whole["methods"][method]["seeds"]
        assert entry["hypervolume_mean"] == pytest.approx(whole["methods"][method]["hypervolume_mean"])
    cmp = merged["comparisons"]["eggroll-weighted - mmr-zero-shot"]
    assert cmp == whole["comparisons"]["eggroll-weighted - mmr-zero-shot"]
    assert f"note: genetic.mutation_sigma: 0.02 in {a}, 0.01 in {b}" in printed  # differing settings are said
    assert (tmp_path / "merged" / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_merge_refuses_another_protocol_and_a_method_with_other_fronts(synthetic_data, tmp_path, capsys):
    a = _part(synthetic_data, tmp_path, "a", "mmr-zero-shot,zero-shot")
    other_val = _part(synthetic_data, tmp_path, "g", "zero-shot", "--set", "max_val_queries=5")
    altered = str(tmp_path / "l.json")
    report = json.loads(open(a).read())
    report["methods"]["mmr-zero-shot"]["seeds"]["0"]["hypervolume"] += 0.1
    open(altered, "w").write(json.dumps(report))
    capsys.readouterr()
    for files, message in (([a, other_val], "max_val_queries"), ([a, altered], "mmr-zero-shot is also in"),
                           ([a], "at least two")):
        assert main(["pareto", "--merge", *files, "--output-dir", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("eggroll-ndcg: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "m" / "front.json").exists()


@pytest.mark.parametrize("text,message", [("{\n  \"methods\": [,\n}", ":2: not JSON"),
                                          ('{"methods": {}}', "not a front.json"),
                                          (None, "cannot read")])
def test_a_bad_front_file_is_one_line_naming_it(text, message, tmp_path, capsys):
    path = tmp_path / "front.json"
    if text is not None:
        path.write_text(text)
    assert main(["pareto", "--merge", str(path), str(path), "--output-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and str(path) in err, err


def test_objectives_are_required_without_merge(synthetic_data, tmp_path, capsys):
    assert main(["pareto", "--task", str(synthetic_data), "--output-dir", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--objectives is required" in capsys.readouterr().err
