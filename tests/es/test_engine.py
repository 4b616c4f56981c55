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


def _tiny_engine(shaping="raw", nan_policy="raise", optimizer="adam"):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer](model.parameters(), lr=0.1)
    engine = EggrollES(dict(model.named_parameters()), population_size=8, sigma=0.1, seed=0, optimizer=opt,
                       shaping=shaping, nan_policy=nan_policy)
    return model, engine


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize(("shaping", "value"), [("raw", -float("inf")), ("zscore", float("inf")),
                                                ("centered_rank", float("inf"))])
def test_tell_refuses_infinite_fitness_before_any_state_change(shaping, value):
    """Claim (issue 10): a ±inf fitness raises naming the member (raw with -inf used to make the weights
    non-finite; zscore with +inf gave a zero update while the step advanced), and nothing changes: weights,
    optimizer state and step are as before."""
    model, engine = _tiny_engine(shaping)
    before = _snapshot(model)
    fitness = torch.arange(8.0)
    fitness[5] = value
    with pytest.raises(ValueError, match=r"inf\) for members \[5\]"):
        engine.tell(fitness)
    assert engine.step == 0 and not engine.optimizer.state
    assert all(torch.equal(before[k], v.detach()) for k, v in model.named_parameters())
    engine.tell(torch.arange(8.0))  # the engine is still usable
    assert engine.step == 1


def test_tell_under_the_worst_policy_replaces_infinite_fitness_as_documented():
    """Claim: with nan_policy='worst' a ±inf fitness is replaced by its column's smallest finite value, so the
    update equals telling that replaced fitness."""
    fitness = torch.tensor([[0.5, 1.0], [float("inf"), 0.2], [0.1, -float("inf")], [0.7, 0.9]] * 2)
    replaced = torch.tensor([[0.5, 1.0], [0.1, 0.2], [0.1, 0.2], [0.7, 0.9]] * 2)
    results = []
    for f in (fitness, replaced):
        model, engine = _tiny_engine("query_zscore", nan_policy="worst")
        stats = engine.tell(f)
        results.append((_snapshot(model), stats["fitness_min"]))
    assert all(torch.equal(results[0][0][k], results[1][0][k]) for k in results[0][0])
    assert results[0][1] == results[1][1]


def test_tell_refuses_an_overflowing_gradient_before_any_state_change():
    """Claim: finite fitness whose gradient overflows (raw shaping of ±1.7e308: the pair differences are
    inf) raises instead of writing non-finite weights; weights and step stay as they were."""
    model, engine = _tiny_engine("raw", optimizer="sgd")
    before = _snapshot(model)
    with pytest.raises(ValueError, match="non-finite ES gradient"):
        engine.tell(torch.tensor([1.7e308, -1.7e308] * 4, dtype=torch.float64))
    assert engine.step == 0
    assert all(torch.equal(before[k], v.detach()) for k, v in model.named_parameters())


def test_engine_step_is_exposed_read_only():
    """Claim (issue 10): engine.step counts completed tells and cannot be assigned (only tell and
    load_state_dict move it), so a trainer can cross-check it against its own step."""
    model, engine = _tiny_engine()
    engine.tell(torch.arange(8.0))
    assert engine.step == 1 and engine.state_dict()["step"] == 1
    with pytest.raises(AttributeError):
        engine.step = 5


def test_clipup_with_momentum_zero_has_no_carry_over():
    """Claim (issue 9): ClipUp(momentum=0) honours 0 exactly: two steps with the same gradient give the same
    velocity -lr·g/||g|| (no carry-over), the parameter moves by exactly twice it, and a non-finite old
    velocity is dropped (0·NaN would keep it). Momentum outside [0, 1] is refused."""
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = ClipUp([p], lr=0.1, max_speed=1.0, momentum=0.0)
    grad = torch.tensor([3.0, 0.0, -4.0])
    velocities = []
    for _ in range(2):
        p.grad = grad.clone()
        opt.step()
        velocities.append(opt.state[p]["velocity"].clone())
    want = -0.1 * grad / 5.0
    assert torch.equal(velocities[0], velocities[1])
    torch.testing.assert_close(velocities[0], want, rtol=0, atol=1e-7)
    torch.testing.assert_close(p.detach(), torch.tensor([1.0, -2.0, 0.5]) + 2 * want, rtol=0, atol=1e-6)
    opt.state[p]["velocity"].fill_(float("nan"))
    p.grad = grad.clone()
    opt.step()
    assert torch.equal(opt.state[p]["velocity"], velocities[0])
    with_momentum = ClipUp([nn.Parameter(torch.zeros(3))], lr=0.1, max_speed=1.0, momentum=0.5)
    q = with_momentum.param_groups[0]["params"][0]
    for _ in range(2):
        q.grad = grad.clone()
        with_momentum.step()
    torch.testing.assert_close(with_momentum.state[q]["velocity"], 1.5 * want, rtol=0, atol=1e-7)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="momentum"):
            ClipUp([p], lr=0.1, momentum=bad)
