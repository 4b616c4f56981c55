"""Heads: zero-shot start, init properties, config names, and the pool score s = f(h_q) · f(h_d)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eggroll_ndcg.models.heads import HeadSettings, LinearHead, MLPHead, build_head, score_pool


def _embeddings(Q=3, P=5, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(Q, n, generator=g), dim=-1)
    d = F.normalize(torch.randn(Q, P, n, generator=g), dim=-1)
    return q, d


def test_identity_head_reproduces_zero_shot_scores():
    q, d = _embeddings()
    zero_shot = torch.einsum("qn,qpn->qp", q, d)
    head = LinearHead(8, 8)
    assert torch.equal(score_pool(head, q, d, normalize=False), zero_shot)
    torch.testing.assert_close(score_pool(head, q, d, normalize=True), zero_shot, rtol=0, atol=1e-6)


def test_identity_head_with_more_outputs_keeps_the_scores():
    q, d = _embeddings()
    head = LinearHead(8, 12)
    assert torch.equal(score_pool(head, q, d, normalize=False), torch.einsum("qn,qpn->qp", q, d))


def test_identity_head_with_fewer_outputs_is_a_row_orthonormal_projection():
    head = LinearHead(8, 3)
    W = head.weight.detach()
    torch.testing.assert_close(W @ W.T, torch.eye(3))
    q, d = _embeddings()
    expected = torch.einsum("qn,qpn->qp", q[:, :3], d[:, :, :3])
    torch.testing.assert_close(score_pool(head, q, d, normalize=False), expected)


def test_orthogonal_init_is_orthonormal_and_seeded():
    a = LinearHead(8, 8, init="orthogonal", generator=torch.Generator().manual_seed(1))
    b = LinearHead(8, 8, init="orthogonal", generator=torch.Generator().manual_seed(1))
    c = LinearHead(8, 8, init="orthogonal", generator=torch.Generator().manual_seed(2))
    W = a.weight.detach()
    torch.testing.assert_close(W @ W.T, torch.eye(8), atol=1e-5, rtol=0)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    assert not torch.allclose(W, torch.eye(8))


def test_random_init_has_unit_row_scale():
    head = LinearHead(256, 256, init="random", generator=torch.Generator().manual_seed(0))
    assert head.weight.std().item() == pytest.approx(256 ** -0.5, rel=0.05)


def test_linear_head_bias_starts_at_zero_and_is_learnable():
    head = LinearHead(4, 4, bias=True)
    assert torch.equal(head.bias, torch.zeros(4)) and head.bias.requires_grad
    assert LinearHead(4, 4).bias is None


def test_mlp_head_starts_at_identity():
    q, d = _embeddings()
    head = MLPHead(8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(head(d), d)
    assert torch.equal(score_pool(head, q, d, normalize=False), torch.einsum("qn,qpn->qp", q, d))


def test_mlp_head_weights_are_linear_layers_and_the_output_layer_learns_first():
    q, d = _embeddings()
    head = MLPHead(8, 16, generator=torch.Generator().manual_seed(0))
    assert [type(m) for m in head.modules() if isinstance(m, nn.Linear)] == [nn.Linear, nn.Linear]
    score_pool(head, q, d, normalize=True).sum().backward()
    assert head.down.weight.grad.abs().sum() > 0
    assert torch.equal(head.up.weight.grad, torch.zeros_like(head.up.weight))


def test_mlp_head_rejects_a_different_output_dimension():
    with pytest.raises(ValueError, match="keeps the dimension"):
        MLPHead(8, 16, 4)


def test_build_head_from_config_names():
    corpus = torch.randn(20, 8)
    assert isinstance(build_head("linear", corpus), LinearHead)
    assert build_head("linear", corpus, HeadSettings(out_dim=4, hidden=99)).weight.shape == (4, 8)
    mlp = build_head("mlp", corpus, HeadSettings(hidden=16))
    assert isinstance(mlp, MLPHead) and mlp.up.weight.shape == (16, 8)
    assert build_head("subspace", corpus, HeadSettings(subspace_dim=3)).core.shape == (3, 3)
    with pytest.raises(KeyError, match="unknown head 'transformer'"):
        build_head("transformer", corpus)


def test_score_pool_is_the_bilinear_score_of_each_query_with_its_own_pool():
    q, d = _embeddings(Q=2, P=3)
    head = LinearHead(8, 8, init="random", generator=torch.Generator().manual_seed(3))
    for normalize in (False, True):
        scores = score_pool(head, q, d, normalize=normalize)
        for i in range(2):
            fq, fd = head(q[i]), head(d[i])
            if normalize:
                fq, fd = F.normalize(fq, dim=-1), F.normalize(fd, dim=-1)
            torch.testing.assert_close(scores[i], fd @ fq)
    assert score_pool(head, q, d, normalize=True).abs().max() <= 1 + 1e-6
