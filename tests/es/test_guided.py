"""Guided ES noise and estimator (Maheswaranathan et al. 2019) on top of the EGGROLL engine."""

from __future__ import annotations

import math

import pytest
import torch

from eggroll_ndcg.es import EggrollES
from eggroll_ndcg.es.guided import GuidedES, build_subspace, truncate
from eggroll_ndcg.es.perturb import bilinear_population_scores

M, N_IN = 3, 4
D = M * N_IN


def _engine(alpha: float, *, pairs: int, weight=None, k: int = 2, lr: float = 1.0, **kwargs) -> tuple[GuidedES, torch.nn.Parameter]:
    w = torch.nn.Parameter((weight if weight is not None else torch.zeros(M, N_IN, dtype=torch.float64)).clone())
    engine = GuidedES({"w": w}, alpha=alpha, k=k, grad_rank=min(M, N_IN), population_size=2 * pairs, sigma=0.1,
                      seed=3, optimizer=torch.optim.SGD([w], lr=lr), grad_clip=None, **kwargs)
    return engine, w


def _gradients(count: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    return [torch.randn(M, N_IN, generator=gen, dtype=torch.float64) for _ in range(count)]


def _materialized_noise(engine: GuidedES) -> torch.Tensor:
    """Z_j = Ã_j B̃_jᵀ / sqrt(R) of every pair, flattened: [J, D]."""
    population = engine.ask()
    A, B = engine.member_factors(population, "w", range(population.num_pairs))
    return (torch.bmm(A, B.transpose(1, 2)) / math.sqrt(A.shape[-1])).reshape(A.shape[0], -1)


def _expected_covariance(alpha: float, grads: list[torch.Tensor]) -> torch.Tensor:
    """Σ' = α I + (1-α) (D/k) U Uᵀ with U from a QR of the flattened gradients (an independent oracle)."""
    U, _ = torch.linalg.qr(torch.stack([g.reshape(-1) for g in grads], dim=1))
    return alpha * torch.eye(D, dtype=torch.float64) + (1 - alpha) * (D / U.shape[1]) * U @ U.T


@pytest.mark.parametrize("alpha", [0.25, 0.7])
def test_guided_noise_has_the_stated_covariance(alpha):
    engine, _ = _engine(alpha, pairs=60_000)
    grads = _gradients(2)
    for g in grads:
        engine.set_guide({"w": g})
    Z = _materialized_noise(engine)
    empirical = Z.T @ Z / Z.shape[0]
    expected = _expected_covariance(alpha, grads)
    assert torch.allclose(empirical, expected, atol=0.06 * float(expected.abs().max()))
    assert abs(float(torch.trace(empirical)) - D) < 0.02 * D  # E||Z||² = D, as for plain EGGROLL
    # the subspace part really lies in span(U): removing it leaves α·I on the orthogonal complement
    U, _ = torch.linalg.qr(torch.stack([g.reshape(-1) for g in grads], dim=1))
    complement = torch.eye(D, dtype=torch.float64) - U @ U.T
    assert torch.allclose(complement @ empirical @ complement, alpha * complement, atol=0.03)


def test_only_the_last_k_gradients_span_the_subspace():
    engine, _ = _engine(0.5, pairs=4, k=2)
    grads = _gradients(3)
    for g in grads:
        engine.set_guide({"w": g})
    U = engine.subspace
    basis = torch.stack([U.gradient("w", U.coef[:, i]).reshape(-1) for i in range(U.k)], dim=1)
    assert torch.allclose(basis.T @ basis, torch.eye(2, dtype=torch.float64), atol=1e-10)  # orthonormal
    last_two = torch.stack([g.reshape(-1) for g in grads[1:]], dim=1)
    projector = basis @ basis.T
    assert torch.allclose(projector @ last_two, last_two, atol=1e-10)
    assert not torch.allclose(projector @ grads[0].reshape(-1), grads[0].reshape(-1), atol=1e-3)


def test_collinear_gradients_give_a_one_dimensional_subspace():
    g = _gradients(1)[0]
    subspace = build_subspace([{"w": truncate(g, 4)}, {"w": truncate(-2 * g, 4)}], D)
    assert subspace.k == 1


def test_truncation_keeps_the_best_low_rank_approximation():
    g = _gradients(1)[0]
    P, Q = truncate(g, 1)
    u, s, vh = torch.linalg.svd(g)
    assert torch.allclose(P @ Q.T, s[0] * torch.outer(u[:, 0], vh[0]), atol=1e-12)
    P, Q = truncate(g, 99)
    assert torch.allclose(P @ Q.T, g, atol=1e-12)


def test_closed_form_scores_of_guided_members_match_materialized_weights():
    """The guided factors go through the unchanged EGGROLL closed form, cosine scores included."""
    gen = torch.Generator().manual_seed(5)
    weight = torch.eye(M, N_IN, dtype=torch.float64) + 0.1 * torch.randn(M, N_IN, generator=gen, dtype=torch.float64)
    engine, w = _engine(0.4, pairs=6, weight=weight)
    for g in _gradients(2):
        engine.set_guide({"w": g})
    population = engine.ask()
    A, B = engine.member_factors(population, "w", range(6))
    h_q = torch.randn(5, N_IN, generator=gen, dtype=torch.float64)
    h_d = torch.randn(5, 7, N_IN, generator=gen, dtype=torch.float64)
    scores = bilinear_population_scores(w.detach(), h_q, h_d, A, B, population.sigma, normalize=True)
    Z = _materialized_noise(engine).reshape(6, M, N_IN)
    for j in range(6):
        for sign, member in ((1, 2 * j), (-1, 2 * j + 1)):
            W = w.detach() + sign * population.sigma * Z[j]
            q = torch.nn.functional.normalize(h_q @ W.T, dim=-1)
            d = torch.nn.functional.normalize(h_d @ W.T, dim=-1)
            assert torch.allclose(scores[member], torch.einsum("qpm,qm->qp", d, q), atol=1e-10)


@pytest.mark.parametrize("alpha", [0.3, 0.8])
def test_the_estimate_of_a_linear_objective_is_beta_sigma_prime_times_its_gradient(alpha):
    """f(W) = <C, W> with raw shaping: g = β/(Nσ) Σ_j 2σ<C, Z_j> Z_j, whose mean is β Σ' C (the paper's
    bias: α I C + (1-α)(D/k) U Uᵀ C). With SGD at lr 1 the update is g itself."""
    C = _gradients(3)[2]
    grads = _gradients(2)
    beta = 1.5
    engine, w = _engine(alpha, pairs=40_000, shaping="raw", beta=beta)
    for g in grads:
        engine.set_guide({"w": g})
    Z = _materialized_noise(engine)
    sigma = engine.sigma
    fitness = torch.stack((sigma * Z @ C.reshape(-1), -sigma * Z @ C.reshape(-1)), dim=1).reshape(-1)
    engine.tell(fitness)
    expected = beta * _expected_covariance(alpha, grads) @ C.reshape(-1)
    update = w.detach().reshape(-1)
    assert torch.allclose(update, expected, atol=0.05 * float(expected.abs().max()))
    # the exact finite-sample identity: g = β Ẑᵀ Ẑ C / J
    assert torch.allclose(update, beta * Z.T @ (Z @ C.reshape(-1)) / Z.shape[0], atol=1e-9)


def test_alpha_one_is_plain_eggroll_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(M, N_IN, generator=gen)
    plain_w = torch.nn.Parameter(start.clone())
    plain = EggrollES({"w": plain_w}, population_size=8, sigma=0.1, seed=3, optimizer=torch.optim.Adam([plain_w], lr=0.1))
    guided_w = torch.nn.Parameter(start.clone())
    guided = GuidedES({"w": guided_w}, alpha=1.0, k=2, population_size=8, sigma=0.1, seed=3,
                      optimizer=torch.optim.Adam([guided_w], lr=0.1))
    for step in range(3):
        guided.set_guide({"w": torch.randn(M, N_IN, generator=gen)})
        pp, gp = plain.ask(), guided.ask()
        for mine, theirs in zip(guided.member_factors(gp, "w", range(4)), pp.factors("w", range(4))):
            assert torch.equal(mine, theirs)
        fitness = torch.randn(8, generator=gen)
        plain.tell(fitness)
        guided.tell(fitness)
        assert torch.equal(plain_w, guided_w), step


def test_state_dict_restores_the_guide_history():
    engine, w = _engine(0.5, pairs=8)
    for g in _gradients(2):
        engine.set_guide({"w": g})
    engine.tell(torch.arange(16, dtype=torch.float64))
    twin, twin_w = _engine(0.5, pairs=8)
    with torch.no_grad():
        twin_w.copy_(w)
    twin.load_state_dict(engine.state_dict())
    g = _gradients(3)[2]
    engine.set_guide({"w": g})
    twin.set_guide({"w": g})
    fitness = torch.randn(16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    engine.tell(fitness)
    twin.tell(fitness)
    assert torch.equal(w, twin_w)


def test_alpha_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        _engine(0.0, pairs=2)
