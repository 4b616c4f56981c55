"""Native ES on stored quantized weights (`quantized_es`) and the QAT baseline (`qat`): exact population
scores, update rules that stay on the grid, and bit-identical resumes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.es.perturb import materialize
from eggroll_ndcg.quant.codecs import LEVELS, quantize
from eggroll_ndcg.quant.weights import QuantizedLinearHead
from eggroll_ndcg.train import Trainer
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.objectives import parse_objective
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.qat_method import QATMethod
from eggroll_ndcg.train.quantized_weights_method import (
    QuantizedWeightsES, rounding_uniforms, stochastic_round_levels, z_step_levels,
)
from eggroll_ndcg.train.trainer import make_head

DIM = 32  # the synthetic collection's 24 dimensions, zero-padded to one MXFP4 block


@pytest.fixture()
def config(synthetic_folder, tmp_path) -> TrainConfig:
    return TrainConfig(
        task=str(synthetic_folder), encoder="minilm", method="quantized_es", head="linear-int8", pool_size=32,
        batch_queries=16, num_steps=8, eval_every=4, learning_rate=0.5, output_dir=str(tmp_path / "run"),
        **{"es.population_size": 32, "es.sigma": 0.05},
    )


@pytest.fixture()
def data(config, synthetic_folder):
    encoded = synthetic_encoded(synthetic_folder)
    pad = lambda x: torch.nn.functional.pad(x, (0, DIM - x.shape[-1]))  # noqa: E731
    encoded = dataclasses.replace(encoded, query_emb=pad(encoded.query_emb), doc_emb=pad(encoded.doc_emb))
    return prepare_data(config, encoded=encoded, progress=False)


def _batch(data, config):
    from eggroll_ndcg.train.batches import gather_batch

    pools = data.train_pools
    rows = torch.tensor([data.query_row[q] for q in pools.query_ids])
    return gather_batch(pools, torch.arange(8), data.query_emb[rows], data.doc_emb)


def _on_grid(head: QuantizedLinearHead) -> bool:
    """Re-encoding the dequantized weight with the head's own scales gives back exactly the same weight."""
    index = head.levels()
    again = torch.round(head.weight / head.element_scale())
    return bool(torch.equal(LEVELS[head.fmt][index] * head.element_scale(), head.weight)) and (
        head.fmt != "int8" or bool(torch.equal(again, head.codes.float())))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("fmt", ["int8", "mxfp4", "nvfp4"])
def test_population_scores_equal_those_of_materialized_quantized_members(config, data, fmt, normalize):
    config = config.replace(head=f"linear-{fmt}", normalize=normalize)
    head = make_head(config, data.doc_emb)
    head.set_levels(head.levels() + torch.randint(-2, 3, head.shape, generator=torch.Generator().manual_seed(0)))
    method = QuantizedWeightsES(head, config, parse_objective("ndcg@10"))
    batch = _batch(data, config)
    population = method.population(head.weight)
    chunk = population.all()
    A, B = chunk.factors("weight")
    members = materialize(head.weight, A, B, chunk.sigma)  # [N, m, n]: the explicit member weights
    q = torch.einsum("bn,kmn->kbm", batch.query_emb, members)
    d = torch.einsum("bpn,kmn->kbpm", batch.doc_emb, members)
    if normalize:
        q, d = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(d, dim=-1)
    expected = method.objective(torch.einsum("kbpm,kbm->kbp", d, q), batch).double()
    assert torch.allclose(method.fitness(population, batch), expected, atol=1e-6)


def test_stochastic_rounding_stays_on_the_grid_and_is_unbiased():
    levels = LEVELS["mxfp4"]
    index = torch.full((2000, 8), 9)  # level 0.5
    delta = torch.tensor([0.0, 0.1, 0.25, 0.5, -0.3, -0.75, 20.0, -20.0]).expand(2000, 8)
    new = stochastic_round_levels(index, delta, levels, rounding_uniforms(0, 3, (2000, 8), torch.device("cpu")))
    assert new.min() >= 0 and new.max() <= levels.numel() - 1
    target = (levels[index] + delta).clamp(-6, 6)
    mean = levels[new].mean(dim=0)
    assert torch.allclose(mean, target[0], atol=0.03)  # E[W'] = W + step, inside the grid
    assert (new[:, 0] == 9).all() and (new[:, 6] == 14).all() and (new[:, 7] == 0).all()  # no step, saturation


