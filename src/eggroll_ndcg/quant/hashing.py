"""Unsupervised binary hashing baselines as linear heads f(h) = W (h - μ): no label is read.

* PCA-sign: W = Pᵀ, P [n, m] the top-m principal directions of the centered corpus embeddings (μ their
  mean); code = sign(Pᵀ(h - μ)).
* ITQ (Gong & Lazebnik 2011, iterative quantization): V = (H - μ) P, then alternate B = sign(V R) and the
  orthogonal Procrustes step R = argmin ||B - V R||_F = U Wᵀ from the SVD Vᵀ B = U S Wᵀ, from a random
  orthogonal R (seeded), for ``iterations`` rounds; W = (P R)ᵀ.

Both return a ``LinearHead`` with bias b = -W μ, so they run through the same evaluation and index as any
trained head (``quantize: binary``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.heads import LinearHead, principal_basis

__all__ = ["itq_head", "itq_rotation", "pca_sign_head"]


def _head(weight: Tensor, mean: Tensor) -> LinearHead:
    head = LinearHead(weight.shape[1], weight.shape[0], bias=True)
    head = head.to(weight.dtype)
    with torch.no_grad():
        head.linear.weight.copy_(weight)
        head.linear.bias.copy_(-(weight @ mean))
    return head


def pca_sign_head(doc_emb: Tensor, m: int | None = None) -> LinearHead:
    """sign(Pᵀ(h - μ)) as a head; m defaults to the embedding dimension."""
    m = m or doc_emb.shape[1]
    return _head(principal_basis(doc_emb, m).T.contiguous(), doc_emb.mean(dim=0))


def itq_rotation(projected: Tensor, *, iterations: int = 50, seed: int = 0) -> Tensor:
    """The ITQ rotation R [m, m] of centered, PCA-projected data V [N, m] (module docstring), in float64."""
    V = projected.double()
    g = torch.Generator().manual_seed(seed)
    R, _ = torch.linalg.qr(torch.randn(V.shape[1], V.shape[1], generator=g, dtype=torch.float64))
    for _ in range(iterations):
        B = torch.where(V @ R > 0, 1.0, -1.0).double()
        U, _, Wt = torch.linalg.svd(V.T @ B)
        R = U @ Wt
    return R


def itq_head(doc_emb: Tensor, m: int | None = None, *, iterations: int = 50, seed: int = 0) -> LinearHead:
    """sign(Rᵀ Pᵀ (h - μ)) as a head (ITQ on the corpus embeddings)."""
    m = m or doc_emb.shape[1]
    mean = doc_emb.mean(dim=0)
    P = principal_basis(doc_emb, m)  # [n, m]
    R = itq_rotation((doc_emb - mean) @ P, iterations=iterations, seed=seed).to(doc_emb.dtype)
    return _head((P @ R).T.contiguous(), mean)


def itq_objective(head: LinearHead, doc_emb: Tensor) -> float:
    """tr(Bᵀ V) / N = Σ|V| / N for the head's centered outputs V and B = sign(V): ITQ maximizes it (its
    ||B - V||² = N·m + ||V||² - 2 tr(BᵀV), with ||V||² fixed under rotation), never lowering it per round."""
    with torch.no_grad():
        return float(head(doc_emb).double().abs().sum() / doc_emb.shape[0])
