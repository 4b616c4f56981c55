"""PCA-sign and ITQ hashing heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eggroll_ndcg.quant.hashing import itq_head, itq_objective, itq_rotation, pca_sign_head


def _corpus(seed=0, n=400, dim=16):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim, dim, generator=g)
    return F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64) @ mix.double() + 0.3, dim=-1)


def test_pca_sign_head_outputs_are_centered_principal_projections():
    docs = _corpus()
    head = pca_sign_head(docs, 8)
    out = head(docs)
    assert torch.allclose(out.mean(0), torch.zeros(8, dtype=out.dtype), atol=1e-12)  # centered
    variances = out.var(0)
    assert torch.all(variances[:-1] >= variances[1:] - 1e-12)  # principal order
    assert torch.allclose(head.weight @ head.weight.T, torch.eye(8, dtype=out.dtype), atol=1e-10)


def test_itq_rotation_is_orthogonal_and_never_lowers_its_objective():
    docs = _corpus(1)
    values = [itq_objective(itq_head(docs, 8, iterations=k, seed=3), docs) for k in (1, 2, 5, 20)]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert values[-1] > values[0]
    V = (docs - docs.mean(0)) @ pca_sign_head(docs, 8).weight.T
    R = itq_rotation(V, iterations=10)
    assert torch.allclose(R @ R.T, torch.eye(8, dtype=R.dtype), atol=1e-10)


def test_itq_is_deterministic_for_a_seed():
    docs = _corpus(2)
    assert torch.equal(itq_head(docs, 8, seed=5).weight, itq_head(docs, 8, seed=5).weight)
