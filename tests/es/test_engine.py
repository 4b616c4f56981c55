"""Claims about the whole engine (es/engine.py): it solves problems, and its result does not depend on how
the population is chunked."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eggroll_ndcg.es import ClipUp, EggrollES, bilinear_population_scores, bilinear_scores, population_forward


def _ranking_task(seed=0, n=16, m=8, n_q=48, pool=20):
    """Queries and pools of unit vectors; a hidden head W* defines the grades (top-1 grade 3, next 2 grade 1)."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(m, n, generator=g)
    h_q = nn.functional.normalize(torch.randn(n_q, n, generator=g), dim=-1)
    h_d = nn.functional.normalize(torch.randn(n_q, pool, n, generator=g), dim=-1)
    order = bilinear_scores(w_true, h_q, h_d).argsort(dim=-1, descending=True)
    grades = torch.zeros(n_q, pool)
    grades.scatter_(1, order[:, :1], 3.0)
    grades.scatter_(1, order[:, 1:3], 1.0)
    return h_q, h_d, grades, torch.randn(m, n, generator=g)


def ndcg_at_k(scores: torch.Tensor, grades: torch.Tensor, k: int = 5) -> torch.Tensor:
    """A tiny NDCG@k (linear gain, 1/log2(rank+1)): scores [..., Q, P], grades [Q, P] -> [..., Q]."""
    discount = 1.0 / torch.log2(torch.arange(k, dtype=scores.dtype) + 2)
    top = scores.argsort(dim=-1, descending=True, stable=True)[..., :k]
    dcg = (grades.expand_as(scores).gather(-1, top) * discount).sum(-1)
    idcg = (grades.sort(dim=-1, descending=True).values[:, :k] * discount).sum(-1)
    return dcg / idcg


def _train_ranking(steps, *, forward_chunk=None, pair_chunk=None, shaping="centered_rank", seed=0, normalize=False):
    h_q, h_d, grades, w0 = _ranking_task()
    w = nn.Parameter(w0.clone())
    engine = EggrollES({"head.weight": w}, population_size=64, rank=1, sigma=0.1, seed=seed,
                       optimizer=torch.optim.Adam([w], lr=0.05), shaping=shaping, pair_chunk=pair_chunk)
    for _ in range(steps):
        pop = engine.ask()
        fitness = torch.empty(pop.num_members, h_q.shape[0])
        for chunk in pop.chunks(forward_chunk):
            A, B = chunk.factors("head.weight")
            scores = bilinear_population_scores(w.detach(), h_q, h_d, A, B, chunk.sigma, normalize=normalize)
            fitness[chunk.members] = ndcg_at_k(scores, grades)
        engine.tell(fitness)
    return w.detach(), float(ndcg_at_k(bilinear_scores(w.detach(), h_q, h_d), grades).mean()), (h_q, h_d, grades, w0)


def test_es_solves_a_small_ranking_problem_with_a_non_differentiable_fitness():
    """Claim: optimizing NDCG@5 (piecewise constant in W, no gradient) directly with EGGROLL rank-1 noise
    takes a random linear head from its initial NDCG to >= 0.9 (optimum 1.0, reached by the hidden head)."""
    w, final, (h_q, h_d, grades, w0) = _train_ranking(150)
    initial = float(ndcg_at_k(bilinear_scores(w0, h_q, h_d), grades).mean())
    assert initial < 0.7
    assert final >= 0.9, (initial, final)


