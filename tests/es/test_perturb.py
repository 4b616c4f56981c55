"""Claims about the perturbed forward passes (es/perturb.py, es/population.py): they equal the materialized
member weights W ± sigma·E_j, and antithetic members cancel as stated."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eggroll_ndcg.es import (
    ConstantSigma,
    EggrollES,
    bilinear_population_scores,
    bilinear_scores,
    lowrank_factors,
    materialize,
    param_id,
    perturbed_linear,
    population_forward,
)
from eggroll_ndcg.es import perturb

D = torch.float64


def _factors(j: int, m: int, n: int, r: int, seed: int = 0):
    return lowrank_factors(seed, 0, param_id("w"), torch.arange(j), m, n, r, dtype=D)


@pytest.mark.parametrize("rank", [1, 4])
def test_perturbed_linear_equals_materialized_weights(rank):
    """Claim: x Wᵀ + b ± (sigma/sqrt r)(x B_j) A_jᵀ ± sigma·eps_j = x (W ± sigma A_j B_jᵀ/sqrt r)ᵀ + (b ± sigma eps_j)
    for every member, to float64 round-off."""
    g = torch.Generator().manual_seed(rank)
    m, n, j = 7, 11, 5
    W, b = torch.randn(m, n, generator=g, dtype=D), torch.randn(m, generator=g, dtype=D)
    x = torch.randn(2 * j, 3, 4, n, generator=g, dtype=D)
    A, B = _factors(j, m, n, rank)
    eps = torch.randn(j, m, generator=g, dtype=D)
    sigma = 0.3
    got = perturbed_linear(x, W, b, A, B, sigma, bias_noise=eps)
    Ws = materialize(W, A, B, sigma)
    bs = torch.stack((b + sigma * eps, b - sigma * eps), dim=1).reshape(2 * j, m)
    want = torch.stack([x[i] @ Ws[i].T + bs[i] for i in range(2 * j)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("rank", [1, 4])
def test_closed_form_head_scores_equal_materialized_weights(rank, normalize):
    """Claim: s_j^± = q·d ± c(u_q·A_jᵀd + u_d·A_jᵀq) + c² u_qᵀ A_jᵀA_j u_d (c = sigma/sqrt r) equals
    (W'h_q)·(W'h_d) with W' = W ± sigma E_j materialized; with normalize=True the closed-form norms
    ||W'h||² = ||Wh||² ± 2c u·(A_jᵀWh) + c² uᵀA_jᵀA_j u give the exact cosine. Float64, all members."""
    g = torch.Generator().manual_seed(10 * rank + normalize)
    m, n, j, n_q, pool = 6, 9, 4, 3, 5
    W = torch.randn(m, n, generator=g, dtype=D)
    h_q, h_d = torch.randn(n_q, n, generator=g, dtype=D), torch.randn(n_q, pool, n, generator=g, dtype=D)
    A, B = _factors(j, m, n, rank)
    sigma = 0.7  # large, so the sigma² terms matter
    got = bilinear_population_scores(W, h_q, h_d, A, B, sigma, normalize=normalize)
    want = torch.stack([bilinear_scores(w, h_q, h_d, normalize=normalize) for w in materialize(W, A, B, sigma)])
    assert got.shape == (2 * j, n_q, pool)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


def test_antithetic_linear_members_average_to_the_unperturbed_output_exactly():
    """Claim: the perturbation is odd in E, so (y_{2j} + y_{2j+1}) / 2 = x Wᵀ + b exactly (same input)."""
    m, n, j = 5, 8, 6
    W, b = torch.randn(m, n, dtype=D), torch.randn(m, dtype=D)
    x = torch.randn(4, n, dtype=D).expand(2 * j, 4, n)
    A, B = _factors(j, m, n, 2)
    y = perturbed_linear(x, W, b, A, B, 0.5, bias_noise=torch.randn(j, m, dtype=D))
    torch.testing.assert_close((y[0::2] + y[1::2]) / 2, (x[0] @ W.T + b).expand(j, 4, m), rtol=0, atol=1e-13)


def test_antithetic_head_scores_average_to_the_unperturbed_score_plus_the_sigma_squared_term():
    """Claim: the bilinear score is quadratic in W, so the pair average keeps exactly the even term:
    (s⁺_j + s⁻_j)/2 = q·d + (sigma²/r) u_qᵀ A_jᵀA_j u_d  (nothing of first order survives). That term
    scales as sigma² (halving sigma quarters it) and its mean over pairs tends to its expectation
    sigma²·m·(h_q·h_d) (E[AᵀA] = m I_r, E[B Bᵀ] = r I_n)."""
    m, n, r = 6, 5, 2
    W = torch.randn(m, n, dtype=D)
    h_q, h_d = torch.randn(2, n, dtype=D), torch.randn(2, 3, n, dtype=D)
    base = bilinear_scores(W, h_q, h_d)
    A, B = _factors(20000, m, n, r)
    deviations = []
    for sigma in (0.2, 0.1):
        s = bilinear_population_scores(W, h_q, h_d, A, B, sigma)
        avg = (s[0::2] + s[1::2]) / 2
        u_q = torch.einsum("qn,jnr->jqr", h_q, B)
        u_d = torch.einsum("qpn,jnr->jqpr", h_d, B)
        even = (sigma**2 / r) * torch.einsum("jqr,jrs,jqps->jqp", u_q, A.transpose(1, 2) @ A, u_d)
        torch.testing.assert_close(avg, base + even, rtol=1e-12, atol=1e-12)
        deviations.append(avg - base)
    torch.testing.assert_close(deviations[1], deviations[0] / 4, rtol=1e-10, atol=1e-13)
    expected = 0.2**2 * m * torch.einsum("qn,qpn->qp", h_q, h_d)
    mean_dev = deviations[0].mean(0)
    assert float((mean_dev - expected).abs().max()) < 0.15 * float(expected.abs().max()) + 0.02


