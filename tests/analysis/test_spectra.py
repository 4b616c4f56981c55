"""Ranks and alignment of update matrices with known spectra."""

from __future__ import annotations

import math

import pytest
import torch

from eggroll_ndcg.analysis.spectra import (EFFECTIVE, alignment, effective_rank, embedding_side, singular_values,
                                          spectrum_report, stable_rank, update_matrices)
from eggroll_ndcg.models.heads import SubspaceHead


def with_spectrum(values: list[float], m: int = 12, n: int = 9, seed: int = 0) -> torch.Tensor:
    """U diag(values) Vᵀ with random orthonormal U [m, r], V [n, r]."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, len(values), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, len(values), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T


def test_singular_values_recover_the_constructed_spectrum():
    s = singular_values(with_spectrum([3.0, 2.0, 1.0]))
    assert torch.allclose(s[:3], torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64), atol=1e-12)
    assert float(s[3:].abs().max()) < 1e-12


def test_stable_and_effective_rank_of_a_known_spectrum():
    s = singular_values(with_spectrum([3.0, 2.0, 1.0]))
    assert stable_rank(s) == pytest.approx((9 + 4 + 1) / 9, abs=1e-10)
    p = [3 / 6, 2 / 6, 1 / 6]
    assert effective_rank(s) == pytest.approx(math.exp(-sum(x * math.log(x) for x in p)), abs=1e-8)


@pytest.mark.parametrize("rank", [1, 4, 9])
def test_a_flat_spectrum_of_rank_r_has_both_ranks_r(rank):
    s = singular_values(with_spectrum([2.5] * rank))
    assert stable_rank(s) == pytest.approx(rank, abs=1e-8)
    assert effective_rank(s) == pytest.approx(rank, abs=1e-6)


def test_ranks_of_a_zero_update_are_nan():
    s = singular_values(torch.zeros(4, 3))
    assert math.isnan(stable_rank(s)) and math.isnan(effective_rank(s))


def test_alignment_is_one_inside_the_basis_zero_outside_and_k_over_n_at_random():
    n, k = 40, 5
    basis = torch.eye(n, dtype=torch.float64)[:, :k]
    inside = torch.eye(n, dtype=torch.float64)[:, :2]
    outside = torch.eye(n, dtype=torch.float64)[:, k:k + 3]
    assert torch.allclose(alignment(inside, basis), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(alignment(outside, basis), torch.zeros(3, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    random = torch.nn.functional.normalize(torch.randn(n, 4000, generator=g, dtype=torch.float64), dim=0)
    assert float(alignment(random, basis).mean()) == pytest.approx(k / n, rel=0.05)


def test_embedding_side_takes_the_singular_vectors_of_the_embedding_dimension():
    delta = torch.zeros(6, 10, dtype=torch.float64)
    delta[2, 7] = 5.0
    right = embedding_side(delta, 10, 1)
    left = embedding_side(delta.T, 10, 1)
    assert float(right[7, 0].abs()) == pytest.approx(1.0) and float(left[7, 0].abs()) == pytest.approx(1.0)
    assert embedding_side(delta, 3, 1) is None


def test_subspace_head_effective_update_is_p_delta_m_pt_and_shares_sum_to_one():
    torch.manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(10, 3))
    head = SubspaceHead(basis)
    base = {k: v.clone() for k, v in head.state_dict().items()}
    state = dict(base, core=torch.randn(3, 3))
    deltas = update_matrices(head, state, base, ("core",))
    expected = basis.double() @ state["core"].double() @ basis.double().T
    assert torch.allclose(deltas[EFFECTIVE], expected, atol=1e-6)
    report = spectrum_report(deltas, bases={"corpus": torch.eye(10, dtype=torch.float64)[:, :3]})
    assert report["core"]["share"] == pytest.approx(1.0)
    assert report[EFFECTIVE]["share"] is None
    assert report[EFFECTIVE]["max_rank"] == 10 and report[EFFECTIVE]["stable_rank"] <= 3 + 1e-9
    assert report[EFFECTIVE]["alignment/corpus/chance"] == pytest.approx(0.3)
