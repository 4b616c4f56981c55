"""Linear mode connectivity and update cosines on tiny finished runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from eggroll_ndcg.analysis import connectivity
from eggroll_ndcg.analysis.judges import own_figures


def own(run):
    return {"val": run.metrics["val/ndcg@10"], "test": run.metrics["test/ndcg@10"]}


def test_path_endpoints_reproduce_each_runs_own_validation_and_test_figures_exactly(loaded_runs):
    a, b = loaded_runs["eggroll-seed0"], loaded_runs["infonce-seed0"]
    assert connectivity.comparable(a, b) is None
    path = connectivity.linear_path(a, a.best, b.best, points=21)
    assert len(path["t"]) == 21 and path["t"][0] == 0.0 and path["t"][-1] == 1.0
    assert path["val"][0] == own(a)["val"] and path["test"][0] == own(a)["test"]
    assert path["val"][-1] == own(b)["val"] and path["test"][-1] == own(b)["test"]


def test_base_to_solution_path_starts_at_the_zero_shot_encoder(loaded_runs):
    run = loaded_runs["eggroll-seed1"]
    path = connectivity.linear_path(run, run.base, run.best, points=3)
    assert path["val"][0] == own_figures(None, run)["val"]
    assert path["val"][-1] == own(run)["val"]
    assert run.base == run.kept[0]  # the kept step-0 head is the base


def test_the_trained_runs_moved_and_kept_every_evaluation_step(loaded_runs):
    for run in loaded_runs.values():
        assert sorted(run.kept) == [0, 4, 8]
        assert run.metrics["best_step"] > 0  # each run improved on validation, so its update is not zero
        assert connectivity.update_norm(run.best, run.base, run.param_names) > 0
        assert torch.equal(run.kept[run.metrics["best_step"]]["linear.weight"], run.best["linear.weight"])


def test_barrier_height_is_the_largest_dip_below_the_chord():
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert connectivity.barrier([0.5, 0.45, 0.3, 0.5, 0.7], ts) == pytest.approx(0.6 - 0.3)
    assert connectivity.barrier([0.4, 0.5, 0.6, 0.7, 0.8], ts) == pytest.approx(0.0, abs=1e-12)
    assert connectivity.barrier([0.4, 0.9, 0.9, 0.9, 0.8], ts) == 0.0  # above the chord: no barrier


def test_interpolation_is_exact_at_the_ends_and_linear_between():
    a = {"w": torch.tensor([1.0, 2.0]), "buf": torch.tensor([7.0])}
    b = {"w": torch.tensor([3.0, -2.0]), "buf": torch.tensor([9.0])}
    assert connectivity.interpolate(a, b, 0.0, ("w",))["w"] is a["w"]
    assert connectivity.interpolate(a, b, 1.0, ("w",))["w"] is b["w"]
    mid = connectivity.interpolate(a, b, 0.25, ("w",))
    assert torch.allclose(mid["w"], torch.tensor([1.5, 1.0])) and mid["buf"] is a["buf"]


def test_update_cosine_is_one_with_itself_and_minus_one_with_the_reversed_update(loaded_runs):
    run = loaded_runs["eggroll-seed0"]
    assert connectivity.update_cosines(run, run)["all"] == pytest.approx(1.0)
    reversed_best = {k: 2 * run.base[k] - v if k in run.param_names else v for k, v in run.best.items()}
    mirror = dataclasses.replace(run, best=reversed_best)
    cosines = connectivity.update_cosines(run, mirror)
    assert all(v == pytest.approx(-1.0) for v in cosines.values())


def test_runs_with_other_heads_are_not_comparable(loaded_runs):
    run = loaded_runs["eggroll-seed0"]
    other = dataclasses.replace(run, config=run.config.replace(head="mlp"))
    assert "different heads" in connectivity.comparable(run, other)


def test_analyze_run_judges_the_best_head_and_the_base_head_separately(loaded_runs):
    from eggroll_ndcg.analysis.analyze import AnalysisOptions, analyze_run
    from eggroll_ndcg.analysis.spectra import embedding_bases

    run = loaded_runs["infonce-seed0"]
    options = AnalysisOptions(points=2, noise_scales=(0.0,), draws=1, kl_samples=2, kl_queries=4, trajectories=False)
    result = analyze_run(run, options, embedding_bases(run.data.doc_emb, run.data.query_emb, 4))
    assert result["judges"]["test/ndcg@10"] == run.metrics["test/ndcg@10"]
    assert result["judges_base"]["test/ndcg@10"] == own_figures(None, run)["test"]
    assert result["judges"]["test/ndcg@10"] != result["judges_base"]["test/ndcg@10"]