def test_population_forward_runs_any_module_linear_layers_as_the_population():
    """Claim: population_forward on an MLP (Linear-ReLU-Linear, biases with full-rank noise) gives, for each
    member i, exactly the output of a copy of the MLP whose weights are W ± sigma·E_j and biases b ± sigma·eps_j."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).to(D)
    params = dict(mlp.named_parameters())
    engine = EggrollES(params, population_size=8, rank=2, sigma=ConstantSigma(0.2), seed=3,
                       optimizer=torch.optim.SGD(mlp.parameters(), lr=0.1))
    x = torch.randn(5, 6, dtype=D)
    pop = engine.ask()
    for chunk in pop.chunks(3):
        out = population_forward(mlp, chunk, x, shared_inputs=True)
        assert out.shape == (chunk.num_members, 5, 3)
        for i in range(chunk.num_members):
            j, sign = chunk.pair_start + i // 2, (1.0, -1.0)[i % 2]
            member = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).to(D)
            with torch.no_grad():
                for name, p in member.named_parameters():
                    noise = pop.perturbation(name, torch.tensor([j]))[0]
                    p.copy_(params[name] + sign * pop.sigma * noise)
            torch.testing.assert_close(out[i], member(x), rtol=1e-12, atol=1e-12)


def test_population_forward_refuses_parameters_it_cannot_perturb():
    """Claim: a perturbed parameter outside any nn.Linear (here a LayerNorm weight) raises instead of
    being silently left unperturbed."""
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    engine = EggrollES(dict(model.named_parameters()), population_size=4, sigma=0.1, seed=0,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(NotImplementedError, match="1.weight"):
        population_forward(model, engine.ask().all(), torch.randn(4, 2, 4))


@pytest.mark.parametrize("normalize", [False, True])
def test_rank_one_runs_the_rank_r_closed_form(normalize):
    """Claim (issue 9): one implementation of the closed form serves every rank. A rank-1 population and the
    same population padded to rank 2 with zero factor columns (sigma scaled by sqrt 2, so c = sigma/sqrt r
    is the same float) score bit-identically: the zero terms add exact zeros to the very same operations.
    (A separate rank-1 formula with other rounding would differ in the last bits.)"""
    g = torch.Generator().manual_seed(5 + normalize)
    m, n, j, n_q, pool = 16, 24, 6, 4, 9
    W = torch.randn(m, n, generator=g)
    h_q, h_d = torch.randn(n_q, n, generator=g), torch.randn(n_q, pool, n, generator=g)
    A, B = lowrank_factors(0, 0, param_id("w"), torch.arange(j), m, n, 1)
    c = 0.5 / math.sqrt(2)
    one = bilinear_population_scores(W, h_q, h_d, A, B, c, normalize=normalize)
    pad = lambda x: torch.cat((x, torch.zeros_like(x)), dim=-1)  # noqa: E731
    two = bilinear_population_scores(W, h_q, h_d, pad(A), pad(B), c * math.sqrt(2), normalize=normalize)
    assert c * math.sqrt(2) / math.sqrt(2) == c
    assert torch.equal(one, two)


@pytest.mark.parametrize("rank", [1, 3])
def test_closed_form_does_not_depend_on_its_pair_blocks(monkeypatch, rank):
    """Claim: the closed form's elementwise terms run in blocks of pairs (TAIL_BLOCK_ELEMENTS), and the
    scores are bit-identical for one pair per block, a ragged last block, or a single block."""
    g = torch.Generator().manual_seed(rank)
    m, n, j, n_q, pool = 6, 9, 7, 3, 5
    W = torch.randn(m, n, generator=g)
    h_q, h_d = torch.randn(n_q, n, generator=g), torch.randn(n_q, pool, n, generator=g)
    A, B = lowrank_factors(0, 0, param_id("w"), torch.arange(j), m, n, rank)
    results = []
    for elements in (1, 3 * n_q * pool * rank, 1 << 40):  # 1 pair, 3 pairs (7 = 3 + 3 + 1), all pairs
        monkeypatch.setattr(perturb, "TAIL_BLOCK_ELEMENTS", elements)
        results.append(bilinear_population_scores(W, h_q, h_d, A, B, 0.4, normalize=True))
    assert all(torch.equal(results[0], r) for r in results[1:])
