"""Where an update went: per-parameter size, spectrum, ranks and alignment of ΔW = W - W0.

For an update matrix ΔW [m, n] with singular values s_1 >= ... >= s_r >= 0 (r = min(m, n)):

    share_p         = ||ΔW_p||_F² / Σ_q ||ΔW_q||_F²         (the parameter's part of the squared update)
    stable rank     = ||ΔW||_F² / ||ΔW||_2² = Σ s_i² / s_1²  (in [1, r]; 1 for a rank-one update)
    effective rank  = exp(H(p)),  p_i = s_i / Σ_j s_j,  H(p) = -Σ p_i log p_i  (Roy & Vetterli 2007; in [1, r],
                      r for a flat spectrum, 1 for rank one)

Alignment. With V [n, j] the top-j singular directions of ΔW on the side of length n (the embedding
dimension) and P [n, k] the top-k principal directions of the corpus (or query) embeddings, the alignment
of direction v_i is ||Pᵀ v_i||² in [0, 1], the share of v_i inside the principal subspace; a random direction
has expectation k / n ("chance"). A head's parameters are each analysed, and for the subspace and adapter
heads also their effective W (`EFFECTIVE`), whose update is P ΔM Pᵀ or ΔU Pᵀ in embedding coordinates.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from ..models.heads import principal_basis

EFFECTIVE = "W (effective)"


def singular_values(delta: Tensor) -> Tensor:
    """Singular values of a matrix [m, n] in float64, descending; a vector [m] is treated as [m, 1]."""
    matrix = delta.double().reshape(delta.shape[0], -1) if delta.dim() != 1 else delta.double()[:, None]
    return torch.linalg.svdvals(matrix)


def stable_rank(s: Tensor) -> float:
    """Σ s_i² / s_1² of singular values `s` [r]; nan for a zero matrix."""
    top = float(s.max()) if s.numel() else 0.0
    return float((s.double() ** 2).sum() / top ** 2) if top > 0 else math.nan


def effective_rank(s: Tensor) -> float:
    """exp of the entropy of p = s / Σ s (zeros contribute nothing); nan for a zero matrix."""
    total = float(s.sum())
    if total <= 0:
        return math.nan
    p = s.double() / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(directions: Tensor, basis: Tensor) -> Tensor:
    """||Pᵀ v_i||² for the columns v_i of `directions` [n, j] and an orthonormal `basis` P [n, k] -> [j]."""
    return ((basis.double().T @ directions.double()) ** 2).sum(dim=0)


def embedding_side(delta: Tensor, dim: int, top: int) -> Tensor | None:
    """The top-`top` singular directions [dim, j] of `delta` on its side of length `dim` (right singular
    vectors when it has `dim` columns, else left ones when it has `dim` rows); None when neither side does."""
    if delta.dim() != 2:
        return None
    u, _, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    if delta.shape[1] == dim:
        return vh[:top].T
    if delta.shape[0] == dim:
        return u[:, :top]
    return None


def update_matrices(head: nn.Module, state: dict[str, Tensor], base: dict[str, Tensor],
                    names: tuple[str, ...]) -> dict[str, Tensor]:
    """{parameter name: ΔW} for the learned parameters `names`, plus `EFFECTIVE` W - W0 for heads with a
    `weight` property that is not itself a parameter (subspace, adapter)."""
    deltas = {name: (state[name] - base[name]).detach().cpu().double() for name in names}
    if isinstance(getattr(type(head), "weight", None), property) and not isinstance(head.weight, nn.Parameter):
        head = copy.deepcopy(head)  # the caller's head keeps its weights
        head.load_state_dict(state)
        after = head.weight.detach().cpu().double()
        head.load_state_dict(base)
        deltas[EFFECTIVE] = after - head.weight.detach().cpu().double()
    return deltas


def spectrum_report(deltas: dict[str, Tensor], *, bases: dict[str, Tensor], top_directions: int = 5,
                    keep_values: int = 64) -> dict[str, Any]:
    """Per update matrix: norm, share (of the learned parameters, `EFFECTIVE` excluded), the top
    `keep_values` singular values, stable and effective rank, and the mean alignment of the top
    `top_directions` singular directions with each basis in `bases` ({"corpus": P [n, k], ...}) with its
    chance level k / n."""
    learned = [name for name in deltas if name != EFFECTIVE]
    total = sum(float((deltas[name] ** 2).sum()) for name in learned)
    report: dict[str, Any] = {}
    for name, delta in deltas.items():
        s = singular_values(delta)
        norm_sq = float((delta ** 2).sum())
        entry: dict[str, Any] = {
            "shape": list(delta.shape), "norm": math.sqrt(norm_sq),
            "share": norm_sq / total if name != EFFECTIVE and total > 0 else None,
            "singular_values": s[:keep_values].tolist(), "stable_rank": stable_rank(s),
            "effective_rank": effective_rank(s), "max_rank": int(s.numel()),
        }
        for label, basis in bases.items():
            directions = embedding_side(delta, basis.shape[0], top_directions)
            if directions is not None and norm_sq > 0:
                entry[f"alignment/{label}"] = float(alignment(directions, basis).mean())
                entry[f"alignment/{label}/chance"] = basis.shape[1] / basis.shape[0]
        report[name] = entry
    return report


def embedding_bases(doc_emb: Tensor, query_emb: Tensor, k: int) -> dict[str, Tensor]:
    """The top-k principal directions [n, k] of the corpus and of the query embeddings (float64, CPU)."""
    return {"corpus": principal_basis(doc_emb.cpu().double(), k),
            "queries": principal_basis(query_emb.cpu().double(), k)}
