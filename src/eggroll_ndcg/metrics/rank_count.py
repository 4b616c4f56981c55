"""Exact ranks of a few candidates per pool without sorting: count the candidates that beat each one.

Shapes (the canonical form of :mod:`eggroll_ndcg.metrics.relevant`): ``s`` [A, B, P] scores (bfloat16,
float32 or float64), ``pad`` [B, P] in the compute dtype (float32, or float64 for float64 scores; 0 for a
real candidate, NaN for a masked one, broadcast over A), ``pos`` [B, R] the pool positions of R chosen
candidates per pool, ``valid`` [B, R] which slots are used, ``srel`` [A, B, R] their scores (NaN in unused
slots). Comparisons run in the compute dtype, where bfloat16 values are exact.

Rank rule (the one of :func:`eggroll_ndcg.metrics.ranking.rank_top_k`): candidate j beats candidate i when
s_j > s_i, or s_j = s_i and j < p_i (ties go to the lower pool position). The 0-based rank of i is

    rank_i = #{real j : s_j > s_i} + #{real j < p_i : s_j = s_i}.

Masked candidates hold s_j + NaN = NaN, and every comparison with NaN is false, so they never beat anyone and
are never counted; an unused slot (srel = NaN) is beaten by no one and gets rank 0 (its caller ignores it).
The work is A * B * R * P comparisons and no top-k, no sort of the pool.

Two kernels give the same integers:

- plain torch, chunked over the pool so that no more than ``CHUNK_ELEMENTS`` comparisons live at once
  (any device; the fallback);
- fused CPU kernels from ``torch.compile`` (inductor's C++ code generation). The main one takes the used
  slots only (K of the B * R), gathers s_i and counts g_i = #{s_j > s_i} and e_i = #{s_j >= s_i} in one
  pass, without materializing [A, K, P]. Where
  e_i - g_i = 1 (no other real candidate has i's score, the usual case for float scores) rank_i = g_i; the
  pools with a tie at a chosen candidate are recounted with the position rule (:func:`_exact_counts`, also
  compiled, or the plain kernel for a few pools). The compiler is tried once per process: any failure (no
  C++ compiler, an inductor error, dynamo's recompile limit) switches to the plain kernel for good, with one
  warning.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Callable, Literal

import torch
from torch import Tensor

Kernel = Literal["auto", "compiled", "plain"]

CHUNK_ELEMENTS = 1 << 22   # comparisons held at once by the plain kernel (bool bytes, per chunk)
MIN_COMPILED_WORK = 1 << 22  # A * B * R * P below this: the plain kernel (no compile for small calls)
MAX_COMPILED_SHAPES = 6    # distinct (A, B, P, dtype, threads) graphs compiled per process, then plain
MAX_EXACT_POSITION = 1 << 24  # float32 counts and positions are exact below 2^24
COMPILE_ENV = "EGGROLL_NDCG_COMPILE"  # "0" turns the compiled kernel off

__all__ = ["CHUNK_ELEMENTS", "COMPILE_ENV", "beating_counts", "count_plain", "count_compiled",
           "compiled_kernel_usable", "slot_scores"]


def count_plain(s: Tensor, pad: Tensor, srel: Tensor, pos: Tensor, *, chunk_elements: int = CHUNK_ELEMENTS,
                ) -> Tensor:
    """Exact 0-based ranks [A, B, R] of the chosen candidates, in ``pad.dtype`` (plain torch, any device).

    ``s`` [A, B, P] (any float dtype), ``pad`` [B, P] in the compute dtype, ``srel`` [A, B, R], ``pos`` [B, R].
    rank_i = sum_j [s_j + pad_j > s_i] + [s_j + pad_j = s_i][j < p_i], summed over pool chunks of C columns,
    C = max(1, chunk_elements // (A * B * R)), so the comparison tensor is [A, B, R, C].
    """
    A, B, P = s.shape
    R = srel.shape[-1]
    counts = torch.zeros(A, B, R, dtype=torch.long, device=s.device)
    if R == 0 or P == 0:
        return counts.to(pad.dtype)
    width = max(1, chunk_elements // max(1, A * B * R))
    si = srel.unsqueeze(-1)                       # [A, B, R, 1]
    pi = pos.unsqueeze(-1)                        # [B, R, 1]
    for start in range(0, P, width):
        stop = min(P, start + width)
        sj = (s[..., start:stop] + pad[:, start:stop]).unsqueeze(-2)  # [A, B, 1, C]
        j = torch.arange(start, stop, device=s.device)
        beats = (sj > si) | ((sj == si) & (j < pi))
        counts += beats.sum(-1)
    return counts.to(pad.dtype)


def slot_scores(s: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
    """srel [A, B, R]: s at the slot positions, NaN in unused slots. ``s`` [A, B, P], ``pos``/``valid`` [B, R]."""
    return torch.where(valid, s.gather(-1, pos.expand(s.shape[0], -1, -1)), float("nan"))


def _fused_counts(s: Tensor, pad: Tensor, slot_b: Tensor, slot_p: Tensor) -> tuple[Tensor, Tensor]:
    """g = #{j : s_j + pad_j > s_i}, e = #{j : s_j + pad_j >= s_i} [A, K] in ``pad.dtype`` for the K used
    slots i = (slot_b[k], slot_p[k]) (pool, position), each [K].

    Only used slots are counted (a dense [A, B, R] pass would also scan the pools' empty slots). Written as
    a broadcast so that inductor fuses the row gather and both counts into one reduction over P per (a, k);
    float sums (exact below 2^24) vectorize where int sums do not.
    """
    sj = s[:, slot_b, :] + pad[slot_b]                 # [A, K, P]
    si = s[:, slot_b, slot_p].unsqueeze(-1)            # [A, K, 1]
    return (sj > si).to(pad.dtype).sum(-1), (sj >= si).to(pad.dtype).sum(-1)


def _exact_counts(s: Tensor, pad: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
    """Exact ranks [A, B, R] in one fused pass with the position rule: sum_j [s_j >= s_i] for j < p_i and
    [s_j > s_i] for j >= p_i (j = p_i itself is not > itself). About twice the work of :func:`_fused_counts`,
    so it only recounts the pools with ties (bfloat16 scores have many)."""
    j = torch.arange(s.shape[-1], dtype=pad.dtype, device=s.device)
    sj = (s + pad).unsqueeze(-2)
    si = slot_scores(s, pos, valid).unsqueeze(-1)
    before = j < pos.unsqueeze(-1).to(pad.dtype)
    return torch.where(before, sj >= si, sj > si).to(pad.dtype).sum(-1)


class _Compiled:
    """``fn`` compiled by torch.compile, created and tried lazily; after any failure it is never tried again.

    ``dynamic`` {argument index: dims}: sizes that are marked dynamic (one graph for all of them but 1), so
    a graph is specialized on the other sizes, the dtype and the thread count only.
    """

    def __init__(self, fn: Callable, dynamic: dict[int, tuple[int, ...]]) -> None:
        self.source, self.dynamic = fn, dynamic
        self.fn: Callable | None = None
        self.failed: str | None = None
        self.keys: set[tuple] = set()
        self.lock = threading.Lock()

    def disabled(self) -> bool:
        return self.failed is not None or os.environ.get(COMPILE_ENV, "1") == "0"

    def fail(self, error: BaseException) -> None:
        self.failed = f"{type(error).__name__}: {error}"[:500]
        warnings.warn(f"torch.compile of the rank-count kernel failed; using the plain torch kernel "
                      f"({self.failed})", RuntimeWarning, stacklevel=4)

    def key(self, args: tuple[Tensor, ...]) -> tuple:
        """What a compiled graph is specialized on: static sizes, dynamic sizes only as = 1 or not, dtype, threads."""
        sizes = tuple(tuple(n == 1 if d in self.dynamic.get(i, ()) else n for d, n in enumerate(a.shape))
                      for i, a in enumerate(args))
        return sizes, args[0].dtype, args[0].device.type, torch.get_num_threads()

    def admits(self, key: tuple) -> bool:
        """A new graph is compiled only while fewer than MAX_COMPILED_SHAPES exist (dynamo's own limit is 8)."""
        return key in self.keys or len(self.keys) < MAX_COMPILED_SHAPES

    def run(self, args: tuple[Tensor, ...]):
        """Compile on first use and call; recompiles past dynamo's limit raise instead of running unfused."""
        import torch._dynamo  # noqa: PLC0415 (imported only where the compiled kernel is used)

        if self.fn is None:
            self.fn = torch.compile(self.source, dynamic=False, fullgraph=True)
        args = tuple(a.detach().contiguous() for a in args)
        for i, dims in self.dynamic.items():
            for d in dims:
                if args[i].shape[d] > 1:  # not the vectorized loop (that is P), so a symbolic size costs little
                    torch._dynamo.mark_dynamic(args[i], d)
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True), torch.no_grad():  # grad mode is a guard
            return self.fn(*args)

    def __call__(self, *args: Tensor):
        """``fn(*args)``, or None when compiling is off, failed now or before, or is out of graphs."""
        key = self.key(args)
        with self.lock:
            if self.disabled() or not self.admits(key):
                return None
            try:
                with warnings.catch_warnings():  # compiling imports modules that warn of torch.jit deprecations
                    warnings.simplefilter("ignore", DeprecationWarning)
                    out = self.run(args)
            except Exception as error:  # no compiler, inductor error, recompile limit: plain from now on
                self.fail(error)
                return None
            self.keys.add(key)
            return out


_COMPILED = _Compiled(_fused_counts, {2: (0,), 3: (0,)})        # the used-slot count K dynamic
_EXACT = _Compiled(_exact_counts, {0: (1,), 1: (0,), 2: (0, 1), 3: (0, 1)})  # tied pools T and R dynamic


def compiled_kernel_usable(device: torch.device) -> bool:
    """True unless the compiled kernel is off (env ``EGGROLL_NDCG_COMPILE=0``), failed, or not for ``device``.

    Only CPU is compiled (inductor's C++ backend); CUDA uses the plain kernel, which is already fused enough
    there (element-wise work over the chunk, bandwidth-bound).
    """
    return device.type == "cpu" and not _COMPILED.disabled()


def count_compiled(s: Tensor, pad: Tensor, pos: Tensor, valid: Tensor) -> Tensor | None:
    """Exact 0-based ranks [A, B, R] from the fused kernel, or None when it cannot run (then use the plain one).

    The kernel counts the used slots only; rank = g where e - g <= 1, and the pools (a, b) with e - g > 1 at
    some slot (a tie at a chosen candidate) are recounted exactly on those rows only.
    """
    if s.shape[-1] >= MAX_EXACT_POSITION:
        return None
    slot_b, slot_r = valid.nonzero(as_tuple=True)             # [K]
    ranks = torch.zeros(s.shape[0], *pos.shape, dtype=pad.dtype, device=s.device)
    if len(slot_b) == 0:
        return ranks
    counts = _COMPILED(s, pad, slot_b, pos[slot_b, slot_r])
    if counts is None:
        return None
    greater, greater_equal = counts                            # [A, K]
    ranks[:, slot_b, slot_r] = greater
    tied = torch.zeros(s.shape[:2], dtype=pad.dtype, device=s.device)
    tied.index_add_(1, slot_b, ((greater_equal - greater) > 1).to(pad.dtype))
    rows = tied.nonzero()                                     # [T, 2]
    if len(rows) == 0:
        return ranks
    a, b = rows[:, 0], rows[:, 1]
    s_rows, pad_rows, pos_rows, valid_rows = s[a, b].unsqueeze(0), pad[b], pos[b], valid[b]  # [1, T, P] ...
    exact = None
    if len(rows) * pos.shape[-1] * s.shape[-1] >= MIN_COMPILED_WORK // 16:
        exact = _EXACT(s_rows, pad_rows, pos_rows, valid_rows)
    if exact is None:
        exact = count_plain(s_rows, pad_rows, slot_scores(s_rows, pos_rows, valid_rows), pos_rows)
    ranks[a, b] = exact[0]                                   # [T, R]; unused slots count 0
    return ranks


def beating_counts(s: Tensor, pad: Tensor, pos: Tensor, valid: Tensor, *, kernel: Kernel = "auto") -> Tensor:
    """Exact 0-based ranks [A, B, R] (``pad.dtype``) of the used slots, 0 in unused ones (module docstring).

    kernel: "plain" (chunked torch), "compiled" (the fused CPU kernel; the plain one where it cannot run), or
    "auto": compiled on CPU when the work A * B * R * P is at least ``MIN_COMPILED_WORK``, else plain.
    """
    if kernel not in ("auto", "compiled", "plain"):
        raise ValueError(f"kernel must be 'auto', 'compiled' or 'plain', got {kernel!r}")
    work = math.prod(s.shape) * pos.shape[-1]
    wanted = kernel == "compiled" or (kernel == "auto" and work >= MIN_COMPILED_WORK)
    if wanted and work > 0 and compiled_kernel_usable(s.device):
        ranks = count_compiled(s, pad, pos, valid)
        if ranks is not None:
            return ranks
    return count_plain(s, pad, slot_scores(s, pos, valid), pos)