def test_z_step_moves_one_level_exactly_where_the_z_score_passes_the_threshold():
    grad = torch.tensor([[0.0, 1.0, -1.0, 10.0], [-10.0, 0.5, 0.0, 0.0]])
    index = torch.tensor([[5, 5, 5, 14], [0, 7, 7, 7]])
    new = z_step_levels(index, grad, 1.0, LEVELS["mxfp4"])  # rms(g) = 5.03: only the ±10 entries pass
    assert new.tolist() == [[5, 5, 5, 14], [0, 7, 7, 7]]  # ... and both are at the grid's ends
    new = z_step_levels(index, grad, 0.05, LEVELS["mxfp4"])
    assert new.tolist() == [[5, 6, 4, 14], [0, 8, 7, 7]]


@pytest.mark.parametrize("rule", ["stochastic_rounding", "z_step", "momentum_rounding"])
@pytest.mark.parametrize("fmt", ["int8", "mxfp4", "nvfp4"])
def test_training_moves_only_the_codes_and_keeps_them_on_the_grid(config, data, fmt, rule):
    config = config.replace(head=f"linear-{fmt}", output_dir=None, **{"weight_es.rule": rule,
                                                                       "weight_es.z_threshold": 1.5})
    trainer = Trainer(config, data=data, progress=False)
    trainer.train(stop_after=4)
    head = trainer.head
    start = quantize(torch.eye(DIM), fmt, min_amax=head.min_amax)
    assert torch.equal(head.scale, start["scale"])  # the scales never change
    assert not torch.equal(head.codes, start["codes"])  # the codes did
    assert _on_grid(head)


@pytest.mark.parametrize("method, rule", [("quantized_es", "stochastic_rounding"), ("quantized_es", "z_step"),
                                          ("quantized_es", "momentum_rounding"), ("qat", "stochastic_rounding")])
def test_a_resumed_run_ends_with_bit_identical_codes(config, data, tmp_path, method, rule):
    config = config.replace(method=method, head="linear-mxfp4", learning_rate=0.5 if method != "qat" else 0.01,
                            **{"weight_es.rule": rule})
    straight = Trainer(config.replace(output_dir=str(tmp_path / "a")), data=data, progress=False)
    straight_metrics = straight.train()
    killed = Trainer(config.replace(output_dir=str(tmp_path / "b")), data=data, progress=False)
    assert killed.train(stop_after=6) == {"stopped_at": 6}  # checkpoint at step 4; steps 5-6 are lost
    resumed = Trainer(config.replace(output_dir=str(tmp_path / "b")), data=data, progress=False)
    metrics = resumed.train()
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name
    assert metrics["test/ndcg@10"] == straight_metrics["test/ndcg@10"]
    best = "best_head.safetensors"
    assert (tmp_path / "a" / best).read_bytes() == (tmp_path / "b" / best).read_bytes()


def test_the_training_state_is_logged_next_to_a_float32_run(config, data):
    head = make_head(config.replace(head="linear-mxfp4"), data.doc_emb)
    method = QuantizedWeightsES(head, config.replace(optimizer="clipup"), parse_objective("ndcg@10"))
    record = method.step(_batch(data, config), 0)
    assert record["memory/state_bytes"] == DIM * DIM / 2 + DIM  # packed E2M1 + one E8M0 byte per block
    assert record["memory/float32_state_bytes"] == 2 * 4 * DIM * DIM  # W and ClipUp's velocity
    momentum = config.replace(**{"weight_es.rule": "momentum_rounding"})
    method = QuantizedWeightsES(head, momentum, parse_objective("ndcg@10"))
    assert method.step(_batch(data, config), 0)["memory/state_bytes"] == DIM * DIM / 2 + DIM + 2 * DIM * DIM


def test_qat_keeps_a_float_latent_and_the_head_holds_its_quantization(config, data):
    config = config.replace(method="qat", head="linear-mxfp4", learning_rate=0.01)
    head = make_head(config, data.doc_emb)
    method = QATMethod(head, config, parse_objective("ndcg@10"))
    method.step(_batch(data, config), 0)
    latent = method.ste.latent.detach()
    assert not torch.equal(latent, torch.eye(DIM))  # the latent moved
    assert torch.equal(head.weight, QuantizedLinearHead(DIM, DIM, "mxfp4", weight=latent).weight)
    h = torch.randn(3, DIM, requires_grad=False)
    method.ste.latent.grad = None
    method.ste(h).sum().backward()  # straight through: d/dW_f of sum(W_q h) is the same as for W_f
    assert torch.allclose(method.ste.latent.grad, torch.ones(DIM, 1) * h.sum(0)[None, :])


@pytest.mark.parametrize("method", ["quantized_es", "qat"])
def test_a_float_head_is_refused_with_the_field_named(config, method):
    with pytest.raises(ConfigError, match="needs a quantized-weight head"):
        config.replace(method=method, head="linear").validate()
    with pytest.raises(ConfigError, match="weight_es.rule"):
        config.replace(**{"weight_es.rule": "sign"}).validate()
