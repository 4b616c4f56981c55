"""Quantized outputs in training: ES fitness is the objective of exactly the served codes, every method's
validation and test go through the quantized index, and the surrogate methods train and resume exactly."""

from __future__ import annotations

import pytest
import torch
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.es.perturb import materialize
from eggroll_ndcg.quant.outputs import make_codec
from eggroll_ndcg.quant.serving import quantized_run
from eggroll_ndcg.metrics.trec import evaluate
from eggroll_ndcg.train.batches import batch_rows, gather_batch
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.trainer import Trainer, make_head, make_method


@pytest.fixture()
def config(synthetic_folder, tmp_path) -> TrainConfig:
    return TrainConfig(task=str(synthetic_folder), encoder="minilm", pool_size=32, batch_queries=8, num_steps=6,
                       eval_every=3, es={"population_size": 16, "sigma": 0.05}, learning_rate=0.05, quantize="binary",
                       output_dir=str(tmp_path / "run"))


@pytest.fixture()
def data(config, synthetic_folder):
    return prepare_data(config, encoded=synthetic_encoded(synthetic_folder), progress=False)


@pytest.mark.parametrize("kind", ["binary", "binary_asym", "int8"])
def test_es_fitness_is_the_objective_of_quantized_materialized_members(config, data, kind):
    config = config.replace(quantize=kind, **{"es.sigma": 0.3})
    head = make_head(config, data.doc_emb)
    with torch.no_grad():
        head.linear.weight.add_(0.1 * torch.randn(head.linear.weight.shape, generator=torch.Generator().manual_seed(0)))
    method = make_method(config, head)
    pools = data.train_pools
    query_emb = data.query_emb[torch.tensor([data.query_row[q] for q in pools.query_ids])]
    batch = gather_batch(pools, batch_rows(torch.arange(len(pools.query_ids)), 8, seed=0, step=0), query_emb,
                         data.doc_emb)
    chunk = method.engine.ask().all()
    scores = method.population_scores(chunk, batch)
    A, B = chunk.factors("linear.weight")
    codec = make_codec(kind, head(batch.doc_emb[batch.mask]), normalize=True)
    expected = torch.stack([codec.pool_scores(batch.query_emb @ w.T, batch.doc_emb @ w.T)
                            for w in materialize(head.weight, A, B, chunk.sigma)])
    if codec.integer_scores:
        assert torch.equal(scores, expected)
    else:
        torch.testing.assert_close(scores, expected)
    fitness = method.objective(scores, batch)
    assert torch.equal(fitness, method.objective(expected, batch)) and fitness.std() > 0


def test_mlp_head_population_is_coded_from_its_member_outputs(config, data):
    config = config.replace(head="mlp", head_hidden_size=8, **{"es.sigma": 0.5})
    head = make_head(config, data.doc_emb)
    method = make_method(config, head)
    pools = data.train_pools
    batch = gather_batch(pools, torch.arange(4), data.query_emb[torch.tensor(
        [data.query_row[q] for q in pools.query_ids])], data.doc_emb)
    chunk = method.engine.ask().all()
    scores = method.population_scores(chunk, batch)
    assert torch.equal(scores, scores.round()) and scores.abs().max() <= head.up.in_features


@pytest.mark.parametrize("method", ["eggroll", "infonce", "ste", "tanh_relax"])
def test_test_metrics_are_those_of_the_quantized_index(config, data, method):
    config = config.replace(method=method, learning_rate=0.05 if method == "eggroll" else 0.01)
    trainer = Trainer(config, data=data, progress=False)
    metrics = trainer.train()
    test_ids = data.queries("test")
    run = quantized_run("binary", trainer.head, data, test_ids, normalize=True, method="exact")
    exact = evaluate(run, {q: data.collection.judgments[q] for q in test_ids}, measures=("ndcg@10",),
                     missing_as_zero=True)
    assert metrics["test/ndcg@10"] == pytest.approx(exact.mean["ndcg@10"], abs=1e-12)


def test_surrogate_resume_is_bit_identical(config, data, tmp_path):
    config = config.replace(method="ste", learning_rate=0.01)
    straight = Trainer(config.replace(output_dir=str(tmp_path / "a")), data=data, progress=False)
    straight.train()
    killed = Trainer(config.replace(output_dir=str(tmp_path / "b")), data=data, progress=False)
    killed.train(stop_after=4)
    resumed = Trainer(config.replace(output_dir=str(tmp_path / "b")), data=data, progress=False)
    resumed.train()
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name


def test_surrogates_refuse_float_outputs_and_tanh_refuses_int8(config):
    with pytest.raises(ConfigError, match="needs quantized outputs"):
        config.replace(method="ste", quantize="none").validate()
    with pytest.raises(ConfigError, match="use ste for int8"):
        config.replace(method="tanh_relax", quantize="int8").validate()
    with pytest.raises(ConfigError, match="config field 'quantize'"):
        config.replace(quantize="int4").validate()


@pytest.mark.parametrize("name", ["scifact-binary", "squad-binary", "scifact-int8", "trec-dl19-binary"])
def test_packaged_quantized_configs_load_and_validate_every_method(name):
    from eggroll_ndcg.cli.train_cmd import config_path
    from eggroll_ndcg.experiments.compare import CompareConfig

    compare = CompareConfig.from_yaml(config_path(name))
    assert compare.base.quantize == name.rsplit("-", 1)[1]
    for method in compare.methods:
        assert TrainConfig.from_yaml(config_path(name), method=method).validate().quantize == compare.base.quantize
