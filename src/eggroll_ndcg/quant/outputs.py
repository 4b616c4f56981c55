"""Quantized head outputs: the document (and query) codes an index stores, and their exact scores.

Kinds (config field ``quantize``):

* ``none``: float scores, cosine with ``normalize`` (unchanged).
* ``binary``: b(x) = +1 where x > 0, else -1 (sentence-transformers' ``x > 0`` bit), for queries and
  documents; s = b_q·b_d = m - 2·Hamming(b_q, b_d), an integer. Packed as ``np.packbits(x > 0)`` (ubinary).
* ``binary_asym``: float query x_q (L2-normalized with ``normalize``) against binary documents: s = x_q·b_d.
* ``int8``: sentence-transformers' ``quantize_embeddings(..., "int8")``: per dimension start = min and
  step = (max - min)/255 (0 -> 1) from calibration outputs, code = clip(floor((x - start)/step), 0, 255) - 128;
  queries and documents use the same ranges; s = Σ code_q·code_d, an int32 (computed exactly in float: each
  partial sum is an integer below 2^24 for m <= 1024). x = the L2-normalized output with ``normalize``.

Ties are common (Hamming scores take m + 1 values): every ranking uses the project's tie rule, score
descending then doc id descending (pools store candidates in that order; see ``metrics`` and
``data.retrieval``).

**Population scores without a member's W.** For a closed-form head (W) and pair j, member ± outputs are
x± = W h ± δ, δ = c A_j (B_jᵀ h), c = σ/sqrt(r): one shared projection W h plus an elementwise low-rank
update. For binary codes the pair shares one sensitivity mask S = |δ| > |W h|: outside S both members keep
the base bit; inside S member + has sign(δ) and member - has -sign(δ) (exact in IEEE arithmetic, since
|δ| > |Wh| makes Wh ± δ nonzero with the sign of ±δ). Writing y = (1-S)·b(Wh) and x = S·sign(δ), the member
codes are y ± x and

    s± = (y_q·y_d + x_q·x_d) ± (x_q·y_d + y_q·x_d)

so one mask and one batched product of [y, x] per pair give both antithetic members (the float-query form is
the same with x_q± in place of y_q ± x_q). int8 codes need the member's own normalized outputs, formed
elementwise from the shared projections. Work is O(J·Q·P·m) elementwise, memory blocked over pairs; no
[m, n] member matrix is ever formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["QUANTIZE_KINDS", "OutputCodec", "binary_codes", "bits_per_document", "calibrate_int8", "make_codec",
           "pack_bits", "population_scores", "quantize_int8", "unpack_bits"]

QUANTIZE_KINDS = ("none", "binary", "binary_asym", "int8")
BLOCK_ELEMENTS = 1 << 21  # elements of one [pairs, Q, P, m] temporary (8 MiB of float32)


def binary_codes(x: Tensor) -> Tensor:
    """±1 codes [..., m] (x's dtype) of outputs x [..., m]: +1 where x > 0, else -1."""
    return torch.where(x > 0, 1.0, -1.0).to(x.dtype)


def pack_bits(x: Tensor) -> np.ndarray:
    """``np.packbits(x > 0, axis=-1)``: [..., m] -> uint8 [..., ceil(m/8)], most significant bit first."""
    return np.packbits((x > 0).cpu().numpy(), axis=-1)


def unpack_bits(packed: np.ndarray, m: int) -> Tensor:
    """Inverse of `pack_bits`: uint8 [..., ceil(m/8)] -> ±1 float32 codes [..., m]."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1)[..., :m]
    return torch.from_numpy(bits.astype(np.float32) * 2 - 1)


def calibrate_int8(outputs: Tensor) -> Tensor:
    """sentence-transformers' int8 ranges of calibration outputs [N, m]: [2, m] = (min, max) per dimension."""
    return torch.stack((outputs.min(dim=0).values, outputs.max(dim=0).values))


def quantize_int8(x: Tensor, ranges: Tensor) -> Tensor:
    """int8 codes (as x's float dtype) of x [..., m] with ranges [2, m]: clip(floor((x - start)/step), 0, 255)
    - 128, step = (max - min)/255 (0 -> 1), exactly as ``quantize_embeddings`` (in float32 for float32 x)."""
    ranges = ranges.to(x.dtype)
    start = ranges[0]
    step = (ranges[1] - start) / 255
    step = torch.where(step == 0, torch.ones_like(step), step)
    return torch.floor((x - start) / step).clamp_(0, 255).sub_(128)


@dataclass(frozen=True)
class OutputCodec:
    """How head outputs become index codes and scores (module docstring). ``ranges`` [2, m]: int8 only."""

    kind: str
    normalize: bool = True
    ranges: Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZE_KINDS:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_KINDS)}, got {self.kind!r}")
        if self.kind == "int8" and self.ranges is None:
            raise ValueError("an int8 codec needs calibration ranges [2, m]")

    def _float(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1) if self.normalize else x

    def doc_codes(self, x: Tensor) -> Tensor:
        """What the index stores for head outputs x [..., m], as a float tensor of the code values."""
        if self.kind in ("binary", "binary_asym"):
            return binary_codes(x)
        if self.kind == "int8":
            return quantize_int8(self._float(x), self.ranges)
        return self._float(x)

    def query_codes(self, x: Tensor) -> Tensor:
        """What a query is scored with: the float output for ``binary_asym``, else the document code."""
        return self._float(x) if self.kind == "binary_asym" else self.doc_codes(x)

    def pool_scores(self, q: Tensor, d: Tensor) -> Tensor:
        """Scores of head outputs q [..., Q, m] against each query's pool d [..., Q, P, m] -> [..., Q, P]."""
        return torch.einsum("...qpm,...qm->...qp", self.doc_codes(d), self.query_codes(q))

    @property
    def integer_scores(self) -> bool:
        return self.kind in ("binary", "int8")

    def settings(self) -> dict[str, Any]:
        """JSON-able codec settings (written next to an exported model): kind, normalize, int8 ranges."""
        out: dict[str, Any] = {"quantize": self.kind, "normalize": self.normalize,
                               "bit_order": "np.packbits(x > 0), most significant bit first"}
        if self.ranges is not None:
            out["ranges"] = self.ranges.detach().cpu().double().tolist()
        return out

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "OutputCodec":
        ranges = settings.get("ranges")
        return cls(settings["quantize"], bool(settings.get("normalize", True)),
                   None if ranges is None else torch.tensor(ranges, dtype=torch.float32))


