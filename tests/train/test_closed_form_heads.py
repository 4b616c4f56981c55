"""Every registered head that describes its own noise (`weight_noise`) is scored exactly by the closed form:
member 2j (2j+1) holds each parameter X + c A_j B_jᵀ (X - c A_j B_jᵀ), c = sigma/sqrt(r), and its scores
must equal those of that head with its parameters set explicitly."""

from __future__ import annotations

import copy

import pytest
import torch

from eggroll_ndcg.models.heads import HEADS, HeadSettings, build_head, score_pool
from eggroll_ndcg.train.batches import PoolBatch
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.es_method import EggrollMethod
from eggroll_ndcg.train.objectives import parse_objective

def _has_float_closed_form(head: torch.nn.Module) -> bool:
    """A float head with its own noise description (quantized-weight heads store codes, no parameters, and are
    tested in tests/quant)."""
    return hasattr(head, "weight_noise") and any(p.is_floating_point() for p in head.parameters())


CLOSED_FORM_HEADS = [name for name, spec in HEADS.items()
                     if _has_float_closed_form(spec.build(torch.randn(40, 32), HeadSettings(subspace_dim=4, hidden=8)))]


def _random_head(name: str) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(1)
    head = build_head(name, torch.randn(50, 32, generator=generator, dtype=torch.float64),
                      HeadSettings(subspace_dim=4, hidden=8)).double()
    with torch.no_grad():
        for param in head.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator, dtype=torch.float64))
    return head


def _batch() -> PoolBatch:
    generator = torch.Generator().manual_seed(2)
    return PoolBatch(query_emb=torch.randn(3, 32, generator=generator, dtype=torch.float64),
                     doc_emb=torch.randn(3, 5, 32, generator=generator, dtype=torch.float64),
                     grades=torch.zeros(3, 5), mask=torch.ones(3, 5, dtype=torch.bool), ideal_grades=torch.ones(3, 1),
                     rows=torch.arange(3))


def test_the_linear_subspace_and_adapter_heads_declare_a_closed_form():
    assert {"linear", "subspace", "adapter"} <= set(CLOSED_FORM_HEADS)
    assert "mlp" not in CLOSED_FORM_HEADS


@pytest.mark.parametrize("name", CLOSED_FORM_HEADS)
def test_closed_form_population_scores_equal_materialized_members(name):
    head, batch = _random_head(name), _batch()
    sigma, rank = 0.1, 2
    method = EggrollMethod(head, TrainConfig(es={"population_size": 6, "rank": rank, "sigma": sigma}),
                           parse_objective("ndcg@10"))
    chunk = method.engine.ask().all()
    scores = method.population_scores(chunk, batch)  # outside torch.no_grad(), as a caller may
    assert not scores.requires_grad
    for j in range(3):
        for member, sign in ((2 * j, 1.0), (2 * j + 1, -1.0)):
            member_head = copy.deepcopy(head)
            with torch.no_grad():
                for param_name, param in member_head.named_parameters():
                    A, B = chunk.factors(param_name)
                    param.add_(sign * (sigma / rank ** 0.5) * A[j] @ B[j].T)
            expected = score_pool(member_head, batch.query_emb, batch.doc_emb, normalize=True)
            torch.testing.assert_close(scores[member], expected, rtol=0, atol=1e-10)
