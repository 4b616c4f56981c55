"""The analysis is not tied to method names or to a seen-document group: genetic and hybrid runs are
analysed like any other (their paths reproduce their own figures), families come from the config sections a
method reads, methods trained to different training gains are compared at equal gain only where all their
runs reach it, and a collection with no seen-document test query (SQuAD's article split) gives n/a there."""

from __future__ import annotations

import json

import pytest
from analysis_tiny import tiny_config
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.analysis.analyze import AnalysisOptions, analyze, family
from eggroll_ndcg.analysis.report import equal_gain, markdown
from eggroll_ndcg.train.prepare import PreparedData, prepare_data
from eggroll_ndcg.train.trainer import Trainer

FAST = AnalysisOptions(points=3, draws=1, noise_scales=(0.0, 0.1), kl_samples=4, kl_queries=8)
EXTRA = {"genetic": {"genetic.num_individuals": 16, "genetic.mutation_sigma": 0.05, "genetic.max_terms": 4},
         "guided_es": {"guided.alpha": 0.5, "guided.k": 2}}


@pytest.fixture(scope="module")
def five_method_runs(tiny_runs, synthetic_folder, tmp_path_factory):
    """The conftest runs (eggroll seeds 0, 1; infonce seed 0) plus tiny genetic and guided_es runs (seed 0)."""
    root = tmp_path_factory.mktemp("more-methods")
    encoded = synthetic_encoded(synthetic_folder)
    folders = dict(tiny_runs)
    for method, extra in EXTRA.items():
        out = root / f"{method}-seed0"
        config = tiny_config(synthetic_folder, out, method, 0, **extra)
        Trainer(config, data=prepare_data(config, encoded=encoded, progress=False), progress=False).train()
        folders[f"{method}-seed0"] = out
    return folders


def test_family_is_read_from_the_sections_a_method_uses():
    assert family("eggroll") == "ES"
    assert family("infonce") == family("pl_pg") == family("approx_ndcg") == "gradient"
    assert family("genetic") == family("genetic_es") == "genetic"
    assert family("guided_es") == family("es_then_gradient") == "hybrid"


def test_genetic_and_hybrid_runs_are_analysed_and_their_paths_reproduce_their_own_figures(
        five_method_runs, synthetic_folder, tmp_path):
    analysis = analyze(list(five_method_runs.values()), tmp_path / "out", FAST,
                       encoded=synthetic_encoded(synthetic_folder))
    by_label = {r["label"]: r for r in analysis["runs"]}
    assert {r["family"] for r in analysis["runs"]} == {"ES", "gradient", "genetic", "hybrid"}
    for label in ("genetic-seed0", "guided_es-seed0"):
        run = by_label[label]
        assert run["base_path"]["val"][-1] == run["metrics"]["val/ndcg@10"]
        assert run["base_path"]["test"][-1] == run["metrics"]["test/ndcg@10"]
        assert run["flatness"]["mean"][0] == run["metrics"]["val/ndcg@10"]
        assert [p["step"] for p in run["trajectory"]] == [0, 4, 8]
        distance = {d["step"]: d["weight_distance"] for d in run["divergence"]}
        assert distance[8] > 0  # it trained; its best head may still be step 0's (a zero update)
        assert run["update_norm"] == pytest.approx(distance[run["best_step"]], abs=1e-9)
    # matched pairs: same seed across the four methods of seed 0 (6), eggroll seed 0 vs seed 1 (1)
    assert len(analysis["pairs"]) == 7
    genetic_vs_hybrid = next(p for p in analysis["pairs"] if {p["a"], p["b"]} == {"genetic-seed0", "guided_es-seed0"})
    assert genetic_vs_hybrid["kind"] == "genetic vs hybrid"
    assert genetic_vs_hybrid["path"]["val"][0] == by_label["genetic-seed0"]["metrics"]["val/ndcg@10"]
    assert set(analysis["summary"]["methods"]) == {"eggroll", "infonce", "genetic", "guided_es"}
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["summary"]["pairs"]


def _tracked(method, label, gains, held):
    """A run's trajectory with training-judge values `gains` over step 0 and test values `held`."""
    return {"method": method, "label": label,
            "trajectory": [{"step": 10 * i, "train_pool": 0.5 + g, "val": 0.4 + h, "test": 0.4 + h,
                            "test_unseen": 0.3 + h, "weight_distance": float(i)}
                           for i, (g, h) in enumerate(zip(gains, held))]}