def make_codec(kind: str, calibration_outputs: Tensor | None = None, *, normalize: bool = True) -> OutputCodec:
    """The codec of ``kind``; int8 ranges from ``calibration_outputs`` [N, m] (raw head outputs of the
    calibration documents, normalized here when ``normalize``), in float32 as sentence-transformers keeps them."""
    if kind != "int8":
        return OutputCodec(kind, normalize)
    if calibration_outputs is None:
        raise ValueError("int8 needs calibration outputs (the head's outputs on the training corpus)")
    x = F.normalize(calibration_outputs, dim=-1) if normalize else calibration_outputs
    return OutputCodec(kind, normalize, calibrate_int8(x.float()))


def bits_per_document(kind: str, m: int) -> int:
    """Bits an index stores per document: m (binary), 8m (int8), 32m (float)."""
    return {"binary": m, "binary_asym": m, "int8": 8 * m}.get(kind, 32 * m)


def _deltas(A: Tensor, u: Tensor, c: float) -> Tensor:
    """δ = c A_j u_j: A [J, m, r], u [J, r, L] -> [J, L, m]."""
    return c * torch.bmm(A, u).transpose(1, 2)


def population_scores(codec: OutputCodec, weight: Tensor, h_q: Tensor, h_d: Tensor, A: Tensor, B: Tensor,
                      sigma: float) -> Tensor:
    """Exact quantized scores of all 2J members of W ± σ A_j B_jᵀ/sqrt(r), never forming a member's W.

    Shapes: ``weight [m, n]``, ``h_q [Q, n]``, ``h_d [Q, P, n]``, ``A [J, m, r]``, ``B [J, n, r]`` ->
    ``[2J, Q, P]`` (member 2j = +E_j, 2j+1 = -E_j), equal to ``codec.pool_scores`` of the materialized
    members' outputs (tested). Pairs are processed in blocks of about ``BLOCK_ELEMENTS`` values.
    """
    num_pairs, m, rank = A.shape
    n_q, pool, n = h_d.shape
    c = sigma / math.sqrt(rank)
    q = h_q @ weight.T  # [Q, m] shared projections
    d = (h_d.reshape(n_q * pool, n) @ weight.T).view(n_q, pool, m)
    out = torch.empty(num_pairs, 2, n_q, pool, dtype=q.dtype, device=q.device)
    step = max(1, BLOCK_ELEMENTS // max(1, n_q * pool * m))
    for j0 in range(0, num_pairs, step):
        pairs = slice(j0, j0 + step)
        Aj, Bj = A[pairs], B[pairs]
        dq = _deltas(Aj, Bj.transpose(1, 2) @ h_q.T, c)  # [Jb, Q, m]
        dd = _deltas(Aj, Bj.transpose(1, 2) @ h_d.reshape(-1, n).T, c).view(-1, n_q, pool, m)  # [Jb, Q, P, m]
        out[pairs] = _block(codec, q, d, dq, dd)
    return out.view(2 * num_pairs, n_q, pool)


def _split(x: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    """(y, x) of the module docstring: y = base bit off the sensitive set S = |δ| > |x|, x = sign(δ) on S."""
    sensitive = delta.abs() > x.abs()
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(sensitive, zero, binary_codes(x)), torch.where(sensitive, torch.sign(delta), zero)


def _block(codec: OutputCodec, q: Tensor, d: Tensor, dq: Tensor, dd: Tensor) -> Tensor:
    """Scores [Jb, 2, Q, P] of a block of pairs from the shared outputs q [Q, m], d [Q, P, m] and their
    deltas dq [Jb, Q, m], dd [Jb, Q, P, m]."""
    if codec.kind == "int8":
        members_q = torch.stack((q + dq, q - dq), dim=1)  # [Jb, 2, Q, m]
        members_d = torch.stack((d + dd, d - dd), dim=1)  # [Jb, 2, Q, P, m]
        return codec.pool_scores(members_q, members_d)
    y_d, x_d = _split(d, dd)  # [Jb, Q, P, m] each
    docs = torch.cat((y_d, x_d), dim=-1)  # [Jb, Q, P, 2m]
    if codec.kind == "binary":
        y_q, x_q = _split(q.expand_as(dq), dq)
        # columns: even = [y_q, x_q]·[y_d, x_d], odd = [x_q, y_q]·[y_d, x_d]
        cols = torch.stack((torch.cat((y_q, x_q), -1), torch.cat((x_q, y_q), -1)), dim=-1)  # [Jb, Q, 2m, 2]
        even_odd = torch.matmul(docs, cols)  # [Jb, Q, P, 2]
        even, odd = even_odd[..., 0], even_odd[..., 1]
        return torch.stack((even + odd, even - odd), dim=1)
    if codec.kind == "binary_asym":  # float members x_q± against codes y_d ± x_d
        plus, minus = codec.query_codes(q + dq), codec.query_codes(q - dq)  # [Jb, Q, m]
        cols = torch.stack((torch.cat((plus, plus), -1), torch.cat((minus, -minus), -1)), dim=-1)
        return torch.matmul(docs, cols).permute(0, 3, 1, 2)  # [Jb, 2, Q, P]
    raise ValueError(f"population_scores needs a quantized codec, got {codec.kind!r}")


@torch.no_grad()
def head_population_scores(head: torch.nn.Module, chunk, query_emb: Tensor, doc_emb: Tensor, mask: Tensor, *,
                           kind: str, normalize: bool) -> Tensor:
    """[2J, B, P] quantized scores of a population chunk's members on a batch (the ES fitness input).

    A closed-form head (``weight_noise``) goes through `population_scores`; any other head runs its Linear
    layers as a population (``es.population_forward``) and its member outputs are coded by the codec.
    int8 ranges are calibrated once per step on the base head's outputs of the batch's real candidates
    (``mask``), shared by every member (the served index calibrates on the whole corpus).
    """
    from ..es import population_forward

    calibration = head(doc_emb[mask]) if kind == "int8" else None
    codec = make_codec(kind, calibration, normalize=normalize)
    if codec.ranges is not None:
        codec = OutputCodec(kind, normalize, codec.ranges.to(doc_emb.dtype))
    describe = getattr(head, "weight_noise", None)
    factors = describe(chunk.factors) if describe is not None else None
    if factors is not None:
        return population_scores(codec, head.weight, query_emb, doc_emb, *factors, chunk.sigma)
    q = population_forward(head, chunk, query_emb, shared_inputs=True)  # [2J, B, m]
    d = population_forward(head, chunk, doc_emb, shared_inputs=True)  # [2J, B, P, m]
    return codec.pool_scores(q, d)
