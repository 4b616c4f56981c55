"""The subspace head W = I + P M Pᵀ and the adapter head W = I + U Pᵀ start at the zero-shot encoder (the
exactness of EGGROLL's closed form on them is in tests/train/test_closed_form_heads.py)."""

from __future__ import annotations

import torch

import pytest

from eggroll_ndcg.models.heads import AdapterHead, SubspaceHead, principal_basis


def _basis(n: int = 12, k: int = 4) -> torch.Tensor:
    return principal_basis(torch.randn(50, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64), k)


def test_principal_basis_is_orthonormal_and_deterministic():
    basis = _basis()
    assert torch.allclose(basis.T @ basis, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.equal(basis, _basis())


@pytest.mark.parametrize("head_class", [SubspaceHead, AdapterHead])
def test_basis_heads_start_at_the_zero_shot_encoder(head_class):
    head = head_class(_basis())
    h = torch.randn(5, 12, dtype=torch.float64)
    assert torch.equal(head(h), h)
