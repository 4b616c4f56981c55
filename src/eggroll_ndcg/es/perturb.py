"""Perturbed forward passes that never form ``W + sigma·E``.

Member layout: members ``2j`` and ``2j+1`` use ``W + sigma·E_j`` and ``W - sigma·E_j`` with
``E_j = A_j B_jᵀ / sqrt(r)``, ``A [J, m, r]``, ``B [J, n, r]``. Write ``c = sigma / sqrt(r)``.

* :func:`perturbed_linear`: ``y_i = x_i Wᵀ + b ± c (x_i B_j) A_jᵀ`` for all members at once.
* :func:`bilinear_population_scores`: the exact closed form of ``s = (W' h_q)·(W' h_d)`` (and of its
  cosine variant) for every member, in ``O(J·Q·P·r)`` memory.
* :func:`materialize` builds the member weights explicitly; it exists only as a test / benchmark oracle.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


def _signs(num_pairs: int, like: Tensor) -> Tensor:
    """``[J, 2]`` of ``+1, -1``: the antithetic sign of members ``2j`` and ``2j+1``."""
    return torch.tensor([1.0, -1.0], dtype=like.dtype, device=like.device).expand(num_pairs, 2)


def perturbed_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    A: Tensor,
    B: Tensor,
    sigma: float,
    *,
    bias_noise: Tensor | None = None,
) -> Tensor:
    """Batched perturbed linear layer.

    ``x [2J, ..., n]`` (leading member axis), ``weight [m, n]``, ``bias [m]`` or None, ``A [J, m, r]``,
    ``B [J, n, r]``, optional ``bias_noise [J, m]`` (full-rank noise of the bias). Returns ``[2J, ..., m]``:

        y_i = x_i Wᵀ + b ± (sigma/sqrt r) (x_i B_j) A_jᵀ ± sigma·eps_j      (+ for i = 2j, - for i = 2j+1)
    """
    num_pairs, _, rank = A.shape
    if x.shape[0] != 2 * num_pairs:
        raise ValueError(f"x has {x.shape[0]} members on its leading axis, expected 2J = {2 * num_pairs}")
    return torch.nn.functional.linear(x, weight, bias) + lowrank_delta(x, A, B, sigma, bias_noise=bias_noise)


def lowrank_delta(x: Tensor, A: Tensor, B: Tensor, sigma: float, *, bias_noise: Tensor | None = None) -> Tensor:
    """The perturbation part of :func:`perturbed_linear`: ``± c (x B_j) A_jᵀ ± sigma·eps_j``, ``[2J, ..., m]``.

    The leading axis may also hold ``2J·R`` rows, member-major (row ``i·R + k`` belongs to member ``i``; e.g.
    ``R`` prompts per member in a batched ``generate``); the result has ``x.shape[:-1] + (m,)``.
    """
    num_pairs, m, rank = A.shape
    c = sigma / math.sqrt(rank)
    if x.shape[0] % (2 * num_pairs):
        raise ValueError(f"x has {x.shape[0]} rows on its leading axis, not a multiple of 2J = {2 * num_pairs}")
    xp = x.reshape(num_pairs, -1, x.shape[-1])  # [J, 2*L, n]: the pair's two members side by side
    delta = torch.bmm(torch.bmm(xp, B), A.transpose(1, 2))  # [J, 2*L, m]
    signs = _signs(num_pairs, delta).repeat_interleave(delta.shape[1] // 2, dim=1)  # [J, 2*L]
    delta = delta * (c * signs)[..., None]
    if bias_noise is not None:
        delta = delta + (sigma * signs)[..., None] * bias_noise[:, None, :]
    return delta.reshape(*x.shape[:-1], m)


def bilinear_scores(weight: Tensor, h_q: Tensor, h_d: Tensor, *, normalize: bool = False) -> Tensor:
    """Unperturbed head score ``s = (W h_q)·(W h_d)``: ``h_q [Q, n]``, ``h_d [Q, P, n]`` -> ``[Q, P]``.

    With ``normalize=True`` both head outputs are L2-normalized first (``x / max(||x||, 1e-12)``).
    """
    q = h_q @ weight.T
    d = h_d @ weight.T
    if normalize:
        q = torch.nn.functional.normalize(q, dim=-1)
        d = torch.nn.functional.normalize(d, dim=-1)
    return torch.einsum("qpm,qm->qp", d, q)


def bilinear_population_scores(
    weight: Tensor,
    h_q: Tensor,
    h_d: Tensor,
    A: Tensor,
    B: Tensor,
    sigma: float,
    *,
    normalize: bool = False,
    eps: float = 1e-12,
) -> Tensor:
    """Exact head scores of all ``2J`` members, never forming ``W ± sigma·E_j``.

    Shapes: ``weight [m, n]``, ``h_q [Q, n]``, ``h_d [Q, P, n]``, ``A [J, m, r]``, ``B [J, n, r]`` ->
    ``[2J, Q, P]``, member ``2j`` = ``+E_j``, ``2j+1`` = ``-E_j``.

    With ``q = W h_q``, ``d = W h_d``, ``u_q = B_jᵀ h_q``, ``u_d = B_jᵀ h_d``, ``G_j = A_jᵀ A_j`` and
    ``c = sigma / sqrt(r)``:

        s_j^± = q·d ± c (u_q·(A_jᵀ d) + u_d·(A_jᵀ q)) + c² u_qᵀ G_j u_d

    ``normalize=True`` gives the cosine ``s^± / (||W'h_q|| ||W'h_d||)``, whose squared norms are exact too:

        ||W'h||² = ||W h||² ± 2c u·(A_jᵀ W h) + c² uᵀ G_j u        (u = B_jᵀ h)

    (each norm is floored at ``eps`` as ``F.normalize`` does). The work is two GEMMs of the ``Q + Q·P``
    embeddings against ``[n, J·r]`` and ``[m, J·r]``, on top of the unperturbed pass, then the elementwise
    terms in blocks of pairs of about ``TAIL_BLOCK_ELEMENTS`` values (so the temporaries stay in cache);
    memory is ``O(J·Q·P·r + J·r·(m + n))``, never ``J·m·n``. Every rank runs the same code.
    """
    base, terms = _closed_form_terms(weight, h_q, h_d, A, B, normalize=normalize)
    num_pairs, rank, n_q, pool = terms.u_d.shape
    scores = torch.empty(num_pairs, 2, n_q, pool, dtype=terms.u_d.dtype, device=terms.u_d.device)
    step = max(1, TAIL_BLOCK_ELEMENTS // (n_q * pool * rank))
    for j0 in range(0, num_pairs, step):
        pairs = slice(j0, j0 + step)
        _block_scores(scores[pairs], base, terms.block(pairs), c=sigma / math.sqrt(rank), eps=eps)
    return scores.view(2 * num_pairs, n_q, pool)  # member 2j + k = scores[j, k]


TAIL_BLOCK_ELEMENTS = 1 << 17  # ~512 KB of float32 per [J_block, r, Q, P] temporary


class _BaseTerms(NamedTuple):
    """Unperturbed terms shared by every pair: ``qd = q·d [Q, P]``, ``qq = ||q||² [Q, 1]`` and
    ``dd = ||d||² [Q, P]`` (the norms only when normalizing, else None)."""

    qd: Tensor
    qq: Tensor | None
    dd: Tensor | None


class _PairTerms(NamedTuple):
    """Per-pair projections, rank axis kept: ``u_q = B_jᵀh_q``, ``at_q = A_jᵀq`` ``[J, r, Q, 1]``;
    ``u_d = B_jᵀh_d``, ``at_d = A_jᵀd`` ``[J, r, Q, P]``; ``gram = A_jᵀA_j`` ``[J, r, r]``."""

    u_q: Tensor
    at_q: Tensor
    u_d: Tensor
    at_d: Tensor
    gram: Tensor

    def block(self, pairs: slice) -> _PairTerms:
        """The same terms for the pairs ``pairs`` only (views)."""
        return _PairTerms(*(t[pairs] for t in self))


def _closed_form_terms(
    weight: Tensor, h_q: Tensor, h_d: Tensor, A: Tensor, B: Tensor, *, normalize: bool
) -> tuple[_BaseTerms, _PairTerms]:
    """The GEMMs of the closed form: members on the leading axis, ``[J, r, Q, P]`` straight out of them."""
    num_pairs, m, rank = A.shape
    n = B.shape[1]
    n_q, pool = h_d.shape[0], h_d.shape[1]
    jr = num_pairs * rank
    a_rows = A.transpose(1, 2).reshape(jr, m)  # [J·r, m], row j·r + k = column k of A_j
    b_rows = B.transpose(1, 2).reshape(jr, n)  # [J·r, n]
    h_d_flat = h_d.reshape(n_q * pool, n)
    q = h_q @ weight.T  # [Q, m]
    d = h_d_flat @ weight.T  # [Q·P, m]
    base = _BaseTerms(
        qd=torch.bmm(d.view(n_q, pool, m), q[:, :, None])[..., 0],
        qq=(q * q).sum(-1)[:, None] if normalize else None,
        dd=torch.linalg.vector_norm(d, dim=-1).square_().view(n_q, pool) if normalize else None,
    )
    terms = _PairTerms(
        u_q=(b_rows @ h_q.T).view(num_pairs, rank, n_q, 1),
        at_q=(a_rows @ q.T).view(num_pairs, rank, n_q, 1),
        u_d=(b_rows @ h_d_flat.T).view(num_pairs, rank, n_q, pool),
        at_d=(a_rows @ d.T).view(num_pairs, rank, n_q, pool),
        gram=torch.bmm(A.transpose(1, 2), A),
    )
    return base, terms


def _rank_sum(x: Tensor) -> Tensor:
    """Sum over the rank axis 1: ``[J, r, ...] -> [J, ...]`` (at r = 1 a view, the sum of one term)."""
    return x[:, 0] if x.shape[1] == 1 else x.sum(1)


def _dot(x: Tensor, y: Tensor) -> Tensor:
    """``Σ_k x_k y_k`` over the rank axis: ``[J, r, Q, *]`` (broadcasting) -> ``[J, Q, *]``."""
    return _rank_sum(x * y)


def _quadratic(x: Tensor, gram: Tensor, y: Tensor) -> Tensor:
    """``xᵀ G_j y = Σ_kl x_k G_kl y_l``: ``x, y [J, r, Q, *]``, ``gram [J, r, r]`` -> ``[J, Q, *]``."""
    return _rank_sum(x * torch.einsum("jrs,jsqp->jrqp", gram, y))


def _block_scores(out: Tensor, base: _BaseTerms, t: _PairTerms, *, c: float, eps: float) -> None:
    """Scores of a block of pairs into ``out [J, 2, Q, P]``: ``s± = even ± odd`` with
    ``odd = c (u_q·A_jᵀd + u_d·A_jᵀq)``, ``even = q·d + c² u_qᵀG_j u_d``; when normalizing, times
    ``1/||W'h_q||`` and ``1/||W'h_d||`` (:func:`_inverse_norms`)."""
    odd = c * (_dot(t.u_q, t.at_d) + _dot(t.at_q, t.u_d))  # [J, Q, P]
    even = base.qd + (c * c) * _quadratic(t.u_d, t.gram, t.u_q)
    torch.add(even, odd, out=out[:, 0])
    torch.sub(even, odd, out=out[:, 1])
    if base.dd is not None:  # cosine
        out.mul_(_inverse_norms(base.qq, t.u_q, t.at_q, t.gram, c=c, eps=eps))  # [J, 2, Q, 1]
        out.mul_(_inverse_norms(base.dd, t.u_d, t.at_d, t.gram, c=c, eps=eps))  # [J, 2, Q, P]


def _inverse_norms(sq_norm: Tensor, u: Tensor, at: Tensor, gram: Tensor, *, c: float, eps: float) -> Tensor:
    """``1 / max(||W'h||, eps)`` for both members of each pair, ``[J, 2, Q, *]``, from
    ``||W'h||² = ||Wh||² ± 2c u·(A_jᵀWh) + c² uᵀG_j u`` with ``sq_norm = ||Wh||² [Q, *]``,
    ``u = B_jᵀh``, ``at = A_jᵀWh`` ``[J, r, Q, *]`` (``rsqrt(max(x², eps²))``, the floor of F.normalize)."""
    even = sq_norm + (c * c) * _quadratic(u, gram, u)
    odd = (2 * c) * _dot(u, at)
    return torch.stack((even + odd, even - odd), dim=1).clamp_min(eps * eps).rsqrt()


def materialize(weight: Tensor, A: Tensor, B: Tensor, sigma: float) -> Tensor:
    """Oracle only: the explicit member weights ``W ± sigma·A_j B_jᵀ/sqrt(r)``, ``[2J, m, n]``."""
    rank = A.shape[-1]
    E = torch.bmm(A, B.transpose(1, 2)) / math.sqrt(rank)  # [J, m, n]
    return torch.stack((weight + sigma * E, weight - sigma * E), dim=1).reshape(-1, *weight.shape)
