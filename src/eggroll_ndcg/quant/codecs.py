"""Weight codecs: int8 with a per-row scale, MXFP4 and NVFP4, in pure torch (CPU and CUDA), bit for bit.

Every codec maps a float weight W [m, n] to stored tensors (codes + scales) and back. All three share one
view used by the training rules (`quant.weights`, `train.quantized_weights_method`): an element is a level
index i into a sorted element grid ``LEVELS`` times a per-element scale c_ij fixed by its row or block,

    W_ij = LEVELS[i_ij] · c_ij.

**int8, per row.** c_i = max(amax_i, min_amax) / 127 (float32; a zero row gets c_i = 1), codes
q = clamp(round_half_even(W / c_i), -127, 127) as int8. Levels: the integers -127..127.

**E2M1 (FP4 element).** Bits ``s e1 e0 m``: sign s, a 2-bit exponent with bias 1, one mantissa bit.
e = 0 is subnormal, value (-1)^s · m/2; otherwise (-1)^s · 2^(e-1) · (1 + m/2). Codes 0..7 are
0, 0.5, 1, 1.5, 2, 3, 4, 6 and code + 8 is the negative. Encoding rounds to nearest, ties to the code with
m = 0 (ties to even), and saturates at ±6; the sign of a value that rounds to zero is kept (code 8 = -0).
Two codes share a byte, the element with the even index in the low nibble (torchao's ``pack_uint4``).

**MXFP4** (OCP Microscaling v1.0): blocks of 32 consecutive elements of a row share an E8M0 scale, a biased
exponent byte b, scale 2^(b-127) (b = 255 is NaN). The scale exponent is floor(log2(amax)) - 2 (2 = the
largest exponent of E2M1), read from the float32 bits of the block amax and clamped to [-127, 128]; the
elements are W / 2^(b-127) (the scale floored at 2^-126 as torchao does) encoded as E2M1. This is torchao's
``to_mx(..., ScaleCalculationMode.FLOOR)``.

**NVFP4**: blocks of 16 share an E4M3 (``float8_e4m3fn``) scale, times one float32 tensor scale
t = amax / (448 · 6). Block scale b = e4m3(clamp(block_amax / 6 / t, e4m3 tiny, 448)), elements
W · ((1/t) / b) clamped to ±6 and encoded as E2M1; decoding is E2M1 · (t · b). This is torchao's
``nvfp4_quantize`` with a per-tensor scale, and ``NVFP4Tensor.dequantize``.

``min_amax`` floors every row / block / tensor amax: a block of zeros (an identity head's off-diagonal
blocks) then still gets a grid that can move, of step about min_amax/12 (FP4) or min_amax/127 (int8).
With ``min_amax = 0`` the codecs are exactly the formats' defaults above (the tests compare with torchao).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["FORMATS", "BLOCK_SIZE", "E2M1_VALUES", "LEVELS", "decode_e2m1", "decode_e4m3", "decode_e8m0",
           "dequantize", "element_scale", "encode_e2m1", "level_index", "level_codes", "pack_nibbles",
           "quantize", "stored_bytes", "unpack_nibbles"]

WeightFormat = Literal["int8", "mxfp4", "nvfp4"]
FORMATS: tuple[str, ...] = ("int8", "mxfp4", "nvfp4")
BLOCK_SIZE = {"int8": None, "mxfp4": 32, "nvfp4": 16}
E2M1_MAX = 6.0
E4M3_MAX = 448.0
E4M3_TINY = float(torch.finfo(torch.float8_e4m3fn).tiny)  # 2^-6, the smallest normal E4M3
F32_MIN_NORMAL = 2.0 ** -126

E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
_E2M1_MIDPOINTS = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
_FP4_LEVELS = torch.tensor([-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
LEVELS = {"int8": torch.arange(-127, 128, dtype=torch.float32), "mxfp4": _FP4_LEVELS, "nvfp4": _FP4_LEVELS}


# ---------------------------------------------------------------------------------------------- elements
def decode_e2m1(codes: Tensor) -> Tensor:
    """E2M1 codes (uint8, values 0..15) -> float32, from the bit fields (module docstring)."""
    c = codes.to(torch.int32)
    sign, exponent, mantissa = (c >> 3) & 1, (c >> 1) & 3, (c & 1).to(torch.float32)
    magnitude = torch.where(exponent == 0, 0.5 * mantissa,
                            torch.pow(2.0, (exponent - 1).to(torch.float32)) * (1.0 + 0.5 * mantissa))
    return torch.where(sign == 1, -magnitude, magnitude)


def encode_e2m1(x: Tensor) -> Tensor:
    """float -> E2M1 codes (uint8 0..15): nearest value, ties to even mantissa, saturating at ±6 (finite x)."""
    x = x.to(torch.float32)
    a = x.abs().clamp_max(E2M1_MAX)
    mids = _E2M1_MIDPOINTS.to(x.device)
    index = torch.searchsorted(mids, a.contiguous(), right=False)  # number of midpoints strictly below a
    tie = (index < mids.numel()) & (a == mids[index.clamp_max(mids.numel() - 1)]) & (index % 2 == 1)
    index = index + tie.to(index.dtype)  # a tie between codes 2k+1 and 2k+2 goes up, to the even mantissa
    return (index + 8 * torch.signbit(x).to(index.dtype)).to(torch.uint8)


def pack_nibbles(codes: Tensor) -> Tensor:
    """[..., 2k] codes 0..15 -> [..., k] bytes, element 2i in the low nibble (torchao ``pack_uint4``)."""
    codes = codes.to(torch.uint8)
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_nibbles(packed: Tensor) -> Tensor:
    """Inverse of :func:`pack_nibbles`: [..., k] bytes -> [..., 2k] codes."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(*packed.shape[:-1], -1)