def test_equal_gain_levels_list_only_the_methods_all_of_whose_runs_reach_them():
    tracked = [_tracked("slow", "slow-0", [0.0, 0.02, 0.04], [0.0, 0.01, 0.02]),
               _tracked("slow", "slow-1", [0.0, 0.03, 0.05], [0.0, 0.01, 0.03]),
               _tracked("fast", "fast-0", [0.0, 0.2, 0.4], [0.0, 0.1, -0.2])]
    result = equal_gain(tracked)
    assert result["reach"] == {"slow": pytest.approx(0.04), "fast": pytest.approx(0.4)}
    assert result["g_star"] == pytest.approx(0.04)
    assert list(result["levels"]) == ["0.0200", "0.0400", "0.4000"]
    assert set(result["levels"]["0.0400"]) == {"slow", "fast"}
    assert set(result["levels"]["0.4000"]) == {"fast"}  # slow never got there: no mean of a partial group
    # slow-0 at 0.04: its last point (0.02); slow-1 at 0.04: halfway between (0.03, 0.01) and (0.05, 0.03)
    assert result["levels"]["0.0400"]["slow"]["test"]["mean"] == pytest.approx((0.02 + 0.02) / 2)
    assert result["levels"]["0.0400"]["fast"]["test"]["mean"] == pytest.approx(0.1 * 0.04 / 0.2)
    assert result["levels"]["0.4000"]["fast"]["test_unseen"]["mean"] == pytest.approx(-0.2)
    assert result["levels"]["0.4000"]["fast"]["weight_distance"]["mean"] == pytest.approx(2.0)
    assert equal_gain([]) == {}


def test_a_collection_without_seen_document_test_queries_reports_n_a_for_that_group(
        tiny_runs, synthetic_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(PreparedData, "seen_document_queries", lambda self, ids: ())
    folders = [tiny_runs["eggroll-seed0"], tiny_runs["infonce-seed0"]]
    analysis = analyze(folders, tmp_path / "out", FAST, encoded=synthetic_encoded(synthetic_folder))
    for run in analysis["runs"]:
        assert run["judges"]["test_seen/ndcg@10"] is None
        assert run["judges"]["test_unseen/ndcg@10"] == pytest.approx(run["judges"]["test/ndcg@10"], abs=1e-12)
        assert all(p["test_unseen"] == pytest.approx(p["test"], abs=1e-12) for p in run["trajectory"])
    for method in analysis["summary"]["methods"].values():
        assert method["judge_change"]["test_seen/ndcg@10"] is None
        assert method["judge_change"]["test_unseen/ndcg@10"] is not None
    lines = markdown(analysis).splitlines()
    header = lines.index(next(line for line in lines if line.startswith("## Judges"))) + 2
    column = [c.strip() for c in lines[header].split("|")].index("test_seen/ndcg@10")
    for row in lines[header + 2:header + 4]:
        assert [c.strip() for c in row.split("|")][column] == "n/a", row


def test_the_last_kept_head_can_be_the_analysed_solution_and_reproduces_its_kept_figures(
        tiny_runs, synthetic_folder, tmp_path):
    options = AnalysisOptions(**{**FAST.__dict__, "solution": "last"})
    analysis = analyze([tiny_runs["eggroll-seed0"], tiny_runs["infonce-seed0"]], tmp_path / "out", options,
                       encoded=synthetic_encoded(synthetic_folder))
    for run in analysis["runs"]:
        last = run["trajectory"][-1]
        assert run["solution_step"] == last["step"] == 8
        assert run["metrics"]["val/ndcg@10"] == run["base_path"]["val"][-1] == last["val"]
        assert run["metrics"]["test/ndcg@10"] == run["base_path"]["test"][-1] == last["test"]
        assert run["flatness"]["mean"][0] == last["val"]
        assert run["update_norm"] == pytest.approx(run["divergence"][-1]["weight_distance"], abs=1e-12)
    pair = analysis["pairs"][0]
    assert pair["path"]["val"][0] == analysis["runs"][0]["trajectory"][-1]["val"]
    assert "last kept head" in (tmp_path / "out" / "analysis.md").read_text()


def test_the_last_head_of_a_run_without_kept_checkpoints_is_a_config_error(tiny_runs):
    from eggroll_ndcg.analysis.runs import read_run, use_last_kept
    from eggroll_ndcg.train.config import ConfigError

    run = read_run(tiny_runs["infonce-seed0"])
    run.kept = {}
    with pytest.raises(ConfigError, match="no kept checkpoints"):
        use_last_kept(run)
    with pytest.raises(ConfigError, match="solution"):
        AnalysisOptions(solution="final").validate()


def test_a_pair_from_an_unmoved_run_reuses_the_base_path_and_equals_the_computed_path(
        five_method_runs, synthetic_folder, tmp_path):
    from eggroll_ndcg.analysis import connectivity
    from eggroll_ndcg.analysis.runs import attach_data, read_run

    runs = [read_run(path) for path in five_method_runs.values()]
    unmoved = [run for run in runs if run.metrics["best_step"] == 0]
    assert unmoved, "the tiny runs should include a step-0 best head (a zero update)"
    ordered = unmoved + [run for run in runs if run not in unmoved]
    analysis = analyze([run.path for run in ordered], tmp_path / "out", FAST,
                       encoded=synthetic_encoded(synthetic_folder))
    reused = [p for p in analysis["pairs"] if "path_reused" in p]
    assert reused and all(p["a"] in {run.label for run in unmoved} for p in reused)
    attach_data(runs, encoded=synthetic_encoded(synthetic_folder))
    by_label = {run.label: run for run in runs}
    for pair in reused:
        a, b = by_label[pair["a"]], by_label[pair["b"]]
        direct = connectivity.linear_path(a, a.best, b.best, points=FAST.points)
        assert pair["path"] == direct  # bit for bit, barriers included
