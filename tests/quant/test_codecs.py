"""The weight codecs follow the formats bit for bit: E2M1 / E4M3 / E8M0 fields, the grids round-trip
exactly, and MXFP4 / NVFP4 codes and scales equal torchao's reference quantizers."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.quant import codecs as C

mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
nv = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")

SPEC_E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]  # OCP MX v1.0, table of FP4 E2M1 values


def _weights(m: int = 16, n: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(m, n, generator=g) * torch.logspace(-4, 1, m)[:, None]
    w[0, :32] = 0.0  # an all-zero block
    w[1, 5] = 1e6  # one huge value
    return w


def test_e2m1_bit_fields_decode_to_the_format_table():
    codes = torch.arange(16, dtype=torch.uint8)
    decoded = C.decode_e2m1(codes)
    assert decoded[:8].tolist() == SPEC_E2M1 and decoded[8:].tolist() == [-v for v in SPEC_E2M1]
    assert torch.signbit(decoded[8])  # code 0b1000 is -0
    assert torch.equal(decoded, kernels.f4_unpacked_to_f32(codes))


def test_every_e2m1_code_encodes_its_own_value_back():
    codes = torch.arange(16, dtype=torch.uint8)
    assert torch.equal(C.encode_e2m1(C.decode_e2m1(codes)), codes)


def test_e2m1_rounds_to_nearest_ties_to_even_and_saturates_like_torchao():
    values = torch.cat([torch.linspace(-8, 8, 4001), torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 1e9])])
    values = torch.cat([values, -values])
    assert torch.equal(C.encode_e2m1(values), kernels.f32_to_f4_unpacked(values))
    assert C.decode_e2m1(C.encode_e2m1(torch.tensor([0.25, 0.75, 2.5, 5.0, 7.0]))).tolist() == [0.0, 1.0, 2.0, 4.0, 6.0]


def test_nibbles_pack_low_first_like_torchao_and_unpack_back():
    codes = torch.randint(0, 16, (4, 64), dtype=torch.uint8)
    packed = C.pack_nibbles(codes)
    assert torch.equal(packed, kernels.pack_uint4(codes)) and torch.equal(packed[0, 0] & 0xF, codes[0, 0])
    assert torch.equal(C.unpack_nibbles(packed), codes)


def test_e4m3_and_e8m0_bytes_decode_by_their_bit_definitions():
    bits = torch.arange(256, dtype=torch.int64)
    s, e, m = bits >> 7, (bits >> 3) & 0xF, (bits & 7).double()
    value = torch.where(e == 0, m / 8 * 2.0 ** -6, (1 + m / 8) * torch.pow(2.0, (e - 7).double()))
    value = torch.where(s == 1, -value, value)
    decoded = C.decode_e4m3(bits.to(torch.uint8)).double()
    nan = (e == 15) & (m == 7)
    assert torch.isnan(decoded[nan]).all() and torch.equal(decoded[~nan], value[~nan])
    e8 = C.decode_e8m0(torch.arange(255, dtype=torch.uint8)).double()
    assert torch.equal(e8, torch.pow(2.0, torch.arange(255).double() - 127))
    assert torch.isnan(C.decode_e8m0(torch.tensor([255], dtype=torch.uint8))).all()


@pytest.mark.parametrize("exponent", [-20, -7, -1, 0, 3, 10])
def test_every_mxfp4_grid_value_round_trips_exactly(exponent):
    """Blocks of 2^e times E2M1 values, each with a 6·2^e or 4·2^e (so the shared scale is 2^e): every
    representable value encodes to itself and decodes back, and the scale byte is e + 127."""
    grid = torch.tensor(SPEC_E2M1 + [-v for v in SPEC_E2M1[1:]])  # 15 distinct values
    row = torch.cat([grid, grid.flip(0), torch.tensor([6.0, 4.0])])  # 32 values, one block
    weight = torch.stack([row, row.roll(3)]).repeat(1, 2) * 2.0 ** exponent  # [2, 64]
    stored = C.quantize(weight, "mxfp4")
    assert torch.equal(C.dequantize(stored, "mxfp4"), weight)
    assert (stored["scale"].to(torch.int32) == exponent + 127).all()
    assert torch.equal(C.decode_e2m1(C.unpack_nibbles(stored["codes"])) * 2.0 ** exponent, weight)


def test_every_nvfp4_grid_value_round_trips_exactly():
    """E2M1 value x E4M3 block scale x a power-of-two tensor scale t, with one block at 6·448·t (so t is the
    tensor scale): quantize -> dequantize returns every value and the block scale bytes."""
    t = 2.0 ** -8
    e4m3 = C.decode_e4m3(torch.arange(8, 127, dtype=torch.uint8))  # normal positive E4M3 values up to 448
    grid = torch.tensor(SPEC_E2M1 + [-v for v in SPEC_E2M1[1:]] + [6.0])  # 16 values, each block has a 6
    weight = (grid[None, :] * e4m3[:, None] * t).reshape(1, -1)  # [1, 16 * 119]
    stored = C.quantize(weight, "nvfp4")
    assert float(stored["tensor_scale"]) == t
    assert torch.equal(C.decode_e4m3(stored["scale"]).flatten(), e4m3)
    assert torch.equal(C.dequantize(stored, "nvfp4"), weight)


def test_mxfp4_codes_and_scales_equal_torchao_to_mx_bit_for_bit():
    weight = _weights()
    stored = C.quantize(weight, "mxfp4")
    scale, data = mx.to_mx(weight, torch.float4_e2m1fn_x2, 32)
    assert torch.equal(stored["codes"], data.view(torch.uint8))
    assert torch.equal(stored["scale"], scale.view(torch.uint8))
    tensor = mx.MXTensor.to_mx(weight, torch.float4_e2m1fn_x2, 32)
    assert torch.equal(C.dequantize(stored, "mxfp4"), tensor.dequantize(torch.float32))


def test_nvfp4_codes_and_scales_equal_torchao_nvfp4_quantize_bit_for_bit():
    weight = _weights(seed=1)
    weight[1, 5] = 3.0
    stored = C.quantize(weight, "nvfp4")
    tensor_scale = nv.per_tensor_amax_to_scale(weight.abs().max())
    block_scale, data = nv.nvfp4_quantize(weight, 16, tensor_scale)
    assert torch.equal(stored["codes"], data.view(torch.uint8))
    assert torch.equal(stored["scale"], block_scale.view(torch.uint8))
    assert torch.equal(stored["tensor_scale"], tensor_scale.reshape(1))
    tensor = nv.NVFP4Tensor.to_nvfp4(weight, per_tensor_scale=tensor_scale)
    assert torch.equal(C.dequantize(stored, "nvfp4"), tensor.dequantize(torch.float32))


def test_int8_per_row_round_trips_its_grid_and_rounds_within_half_a_step():
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(-127, 128, (8, 40), generator=g)
    codes[:, 0] = 127  # every row reaches the top code: its scale is the row's
    scale = torch.logspace(-3, 1, 8)
    weight = codes.float() * scale[:, None]
    stored = C.quantize(weight, "int8")
    assert torch.equal(stored["codes"], codes.to(torch.int8)) and torch.allclose(stored["scale"], scale, rtol=1e-6)
    assert torch.equal(C.dequantize(stored, "int8"), codes.float() * stored["scale"][:, None])
    noisy = weight + 0.3 * scale[:, None] * torch.randn(8, 40, generator=g)
    noisy_stored = C.quantize(noisy, "int8")
    assert (C.dequantize(noisy_stored, "int8") - noisy).abs().le(noisy_stored["scale"][:, None] / 2 + 1e-7).all()
    assert stored["codes"].dtype == torch.int8 and stored["scale"].dtype == torch.float32


@pytest.mark.parametrize("fmt", C.FORMATS)
def test_level_indices_and_codes_convert_both_ways(fmt):
    stored = C.quantize(_weights(seed=3), fmt, min_amax=0.1)
    index = C.level_index(stored, fmt)
    assert torch.equal(C.LEVELS[fmt][index] * C.element_scale(stored, fmt, tuple(index.shape)),
                       C.dequantize(stored, fmt))
    again = dict(stored, codes=C.level_codes(index, fmt))
    assert torch.equal(C.dequantize(again, fmt), C.dequantize(stored, fmt))


def test_min_amax_gives_a_zero_block_a_movable_grid():
    weight = torch.eye(4, 64)
    plain, floored = C.quantize(weight, "mxfp4"), C.quantize(weight, "mxfp4", min_amax=0.1)
    assert torch.equal(C.dequantize(plain, "mxfp4"), weight) and torch.equal(C.dequantize(floored, "mxfp4"), weight)
    assert int(plain["scale"][0, 1]) == 0 and int(floored["scale"][0, 1]) == 127 - 6  # 2^-6: values up to 0.094


def test_an_unknown_format_or_a_bad_shape_is_refused():
    with pytest.raises(ValueError, match="unknown weight format"):
        C.quantize(torch.zeros(2, 32), "fp8")
    with pytest.raises(ValueError, match="multiple of the block size 32"):
        C.quantize(torch.zeros(2, 24), "mxfp4")
