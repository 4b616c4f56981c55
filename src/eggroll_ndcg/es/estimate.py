"""The ES gradient, regenerated from the counters in memory-bounded blocks of pairs.

    g = 1/(N sigma) Σ_i f̃_i E_i = 1/(N sigma) Σ_j (f̃_{2j} - f̃_{2j+1}) E_j

with ``E_j = A_j B_jᵀ / sqrt(r)`` (low-rank) or ``eps_j`` (full-rank vectors). This is the standard
estimator of the gradient of the Gaussian-smoothed objective ``E[f(W + sigma E)]`` (for ``raw`` shaping it
is unbiased, since ``Cov(vec E) = I`` for both noise kinds). No rescaling is applied here; the engine
writes ``param.grad = -g`` after optional global-norm clipping.

Determinism: the sum runs over fixed blocks of :data:`BLOCK_PAIRS` pairs (one GEMM per block, blocks
added in order), so the result is bit-identical for every ``pair_chunk`` (which only sets how many
pairs' factors are generated at once) and every way the fitness was computed in chunks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .population import Population
from .shaping import antithetic_differences

BLOCK_PAIRS = 32


def es_gradient(population: Population, shaped: Tensor, *, pair_chunk: int | None = None) -> dict[str, Tensor]:
    """``g`` for every perturbed parameter: ``shaped [N]`` -> ``{name: Tensor[shape]}`` (parameter dtype).

    ``pair_chunk`` bounds memory to the factors of that many pairs (rounded up to a multiple of
    :data:`BLOCK_PAIRS`): ``O(pair_chunk · r · (m + n))`` per low-rank parameter; None = all at once.
    """
    n_members = population.num_members
    if shaped.shape != (n_members,):
        raise ValueError(f"shaped fitness must have shape [{n_members}], got {tuple(shaped.shape)}")
    num_pairs = population.num_pairs
    chunk = num_pairs if pair_chunk is None else max(int(pair_chunk), 1)
    chunk = math.ceil(chunk / BLOCK_PAIRS) * BLOCK_PAIRS
    diffs = antithetic_differences(shaped)  # [J]
    scale = 1.0 / (n_members * population.sigma)
    grads: dict[str, Tensor] = {}
    for spec in population.specs:
        p = population.params[spec.name]
        d_all = diffs.to(device=p.device, dtype=p.dtype)
        if spec.kind == "lowrank":
            m, n = spec.matrix
            acc = torch.zeros(m, n, dtype=p.dtype, device=p.device)
        else:
            acc = torch.zeros(spec.shape, dtype=p.dtype, device=p.device)
        for start in range(0, num_pairs, chunk):
            stop = min(start + chunk, num_pairs)
            if spec.kind == "lowrank":
                A_all, B_all = population.factors(spec.name, range(start, stop))
            else:
                eps_all = population.full_noise(spec.name, range(start, stop))
            for b0 in range(start, stop, BLOCK_PAIRS):
                b1 = min(b0 + BLOCK_PAIRS, stop)
                d = d_all[b0:b1]
                if spec.kind == "lowrank":
                    A, B = A_all[b0 - start : b1 - start], B_all[b0 - start : b1 - start]
                    j, _, r = A.shape
                    a_flat = (A * d[:, None, None]).permute(1, 0, 2).reshape(m, j * r)  # [m, J·r]
                    b_flat = B.permute(0, 2, 1).reshape(j * r, n)  # [J·r, n]
                    acc += a_flat @ b_flat
                else:
                    eps = eps_all[b0 - start : b1 - start]
                    acc += torch.tensordot(d, eps, dims=1)
        if spec.kind == "lowrank":
            acc = acc / math.sqrt(population.rank)
        grads[spec.name] = (acc * scale).reshape(spec.shape)
    return grads


def global_norm(tensors: dict[str, Tensor]) -> float:
    """``sqrt(Σ ||t||²)`` over all tensors, as a Python float (accumulated in float64)."""
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors.values()))


def clip_global_norm(grads: dict[str, Tensor], max_norm: float | None) -> tuple[dict[str, Tensor], float]:
    """Scale all gradients by ``min(1, max_norm / ||g||)``; returns ``(clipped, norm before clipping)``."""
    norm = global_norm(grads)
    if max_norm is None or norm <= max_norm or norm == 0.0:
        return grads, norm
    factor = max_norm / norm
    return {name: g * factor for name, g in grads.items()}, norm
