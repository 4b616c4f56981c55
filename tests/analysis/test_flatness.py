"""The flatness curve and the Plackett-Luce divergence from the base."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from eggroll_ndcg.analysis import divergence, flatness


def test_flatness_curve_at_noise_zero_equals_the_runs_own_validation_figure(loaded_runs):
    for run in loaded_runs.values():
        curve = flatness.flatness_curve(run, run.best, scales=(0.0, 0.05), draws=2)
        assert curve["mean"][0] == run.metrics["val/ndcg@10"] and curve["std"][0] == 0.0


def test_flatness_curve_is_reproducible_and_noise_changes_it(loaded_runs):
    run = loaded_runs["infonce-seed0"]
    first = flatness.flatness_curve(run, run.best, scales=(0.0, 0.5), draws=3, seed=4)
    assert first == flatness.flatness_curve(run, run.best, scales=(0.0, 0.5), draws=3, seed=4)
    assert first["std"][1] > 0  # three different draws


def test_perturbation_has_exactly_the_relative_norm():
    state = {"w": torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), "b": torch.ones(3)}
    noisy = flatness.perturb(state, ("w",), 0.1, torch.Generator().manual_seed(1))
    assert float((noisy["w"] - state["w"]).norm() / state["w"].norm()) == pytest.approx(0.1, rel=1e-5)
    assert noisy["b"] is state["b"]
    assert flatness.perturb(state, ("w",), 0.0, torch.Generator())["w"] is state["w"]


def test_prefix_log_probabilities_sum_to_one_over_all_top_k_prefixes():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.5, float("-inf")]], dtype=torch.float64)
    prefixes = torch.tensor([p for p in itertools.permutations(range(4), 2)]).T  # [2, 12]
    rankings = prefixes.T[:, None, :]  # [12, 1, 2]
    total = divergence.prefix_log_prob(logits, rankings).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_monte_carlo_kl_matches_the_exact_kl_on_four_items():
    z = torch.tensor([[1.0, 0.2, -0.5, 0.0]], dtype=torch.float64)
    z0 = torch.tensor([[0.0, 0.0, 0.3, -0.2]], dtype=torch.float64)
    prefixes = torch.tensor(list(itertools.permutations(range(4), 2)))[:, None, :]
    lp, lp0 = divergence.prefix_log_prob(z, prefixes), divergence.prefix_log_prob(z0, prefixes)
    exact = float((lp.exp() * (lp - lp0)).sum())
    samples = divergence.sample_rankings(z, 2, 20000, torch.Generator().manual_seed(0))
    estimate = float((divergence.prefix_log_prob(z, samples) - divergence.prefix_log_prob(z0, samples)).mean())
    assert exact > 0 and estimate == pytest.approx(exact, abs=0.02)


def test_divergence_of_the_base_head_is_zero_and_grows_with_training(loaded_runs):
    run = loaded_runs["infonce-seed0"]
    path = divergence.divergence_path(run, samples=16, max_queries=32)
    assert [p["step"] for p in path] == [0, 4, 8]
    assert path[0]["weight_distance"] == 0.0 and path[0]["kl_top1"] == 0.0
    assert path[0][next(k for k in path[0] if k.startswith("kl_top") and k != "kl_top1")] == 0.0
    assert path[-1]["weight_distance"] > 0 and path[-1]["kl_top1"] > 0 and math.isfinite(path[-1]["kl_top1"])
