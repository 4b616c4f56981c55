"""Quantized-weight heads: the stored state is codes + scales, and every score is the score of the
explicitly dequantized float weight."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

import eggroll_ndcg.train  # noqa: F401  (registers the quantized heads)
from eggroll_ndcg.models.heads import LinearHead, build_head, score_pool
from eggroll_ndcg.quant.codecs import FORMATS, dequantize, quantize
from eggroll_ndcg.quant.weights import QuantizedLinearHead, float32_state_bytes, quantize_head


def _weight(m: int = 64, n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.eye(m, n) + 0.05 * torch.randn(m, n, generator=g)


def _inputs(n: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(5, n, generator=g), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(5, 7, n, generator=g), dim=-1)
    return q, d


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_head_scores_equal_those_of_the_explicitly_dequantized_float_weight(fmt, normalize):
    weight = _weight()
    head = QuantizedLinearHead(64, 64, fmt, weight=weight, min_amax=0.0)
    explicit = dequantize(quantize(weight, fmt), fmt)  # the codec applied by hand, outside the head
    assert torch.equal(head.weight, explicit)
    assert not torch.equal(explicit, weight)  # the quantization did change something
    float_head = LinearHead(64, 64)
    with torch.no_grad():
        float_head.linear.weight.copy_(explicit)
    q, d = _inputs()
    expected = score_pool(float_head, q, d, normalize=normalize)
    assert torch.allclose(score_pool(head, q, d, normalize=normalize), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_stored_state_is_codes_and_scales_with_no_float_parameter(fmt):
    head = build_head(f"linear-{fmt}", torch.randn(10, 384))
    assert list(head.parameters()) == []
    state = head.state_dict()
    expected = {"int8": {"codes": torch.int8, "scale": torch.float32},
                "mxfp4": {"codes": torch.uint8, "scale": torch.uint8},
                "nvfp4": {"codes": torch.uint8, "scale": torch.uint8, "tensor_scale": torch.float32}}[fmt]
    assert {k: v.dtype for k, v in state.items()} == expected
    per_weight = {"int8": 1 + 4 / 384, "mxfp4": 0.5 + 1 / 32, "nvfp4": 0.5 + 1 / 16}[fmt]
    assert head.state_bytes() == round(384 * 384 * per_weight) + (4 if fmt == "nvfp4" else 0)
    assert head.state_bytes() < float32_state_bytes((384, 384), "sgd") / 3.7


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_registered_quantized_head_starts_exactly_at_the_identity(fmt):
    head = build_head(f"linear-{fmt}", torch.randn(10, 64))
    assert torch.equal(head.weight, torch.eye(64))
    h = torch.randn(3, 64)
    assert torch.equal(head(h), h @ torch.eye(64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_post_hoc_quantization_of_a_float_head_is_the_codec_of_its_weight(fmt):
    float_head = LinearHead(64, 64)
    with torch.no_grad():
        float_head.linear.weight.copy_(_weight(seed=4))
    quantized = quantize_head(float_head, fmt)
    assert torch.equal(quantized.weight, dequantize(quantize(float_head.weight.detach(), fmt), fmt))
    with pytest.raises(ValueError, match="without bias"):
        quantize_head(LinearHead(64, 64, bias=True), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_quantized_head_survives_a_safetensors_round_trip(fmt):
    head = QuantizedLinearHead(64, 64, fmt, weight=_weight(seed=5))
    restored = QuantizedLinearHead(64, 64, fmt)
    restored.load_state_dict(load(save(head.state_dict())))
    assert torch.equal(restored.weight, head.weight)


def test_levels_move_on_the_grid_and_keep_the_scales():
    head = QuantizedLinearHead(64, 64, "mxfp4", weight=_weight(seed=6))
    scales = head.scale.clone()
    index = head.levels()
    head.set_levels(index + 1)
    assert torch.equal(head.scale, scales)
    assert torch.equal(head.levels(), (index + 1).clamp_max(14))


def test_a_float_method_on_a_quantized_weight_head_is_a_one_line_config_error():
    from eggroll_ndcg.models.heads import HeadSettings, build_head
    from eggroll_ndcg.train.config import ConfigError, TrainConfig
    from eggroll_ndcg.train.trainer import make_method

    head = build_head("linear-mxfp4", torch.randn(40, 32), HeadSettings())
    with pytest.raises(ConfigError, match="stores quantized codes only; use one of quantized_es, qat, genetic"):
        make_method(TrainConfig(method="eggroll", head="linear-mxfp4"), head)
    assert make_method(TrainConfig(method="quantized_es", head="linear-mxfp4"), head) is not None


def test_weights_is_the_short_form_of_the_quantized_linear_heads_for_any_config():
    from eggroll_ndcg.train.config import WEIGHT_FORMATS, ConfigError, TrainConfig

    assert WEIGHT_FORMATS == ("float", *FORMATS)
    for fmt in FORMATS:
        config = TrainConfig(method="quantized_es", head="linear").replace(weights=fmt).validate()
        assert (config.head, config.weights) == (f"linear-{fmt}", fmt)
        assert TrainConfig(head=f"linear-{fmt}").weights == fmt  # old configs name the head only
        assert TrainConfig.from_dict(config.to_dict()).result_fields() == config.result_fields()
    assert TrainConfig().weights == "float" and TrainConfig().head == "linear"
    with pytest.raises(ConfigError, match="'weights': weights=int8 stores a linear head"):
        TrainConfig(head="mlp", weights="int8").validate()
    with pytest.raises(ConfigError, match="'weights': expected one of float, int8, mxfp4, nvfp4"):
        TrainConfig(weights="fp8").validate()


def test_a_new_head_re_derives_weights_and_a_conflict_is_named():
    from eggroll_ndcg.train.config import ConfigError, TrainConfig

    int8 = TrainConfig(method="qat", weights="int8")
    assert int8.replace(head="linear-mxfp4").validate().weights == "mxfp4"
    assert int8.replace(head="linear").weights == "float"
    with pytest.raises(ConfigError, match="'weights'"):
        int8.replace(weights="nvfp4").validate()  # head linear-int8 kept, weights nvfp4 asked: refused
