"""A linear head whose stored state is the quantized weight itself: codes and scales, no float parameter.

    f(h) = W h,   W = dequantize(codes, scales)  [m, n]      (``quant.codecs``: int8, mxfp4, nvfp4)

The head has no ``nn.Parameter``: its buffers (``codes``, ``scale`` and, for NVFP4, ``tensor_scale``) are
what a checkpoint, ``best_head.safetensors`` and the deployed model hold, and every forward pass and
evaluation scores with the dequantized W, so training, validation and test see exactly the served weights.
It describes its engine noise like a float linear head (``weight_noise``: noise on "weight" is noise on W),
so ES scores its population with the exact closed form (``es.perturb``) on the dequantized W.

Registered heads (``models.heads.HEADS``): ``linear-int8``, ``linear-mxfp4``, ``linear-nvfp4``. They start
from the identity W = I (as ``linear``) quantized with ``min_amax = INIT_MIN_AMAX``, so that the blocks of
zeros off the diagonal get a grid that can move (MXFP4: smallest step 2^-7, largest value 0.094; NVFP4 and
int8 about the same). Step 0 is exactly the zero-shot encoder (1 and 0 are on every grid).
:func:`quantize_head` is the post-hoc path: quantize a trained float head (``min_amax = 0``, the format's
default scales).

torchao: ``MXTensor.to_mx`` and ``NVFP4Tensor.to_nvfp4`` quantize and dequantize on CPU and give the same
codes and scales as this codec (tests/quant/test_codecs.py); ``F.linear`` with an NVFP4 weight runs on
CPU, with an MX weight it does not ("weight-only quant not yet supported" in torchao 0.18), and neither
tensor lets its codes be updated in place, so the head stores plain tensors and uses torchao as the oracle.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.heads import HEADS, HeadSpec, NoiseFactors
from .codecs import FORMATS, LEVELS, dequantize, element_scale, level_codes, level_index, quantize, stored_bytes

__all__ = ["INIT_MIN_AMAX", "QuantizedLinearHead", "float32_state_bytes", "quantize_head"]

INIT_MIN_AMAX = 0.1


class QuantizedLinearHead(nn.Module):
    """f(h) = W h with W stored in format ``fmt`` (module docstring).

    Args:
        in_dim, out_dim: n and m (n a multiple of the format's block size: 32 for MXFP4, 16 for NVFP4).
        fmt: "int8", "mxfp4" or "nvfp4".
        weight: the float W [m, n] to quantize (default: the identity ``torch.eye(m, n)``).
        min_amax: floor of every row / block amax when choosing the scales (``quant.codecs``).
    """

    def __init__(self, in_dim: int, out_dim: int, fmt: str, *, weight: Tensor | None = None,
                 min_amax: float = INIT_MIN_AMAX):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"unknown weight format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.shape = (out_dim, in_dim)
        self.min_amax = float(min_amax)
        weight = torch.eye(out_dim, in_dim) if weight is None else weight.detach()
        if tuple(weight.shape) != self.shape:
            raise ValueError(f"weight must be [{out_dim}, {in_dim}], got {tuple(weight.shape)}")
        for name, tensor in quantize(weight, fmt, min_amax=min_amax).items():
            self.register_buffer(name, tensor)

    @property
    def stored(self) -> dict[str, Tensor]:
        """The stored tensors (the buffers), by codec name."""
        return dict(self.named_buffers())

    @property
    def weight(self) -> Tensor:
        """The dequantized W [m, n] (float32), recomputed from the codes."""
        return dequantize(self.stored, self.fmt)

    def forward(self, h: Tensor) -> Tensor:
        """[..., n] -> [..., m]."""
        return h @ self.weight.to(h.dtype).T

    def weight_noise(self, factors: NoiseFactors) -> tuple[Tensor, Tensor]:
        """Engine noise on "weight" is noise on W (the dequantized weight)."""
        return factors("weight")

    # -- the grid view used by the update rules ------------------------------------------------------
    def levels(self) -> Tensor:
        """Each weight's index into the element grid ``codecs.LEVELS[fmt]`` (int64 [m, n])."""
        return level_index(self.stored, self.fmt)

    def set_levels(self, index: Tensor) -> None:
        """Write level indices [m, n] (clamped to the grid) back as codes; the scales do not change."""
        top = LEVELS[self.fmt].numel() - 1
        self.codes.copy_(level_codes(index.clamp(0, top), self.fmt))

    def element_scale(self) -> Tensor:
        """The fixed per-element scale c [m, n]: W = LEVELS[index] · c."""
        return element_scale(self.stored, self.fmt, self.shape)

    def requantize(self, weight: Tensor) -> None:
        """Quantize a float W [m, n] into the buffers, scales included (QAT writes its latent weights so)."""
        for name, tensor in quantize(weight.detach(), self.fmt, min_amax=self.min_amax).items():
            getattr(self, name).copy_(tensor)

    def state_bytes(self) -> int:
        """Bytes of the stored weight (codes + scales)."""
        return stored_bytes(self.stored)


def float32_state_bytes(shape: tuple[int, int], optimizer: str) -> int:
    """Bytes a float32 run of the same head keeps: W plus the optimizer's per-weight state (SGD without
    momentum 0, SGD with momentum and ClipUp 1, Adam/AdamW 2 float32 copies)."""
    copies = {"sgd": 0, "sgd-momentum": 1, "clipup": 1, "adam": 2, "adamw": 2}[optimizer]
    return 4 * shape[0] * shape[1] * (1 + copies)


def quantize_head(head: nn.Module, fmt: str, *, min_amax: float = 0.0) -> QuantizedLinearHead:
    """Post-hoc quantization of a float head f(h) = W h (``weight`` [m, n], no bias) into ``fmt``."""
    if getattr(head, "bias", None) is not None:
        raise ValueError("post-hoc weight quantization needs a head without bias (f(h) = W h)")
    weight = head.weight.detach().to(torch.float32)
    quantized = QuantizedLinearHead(weight.shape[1], weight.shape[0], fmt, weight=weight.cpu(), min_amax=min_amax)
    return quantized.to(weight.device)


def _builder(fmt: str):
    return lambda doc_emb, settings: QuantizedLinearHead(doc_emb.shape[1], settings.out_dim or doc_emb.shape[1], fmt)


for _fmt in FORMATS:
    HEADS.register(f"linear-{_fmt}", HeadSpec(_builder(_fmt), reads=("out_dim",)))
