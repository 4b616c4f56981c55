"""Quantized output codes: sentence-transformers' definitions, and population scores equal to those of
explicitly quantized materialized member heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eggroll_ndcg.es.perturb import materialize
from eggroll_ndcg.quant.outputs import (OutputCodec, binary_codes, make_codec, pack_bits, population_scores,
                                         unpack_bits)


def _st_quantize(x, precision, calibration=None):
    try:
        from sentence_transformers.util.quantization import quantize_embeddings
    except ImportError:  # older sentence-transformers
        from sentence_transformers.quantization import quantize_embeddings
    return quantize_embeddings(x, precision=precision, calibration_embeddings=calibration)


def test_int8_codes_match_sentence_transformers_quantize_embeddings():
    g = torch.Generator().manual_seed(0)
    calibration = torch.randn(300, 48, generator=g)
    x = torch.randn(50, 48, generator=g) * 1.3  # some values outside the calibration range: clipped
    codec = make_codec("int8", calibration, normalize=False)
    ours = codec.doc_codes(x).numpy().astype(np.int64)
    theirs = _st_quantize(x.numpy(), "int8", calibration.numpy()).astype(np.int64)
    assert np.array_equal(ours, theirs)
    assert ours.min() == -128 and ours.max() == 127


def test_binary_packing_matches_sentence_transformers_ubinary_and_round_trips():
    x = torch.randn(20, 40, generator=torch.Generator().manual_seed(1))
    x[0, :5] = 0.0  # zero is a 0 bit (x > 0 is the rule)
    packed = pack_bits(x)
    assert np.array_equal(packed, _st_quantize(x.numpy(), "ubinary"))
    assert torch.equal(unpack_bits(packed, 40), binary_codes(x).float())


def test_binary_score_is_m_minus_twice_hamming():
    g = torch.Generator().manual_seed(2)
    q, d = torch.randn(3, 64, generator=g), torch.randn(3, 7, 64, generator=g)
    scores = OutputCodec("binary").pool_scores(q, d)
    hamming = ((q[:, None, :] > 0) != (d > 0)).sum(-1)
    assert torch.equal(scores, (64 - 2 * hamming).to(scores.dtype))


@pytest.mark.parametrize("kind", ["binary", "binary_asym", "int8"])
@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("normalize", [True, False])
def test_population_scores_equal_quantized_materialized_members(kind, rank, normalize):
    """Member scores from the shared projections Wh ± cA(Bᵀh) equal codec scores of h @ W'ᵀ with W' formed."""
    g = torch.Generator().manual_seed(3 + rank)
    n, m, J, Q, P = 24, 16, 5, 4, 9
    weight = torch.randn(m, n, generator=g, dtype=torch.float64) / n ** 0.5
    h_q = F.normalize(torch.randn(Q, n, generator=g, dtype=torch.float64), dim=-1)
    h_d = F.normalize(torch.randn(Q, P, n, generator=g, dtype=torch.float64), dim=-1)
    A = torch.randn(J, m, rank, generator=g, dtype=torch.float64)
    B = torch.randn(J, n, rank, generator=g, dtype=torch.float64)
    sigma = 0.3  # large enough that many bits flip
    calibration = torch.randn(200, n, generator=g, dtype=torch.float64) @ weight.T
    codec = make_codec(kind, calibration, normalize=normalize)
    if codec.ranges is not None:
        codec = OutputCodec(kind, normalize, codec.ranges.double())
    got = population_scores(codec, weight, h_q, h_d, A, B, sigma)
    members = materialize(weight, A, B, sigma)  # [2J, m, n]
    expected = torch.stack([codec.pool_scores(h_q @ w.T, h_d @ w.T) for w in members])
    assert got.shape == (2 * J, Q, P)
    if codec.integer_scores:
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # the perturbation really changes codes (the test is not vacuous)
    base = codec.pool_scores(h_q @ weight.T, h_d @ weight.T)
    assert not torch.equal(got[0], base)


def test_population_scores_blocking_does_not_change_scores(monkeypatch):
    import eggroll_ndcg.quant.outputs as outputs

    g = torch.Generator().manual_seed(9)
    weight, h_q, h_d = torch.randn(8, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    A, B = torch.randn(6, 8, 1, generator=g), torch.randn(6, 8, 1, generator=g)
    whole = population_scores(OutputCodec("binary"), weight, h_q, h_d, A, B, 0.2)
    monkeypatch.setattr(outputs, "BLOCK_ELEMENTS", 1)
    assert torch.equal(population_scores(OutputCodec("binary"), weight, h_q, h_d, A, B, 0.2), whole)


def test_codec_settings_round_trip_and_unknown_kind_is_refused():
    codec = make_codec("int8", torch.randn(30, 6), normalize=True)
    back = OutputCodec.from_settings(codec.settings())
    x = torch.randn(4, 6)
    assert torch.equal(back.doc_codes(x), codec.doc_codes(x))
    with pytest.raises(ValueError, match="quantize must be one of"):
        OutputCodec("int4")
