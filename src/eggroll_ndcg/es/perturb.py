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
    """The perturbation part of :func:`perturbed_linear`: ``± c (x B_j) A_jᵀ ± sigma·eps_j``, ``[2J, ..., m]``."""
    num_pairs, m, rank = A.shape
    c = sigma / math.sqrt(rank)
    lead = x.shape[1:-1]
    xp = x.reshape(num_pairs, -1, x.shape[-1])  # [J, 2*L, n]: the pair's two members side by side
    delta = torch.bmm(torch.bmm(xp, B), A.transpose(1, 2))  # [J, 2*L, m]
    signs = _signs(num_pairs, delta).repeat_interleave(delta.shape[1] // 2, dim=1)  # [J, 2*L]
    delta = delta * (c * signs)[..., None]
    if bias_noise is not None:
        delta = delta + (sigma * signs)[..., None] * bias_noise[:, None, :]
    return delta.reshape(2 * num_pairs, *lead, m)


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
    embeddings against ``[n, J·r]`` and ``[m, J·r]``, on top of the unperturbed pass; memory is
    ``O(J·Q·P·r + J·r·(m + n))``, never ``J·m·n``.
    """
    num_pairs, m, rank = A.shape
    n = B.shape[1]
    n_q, pool = h_d.shape[0], h_d.shape[1]
    c = sigma / math.sqrt(rank)
    jr = num_pairs * rank
    a_rows = A.transpose(1, 2).reshape(jr, m)  # [J·r, m], row j·r + k = column k of A_j
    b_rows = B.transpose(1, 2).reshape(jr, n)  # [J·r, n]
    h_d_flat = h_d.reshape(n_q * pool, n)

    q = h_q @ weight.T  # [Q, m]
    d = h_d_flat @ weight.T  # [Q·P, m]
    base = torch.bmm(d.view(n_q, pool, m), q[:, :, None])[..., 0]  # [Q, P]

    # Members on the leading axis from the start: [J, r, Q, P] comes straight out of the GEMMs.
    u_d = (b_rows @ h_d_flat.T).view(num_pairs, rank, n_q, pool)
    at_d = (a_rows @ d.T).view(num_pairs, rank, n_q, pool)
    u_q = (b_rows @ h_q.T).view(num_pairs, rank, n_q, 1)
    at_q = (a_rows @ q.T).view(num_pairs, rank, n_q, 1)
    gram = torch.bmm(A.transpose(1, 2), A)  # [J, r, r]
    g_uq = torch.einsum("jrs,jsqx->jrqx", gram, u_q)  # [J, r, Q, 1]

    if rank == 1:  # elementwise tail in blocks of pairs that stay in cache
        scores = torch.empty(num_pairs, 2, n_q, pool, dtype=u_d.dtype, device=u_d.device)
        dd = torch.linalg.vector_norm(d, dim=-1).square_().view(n_q, pool) if normalize else None
        qq = (q * q).sum(-1)[:, None]
        step = max(1, TAIL_BLOCK_ELEMENTS // (n_q * pool))
        for j0 in range(0, num_pairs, step):
            j = slice(j0, j0 + step)
            _rank_one_tail(scores[j], base, qq, dd, u_q[j, 0], at_q[j, 0], u_d[j, 0], at_d[j, 0],
                           gram[j].view(-1, 1, 1), g_uq[j, 0], c, eps)
        return scores.view(2 * num_pairs, n_q, pool)

    odd = c * ((u_q * at_d).sum(1) + (at_q * u_d).sum(1))  # [J, Q, P]
    even = base + (c * c) * (g_uq * u_d).sum(1)
    scores = torch.stack((even + odd, even - odd), dim=1)  # [J, 2, Q, P]
    if normalize:  # cosine: divide by ||W'h_q|| ||W'h_d||, each floored at eps like F.normalize
        nq_even = (q * q).sum(-1)[:, None] + (c * c) * (u_q * g_uq).sum(1)  # [J, Q, 1]
        nq_odd = (2 * c) * (u_q * at_q).sum(1)
        g_ud = torch.einsum("jrs,jsqp->jrqp", gram, u_d)
        nd_even = torch.linalg.vector_norm(d, dim=-1).square_().view(n_q, pool) + (c * c) * (u_d * g_ud).sum(1)
        nd_odd = (2 * c) * (u_d * at_d).sum(1)
        nq = torch.stack((nq_even + nq_odd, nq_even - nq_odd), dim=1)  # [J, 2, Q, 1]
        nd = torch.stack((nd_even + nd_odd, nd_even - nd_odd), dim=1)  # [J, 2, Q, P]
        scores = scores * nq.clamp_min(eps * eps).rsqrt() * nd.clamp_min(eps * eps).rsqrt()
    return scores.view(2 * num_pairs, n_q, pool)  # member 2j + k = scores[j, k]


TAIL_BLOCK_ELEMENTS = 1 << 17  # ~512 KB of float32 per temporary in the rank-1 tail


def _rank_one_tail(
    out: Tensor, base: Tensor, qq: Tensor, dd: Tensor | None, u_q: Tensor, at_q: Tensor, u_d: Tensor,
    at_d: Tensor, gram: Tensor, g_uq: Tensor, c: float, eps: float,
) -> None:
    """Rank 1 (r-axis dropped) for a block of pairs, written into ``out [J, 2, Q, P]``: the same formulas
    as the general case, computed in place in the GEMM outputs ``u_d``, ``at_d`` ``[J, Q, P]`` (a block
    small enough to stay in cache). ``gram [J, 1, 1]``; ``u_q, at_q, g_uq [J, Q, 1]``; ``qq [Q, 1]``;
    ``dd [Q, P]`` = ||W h_d||² when normalizing, else None."""
    if dd is not None:  # perturbed squared norms, before u_d / at_d are overwritten
        nd_odd = (u_d * at_d).mul_(2 * c)
        nd_even = (u_d * u_d).mul_((c * c) * gram).add_(dd)
        nq_even = qq + (c * c) * u_q * g_uq  # [J, Q, 1]
        nq_odd = (2 * c) * u_q * at_q
    odd = at_d.mul_(c * u_q).addcmul_(c * at_q, u_d)  # [J, Q, P]
    even = u_d.mul_((c * c) * g_uq).add_(base)
    torch.add(even, odd, out=out[:, 0])
    torch.sub(even, odd, out=out[:, 1])
    if dd is not None:  # 1 / max(||x||, eps) = rsqrt(max(||x||², eps²)), as F.normalize floors the norm
        floor = eps * eps
        inv_plus = torch.add(nd_even, nd_odd, out=u_d).clamp_min_(floor).rsqrt_()
        inv_plus.mul_((nq_even + nq_odd).clamp_min_(floor).rsqrt_())
        inv_minus = nd_even.sub_(nd_odd).clamp_min_(floor).rsqrt_()
        inv_minus.mul_((nq_even - nq_odd).clamp_min_(floor).rsqrt_())
        out[:, 0].mul_(inv_plus)
        out[:, 1].mul_(inv_minus)


def materialize(weight: Tensor, A: Tensor, B: Tensor, sigma: float) -> Tensor:
    """Oracle only: the explicit member weights ``W ± sigma·A_j B_jᵀ/sqrt(r)``, ``[2J, m, n]``."""
    rank = A.shape[-1]
    E = torch.bmm(A, B.transpose(1, 2)) / math.sqrt(rank)  # [J, m, n]
    return torch.stack((weight + sigma * E, weight - sigma * E), dim=1).reshape(-1, *weight.shape)
