"""The subspace head W = I + P M Pᵀ and the adapter head W = I + U Pᵀ: zero-shot start, and EGGROLL's closed
form on them is exact."""

from __future__ import annotations

import torch

import pytest

from eggroll_ndcg.models.heads import AdapterHead, SubspaceHead, principal_basis, score_pool
from eggroll_ndcg.train.batches import PoolBatch
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.es_method import EggrollMethod


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


@pytest.mark.parametrize(("head_class", "name", "shape"), [(SubspaceHead, "core", (4, 4)), (AdapterHead, "up", (12, 4))])
def test_closed_form_scores_of_basis_heads_equal_materialized_members(head_class, name, shape):
    """Member 2j has the learned matrix X + c A_j B_jᵀ (c = sigma/sqrt r; X = M or U); its scores must equal
    those of the head holding that matrix, computed directly. This checks the mapping of the noise on X to
    noise on W: (P A, P B) for the subspace head, (A, P B) for the adapter head."""
    torch.manual_seed(0)
    head = head_class(_basis())
    with torch.no_grad():
        getattr(head, name).copy_(0.3 * torch.randn(*shape, dtype=torch.float64))
    config = TrainConfig(population_size=6, rank=2, sigma=0.1, pair_chunk=None)
    method = EggrollMethod(head, config)
    batch = PoolBatch(query_emb=torch.randn(3, 12, dtype=torch.float64), doc_emb=torch.randn(3, 5, 12, dtype=torch.float64),
                      grades=torch.zeros(3, 5), mask=torch.ones(3, 5, dtype=torch.bool), ideal_grades=torch.ones(3, 1),
                      rows=torch.arange(3))
    population = method.engine.ask()
    chunk = population.all()
    scores = method._population_scores(chunk, batch)
    A, B = chunk.factors(name)
    for j in range(3):
        for member, sign in ((2 * j, 1.0), (2 * j + 1, -1.0)):
            member_head = head_class(head.basis)
            with torch.no_grad():
                getattr(member_head, name).copy_(getattr(head, name) + sign * (0.1 / 2**0.5) * A[j] @ B[j].T)
            expected = score_pool(member_head, batch.query_emb, batch.doc_emb, normalize=True)
            assert torch.allclose(scores[member], expected, atol=1e-10)