def decode_e8m0(biased: Tensor) -> Tensor:
    """E8M0 bytes -> float32 2^(b - 127) (b = 255: NaN)."""
    b = biased.to(torch.int32)
    value = torch.pow(torch.tensor(2.0, device=b.device), (b - 127).to(torch.float32))
    return torch.where(b == 255, torch.full_like(value, float("nan")), value)


def decode_e4m3(bits: Tensor) -> Tensor:
    """E4M3 (``float8_e4m3fn``) bytes -> float32."""
    return bits.to(torch.uint8).view(torch.float8_e4m3fn).to(torch.float32)


# ---------------------------------------------------------------------------------------------- formats
def _blocks(weight: Tensor, size: int) -> Tensor:
    m, n = weight.shape
    if n % size:
        raise ValueError(f"the input dimension {n} must be a multiple of the block size {size}")
    return weight.to(torch.float32).reshape(m, n // size, size)


def quantize(weight: Tensor, fmt: str, *, min_amax: float = 0.0) -> dict[str, Tensor]:
    """W [m, n] -> the stored tensors of format ``fmt`` (module docstring):

    int8: ``codes`` int8 [m, n], ``scale`` float32 [m];
    mxfp4: ``codes`` uint8 [m, n/2] (packed E2M1), ``scale`` uint8 [m, n/32] (E8M0);
    nvfp4: ``codes`` uint8 [m, n/2], ``scale`` uint8 [m, n/16] (E4M3 bits), ``tensor_scale`` float32 [1].
    """
    if weight.dim() != 2:
        raise ValueError(f"a weight codec takes a matrix [m, n], got shape {tuple(weight.shape)}")
    if fmt == "int8":
        amax = weight.to(torch.float32).abs().amax(dim=1).clamp_min(min_amax)
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        codes = torch.round(weight.to(torch.float32) / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return {"codes": codes, "scale": scale}
    if fmt == "mxfp4":
        blocks = _blocks(weight, 32)
        amax = blocks.abs().amax(dim=-1).clamp_min(min_amax)  # [m, n/32]
        exponent = ((amax.view(torch.int32) >> 23) & 0xFF) - 127  # floor(log2(amax)) of a normal amax
        biased = ((exponent - 2).clamp(-127, 128) + 127).to(torch.uint8)
        scale = (biased.to(torch.int32) << 23).view(torch.float32).clamp_min(F32_MIN_NORMAL)
        codes = encode_e2m1(blocks / scale[..., None]).reshape(weight.shape)
        return {"codes": pack_nibbles(codes), "scale": biased}
    if fmt == "nvfp4":
        blocks = _blocks(weight, 16)
        tensor_amax = blocks.abs().amax().clamp_min(min_amax)
        tensor_scale = (tensor_amax / (E4M3_MAX * E2M1_MAX)).reshape(1)
        block_amax = blocks.abs().amax(dim=-1).clamp_min(min_amax)
        scaled = (block_amax / E2M1_MAX) / tensor_scale
        fp8 = scaled.clamp(E4M3_TINY, E4M3_MAX).to(torch.float8_e4m3fn)
        reciprocal = (1.0 / tensor_scale) / fp8.to(torch.float32)
        elements = (blocks * reciprocal[..., None]).clamp(-E2M1_MAX, E2M1_MAX)
        codes = encode_e2m1(elements).reshape(weight.shape)
        return {"codes": pack_nibbles(codes), "scale": fp8.view(torch.uint8), "tensor_scale": tensor_scale}
    raise ValueError(f"unknown weight format {fmt!r}; choose one of {', '.join(FORMATS)}")


def element_scale(stored: dict[str, Tensor], fmt: str, shape: tuple[int, int]) -> Tensor:
    """The per-element scale c [m, n] (float32) of stored tensors: W = LEVELS[i] · c."""
    m, n = shape
    if fmt == "int8":
        return stored["scale"][:, None].expand(m, n)
    if fmt == "mxfp4":
        scale = decode_e8m0(stored["scale"])  # as torchao's get_fp_scale (2^-127 for b = 0, no floor)
    else:
        scale = stored["tensor_scale"] * decode_e4m3(stored["scale"])  # torchao's order: t · b
    return scale.repeat_interleave(BLOCK_SIZE[fmt], dim=1)


def element_values(stored: dict[str, Tensor], fmt: str) -> Tensor:
    """The element values before scaling, float32 [m, n]: int8 codes, or the decoded E2M1 codes."""
    if fmt == "int8":
        return stored["codes"].to(torch.float32)
    return decode_e2m1(unpack_nibbles(stored["codes"]))


def dequantize(stored: dict[str, Tensor], fmt: str) -> Tensor:
    """Stored tensors -> W [m, n] float32: element value times its scale (exactly torchao's dequantize)."""
    values = element_values(stored, fmt)
    return values * element_scale(stored, fmt, tuple(values.shape))


def level_index(stored: dict[str, Tensor], fmt: str) -> Tensor:
    """Each element's index into ``LEVELS[fmt]`` (int64 [m, n]); -0 and +0 are the same level."""
    values = element_values(stored, fmt)
    levels = LEVELS[fmt].to(values.device)
    return torch.searchsorted(levels, values.contiguous())


def level_codes(index: Tensor, fmt: str) -> Tensor:
    """Level indices [m, n] -> the stored ``codes`` tensor of ``fmt`` (zero is written as +0)."""
    if fmt == "int8":
        return (index - 127).to(torch.int8)
    return pack_nibbles(encode_e2m1(LEVELS[fmt].to(index.device)[index]))


def stored_bytes(stored: dict[str, Tensor]) -> int:
    """Bytes held by stored tensors."""
    return sum(t.numel() * t.element_size() for t in stored.values())
