"""Counter-based noise: the low-rank factors of any (seed, epoch, pair, parameter) on demand.

Nothing is stored. The factors of antithetic pair ``j`` for parameter ``p`` at step ``t`` are a pure
function of the key ``(seed, epoch = t // noise_reuse, j, pid(p))``; the engine regenerates them in the
update. The hash is written in int64 torch ops whose values always stay below 2**49, so it gives the same
bits on every device and for every chunking (no ``torch.Generator`` stream is involved).

Exact layout
------------
* ``param_id(name) = crc32(utf-8 name)``: a 32-bit id, independent of parameter order.
* ``H`` is the 32-bit ``lowbias32`` mixer (C. Wellons): ``x ^= x>>16; x *= 0x7feb352d; x ^= x>>15;
  x *= 0x846ca68b; x ^= x>>16`` (all mod 2**32).
* Base key: ``k = H(H(H(H(seed mod 2**32) ^ H(seed >> 32 ^ C1)) ^ H(epoch ^ C2)) ^ H(pid ^ C3))``.
  Pair key: ``k_j = H(k ^ H(j ^ C4))``.
* Uniform bits for counter ``c``: ``b(j, c) = H(k_j ^ H(c))``; uniform ``u = (b + 0.5) / 2**32`` in (0, 1).
* Normals by Box–Muller, in float64 then cast: normal number ``i`` uses counters ``2*(i//2)`` and
  ``2*(i//2)+1``, ``R = sqrt(-2 ln u0)``, ``theta = 2 pi u1``; even ``i`` takes ``R cos theta``, odd ``i``
  takes ``R sin theta``.
* A matrix parameter of shape ``[m, n]`` (more dims: ``[shape[0], prod(shape[1:])]``) at rank ``r`` reads
  normals ``0 .. m*r - 1`` as ``A`` (row-major ``[m, r]``) and ``m*r .. (m+n)*r - 1`` as ``B`` (``[n, r]``).
  A vector (full-rank) parameter reads normals ``0 .. numel - 1`` as its noise, in row-major order.

The integer bits are identical everywhere; the float64 ``log``/``cos``/``sin`` may differ in the last
float64 ulp between CPU and CUDA, which vanishes in the cast to float32 except in rare rounding ties.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch

_MASK = 0xFFFFFFFF
_C1, _C2, _C3, _C4 = 0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 ``x`` in [0, 2**32), split in 16-bit halves so nothing overflows."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (lo * c + ((hi * (c & 0xFFFF)) << 16)) & _MASK


def hash32(x: torch.Tensor) -> torch.Tensor:
    """The ``lowbias32`` integer mixer on an int64 tensor of values in [0, 2**32); same shape out."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _h(value: int) -> int:
    return int(hash32(torch.tensor(value & _MASK, dtype=torch.int64)))


def param_id(name: str) -> int:
    """The 32-bit id of a named parameter: ``crc32`` of its UTF-8 name."""
    return zlib.crc32(name.encode("utf-8")) & _MASK


def base_key(seed: int, epoch: int, pid: int) -> int:
    """The key shared by all pairs of one parameter at one noise epoch (see the module docstring)."""
    k = _h(_h(seed & _MASK) ^ _h((seed >> 32) ^ _C1))
    k = _h(k ^ _h(epoch ^ _C2))
    return _h(k ^ _h(pid ^ _C3))


def pair_keys(key: int, pairs: torch.Tensor) -> torch.Tensor:
    """Per-pair keys ``k_j = H(k ^ H(j ^ C4))`` for int64 pair indices ``pairs [J]`` -> int64 ``[J]``."""
    return hash32(key ^ hash32(pairs.to(torch.int64) ^ _C4))


def standard_normal(
    keys: torch.Tensor, count: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Normals number ``0 .. count-1`` of each key: ``keys [J]`` (int64) -> ``[J, count]`` in ``dtype``."""
    device = keys.device if device is None else torch.device(device)
    n_pairs = (count + 1) // 2
    if 2 * n_pairs > 2**32:
        raise ValueError(f"too many normals per key ({count}); the counter is 32-bit")
    counters = torch.arange(2 * n_pairs, dtype=torch.int64, device=device)
    bits = hash32(keys.to(device)[:, None] ^ hash32(counters)[None, :])  # [J, 2*n_pairs]
    u = (bits.to(torch.float64) + 0.5) * (1.0 / 2**32)
    radius = torch.sqrt(-2.0 * torch.log(u[:, 0::2]))
    theta = (2.0 * math.pi) * u[:, 1::2]
    z = torch.stack((radius * torch.cos(theta), radius * torch.sin(theta)), dim=-1).reshape(keys.shape[0], -1)
    return z[:, :count].to(dtype)


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """How a parameter of ``shape`` (ndim >= 2) is seen as a matrix ``[m, n]`` for low-rank noise."""
    m = int(shape[0])
    return m, int(math.prod(shape[1:]))


def lowrank_factors(
    seed: int,
    epoch: int,
    pid: int,
    pairs: torch.Tensor,
    m: int,
    n: int,
    rank: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors of the given pairs: ``A [J, m, r]``, ``B [J, n, r]``, standard normal; ``E_j = A_j B_jᵀ / sqrt(r)``."""
    keys = pair_keys(base_key(seed, epoch, pid), pairs.to(device) if device is not None else pairs)
    z = standard_normal(keys, (m + n) * rank, dtype=dtype, device=device)
    j = keys.shape[0]
    return z[:, : m * rank].reshape(j, m, rank), z[:, m * rank :].reshape(j, n, rank)


def full_noise(
    seed: int,
    epoch: int,
    pid: int,
    pairs: torch.Tensor,
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Full-rank standard normal noise of the given pairs for a parameter of ``shape``: ``[J, *shape]``."""
    keys = pair_keys(base_key(seed, epoch, pid), pairs.to(device) if device is not None else pairs)
    count = int(math.prod(shape))
    return standard_normal(keys, count, dtype=dtype, device=device).reshape(keys.shape[0], *shape)