def test_es_solves_least_squares_through_population_forward():
    """Claim: evolving the Linear layer (weight low-rank, bias full-rank noise) of a module with fitness
    -MSE reaches < 1% of the initial error (optimum 0: the targets are an exact linear map)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 10, generator=g)
    y = x @ torch.randn(10, 4, generator=g) + torch.randn(4, generator=g)
    model = nn.Linear(10, 4)
    engine = EggrollES(dict(model.named_parameters()), population_size=64, rank=2, sigma=0.05, seed=0,
                       optimizer=torch.optim.Adam(model.parameters(), lr=0.05))
    with torch.no_grad():
        initial = float(((model(x) - y) ** 2).mean())
    for _ in range(300):
        pop = engine.ask()
        out = population_forward(model, pop.all(), x, shared_inputs=True)
        engine.tell(-((out - y) ** 2).mean(dim=(1, 2)))
    with torch.no_grad():
        final = float(((model(x) - y) ** 2).mean())
    assert final < 0.01 * initial, (initial, final)


def test_same_seed_gives_bit_identical_weights_whatever_the_chunking():
    """Claim: a member's factors depend only on its pair index and the gradient sums fixed blocks of pairs,
    so training with forward chunks of 1, 5 or 32 pairs and gradient pair_chunk None or 3 gives
    bit-identical weights (raw shaping, so any bit of fitness difference would show), and another seed
    gives other weights. (Scope: here the scoring GEMMs give the same bits for every chunk shape; on
    large inputs BLAS may differ in the last bit between shapes, see es/README.md.)"""
    runs = [
        _train_ranking(4, forward_chunk=fc, pair_chunk=pc, shaping="raw", normalize=True)[0]
        for fc, pc in ((None, None), (1, 3), (5, None), (32, 3))
    ]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    other_seed = _train_ranking(4, shaping="raw", seed=1, normalize=True)[0]
    assert not torch.equal(runs[0], other_seed)


def test_clipup_caps_the_step_length_and_learns():
    """Claim: ClipUp's step ||Δθ|| never exceeds max_speed, whatever the gradient's scale, and it solves
    the ranking task's easier cousin: least squares on a linear layer."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 6, generator=g)
    y = x @ torch.randn(6, 3, generator=g)
    model = nn.Linear(6, 3, bias=False)
    engine = EggrollES(dict(model.named_parameters()), population_size=32, sigma=0.05, seed=0,
                       optimizer=ClipUp(model.parameters(), lr=0.05, max_speed=0.1), shaping="raw")
    with torch.no_grad():
        initial = float(((model(x) - y) ** 2).mean())
    for _ in range(200):
        out = population_forward(model, engine.ask().all(), x, shared_inputs=True)
        stats = engine.tell(-1e6 * ((out - y) ** 2).mean(dim=(1, 2)))  # huge fitness scale
        assert stats["update_norm"] <= 0.1 + 1e-6
    with torch.no_grad():
        assert float(((model(x) - y) ** 2).mean()) < 0.05 * initial


def test_frozen_vectors_get_no_noise_and_no_update_and_clipping_bounds_the_gradient():
    """Claim: vector_noise='freeze' leaves biases untouched; grad_clip caps the global norm of g
    (stats report the norm before and after)."""
    model = nn.Linear(5, 3)
    bias = model.bias.detach().clone()
    engine = EggrollES(dict(model.named_parameters()), population_size=8, sigma=0.1, seed=0,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1), vector_noise="freeze", grad_clip=0.01)
    assert engine.frozen == ("bias",)
    out = population_forward(model, engine.ask().all(), torch.randn(4, 5), shared_inputs=True)
    stats = engine.tell(out.sum(dim=(1, 2)))
    assert torch.equal(model.bias.detach(), bias)
    assert stats["grad_norm"] > 0.01 and math.isclose(stats["grad_norm_clipped"], 0.01, rel_tol=1e-6)


def test_engine_rejects_bad_settings_and_bad_fitness():
    """Claim: odd populations, parameters missing from the optimizer, wrong fitness shapes and NaN fitness
    fail loudly."""
    w = nn.Parameter(torch.randn(3, 3))
    with pytest.raises(ValueError, match="even"):
        EggrollES({"w": w}, population_size=7, sigma=0.1, seed=0, optimizer=torch.optim.SGD([w], lr=0.1))
    with pytest.raises(ValueError, match="optimizer does not hold"):
        EggrollES({"w": w}, population_size=8, sigma=0.1, seed=0, optimizer=torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    engine = EggrollES({"w": w}, population_size=8, sigma=0.1, seed=0, optimizer=torch.optim.SGD([w], lr=0.1))
    with pytest.raises(ValueError, match=r"fitness must be \[8\]"):
        engine.tell(torch.zeros(6))
    bad = torch.zeros(8)
    bad[3] = float("nan")
    with pytest.raises(ValueError, match=r"members \[3\]"):
        engine.tell(bad)
    assert engine.step == 0
