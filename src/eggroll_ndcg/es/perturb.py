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
    a_flat = A.permute(1, 0, 2).reshape(m, num_pairs * rank)  # [m, J·r]
    b_flat = B.permute(1, 0, 2).reshape(n, num_pairs * rank)  # [n, J·r]

    q = h_q @ weight.T  # [Q, m]
    d = (h_d.reshape(-1, n) @ weight.T).reshape(n_q, pool, m)  # [Q, P, m]
    base = torch.einsum("qpm,qm->qp", d, q)  # [Q, P]

    u_q = (h_q @ b_flat).reshape(n_q, 1, num_pairs, rank)  # [Q, 1, J, r]
    u_d = (h_d.reshape(-1, n) @ b_flat).reshape(n_q, pool, num_pairs, rank)  # [Q, P, J, r]
    at_q = (q @ a_flat).reshape(n_q, 1, num_pairs, rank)  # [Q, 1, J, r]
    at_d = (d.reshape(-1, m) @ a_flat).reshape(n_q, pool, num_pairs, rank)  # [Q, P, J, r]
    gram = torch.bmm(A.transpose(1, 2), A)  # [J, r, r]
    g_uq = torch.einsum("jrs,qxjs->qxjr", gram, u_q)  # [Q, 1, J, r]

    if rank == 1:  # same math, without the size-1 reductions
        lin = (u_q * at_d + at_q * u_d)[..., 0]  # [Q, P, J]
        quad = (g_uq * u_d)[..., 0]
    else:
        lin = (u_q * at_d).sum(-1) + (at_q * u_d).sum(-1)
        quad = (g_uq * u_d).sum(-1)
    even = base[..., None] + (c * c) * quad  # [Q, P, J]
    odd = c * lin
    scores = torch.stack((even + odd, even - odd), dim=0)  # [2, Q, P, J]

    if normalize:
        nq_even = (q * q).sum(-1)[:, None, None] + (c * c) * (u_q * g_uq).sum(-1)  # [Q, 1, J]
        nq_odd = (2 * c) * (u_q * at_q).sum(-1)
        if rank == 1:
            g_ud = u_d * gram.reshape(1, 1, num_pairs, 1)
        else:
            g_ud = torch.einsum("jrs,qpjs->qpjr", gram, u_d)
        nd_even = (d * d).sum(-1)[..., None] + (c * c) * (u_d * g_ud).sum(-1)  # [Q, P, J]
        nd_odd = (2 * c) * (u_d * at_d).sum(-1)
        nq = torch.stack((nq_even + nq_odd, nq_even - nq_odd), dim=0)  # [2, Q, 1, J]
        nd = torch.stack((nd_even + nd_odd, nd_even - nd_odd), dim=0)  # [2, Q, P, J]
        scores = scores / (nq.clamp_min(0).sqrt().clamp_min(eps) * nd.clamp_min(0).sqrt().clamp_min(eps))

    return scores.permute(3, 0, 1, 2).reshape(2 * num_pairs, n_q, pool)  # member 2j+s = scores[s, ..., j]


def materialize(weight: Tensor, A: Tensor, B: Tensor, sigma: float) -> Tensor:
    """Oracle only: the explicit member weights ``W ± sigma·A_j B_jᵀ/sqrt(r)``, ``[2J, m, n]``."""
    rank = A.shape[-1]
    E = torch.bmm(A, B.transpose(1, 2)) / math.sqrt(rank)  # [J, m, n]
    return torch.stack((weight + sigma * E, weight - sigma * E), dim=1).reshape(-1, *weight.shape)
