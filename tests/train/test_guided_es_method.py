"""--method guided_es (and es_targets) through the shared trainer: alpha = 1 is EGGROLL, resume, cosine log."""

from __future__ import annotations

import json

import pytest
import torch

from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.es_targets_method import fitness_targets
from eggroll_ndcg.train.trainer import Trainer


@pytest.fixture()
def small_config(synthetic_folder, tmp_path) -> TrainConfig:
    """conftest's small_config in dotted spelling (a flat `sigma` is ambiguous once two sections have one)."""
    return TrainConfig(task=str(synthetic_folder), encoder="minilm", pool_size=32, batch_queries=16, num_steps=12,
                       eval_every=4, learning_rate=0.05, output_dir=str(tmp_path / "run"),
                       **{"es.population_size": 32, "es.sigma": 0.05})


def _steps(run_dir):
    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "step"]


def _train(config, data):
    trainer = Trainer(config, data=data, progress=False)
    trainer.train()
    return trainer


def test_guided_es_with_alpha_one_trains_exactly_the_eggroll_weights(small_config, small_data, tmp_path):
    plain = _train(small_config.replace(method="eggroll", output_dir=str(tmp_path / "plain")), small_data)
    guided = _train(small_config.replace(method="guided_es", output_dir=str(tmp_path / "guided"),
                                         **{"guided.alpha": 1.0, "guided.k": 2}), small_data)
    for name, tensor in plain.head.state_dict().items():
        assert torch.equal(tensor, guided.head.state_dict()[name]), name
    assert (tmp_path / "plain" / "best_head.safetensors").read_bytes() == (
        tmp_path / "guided" / "best_head.safetensors").read_bytes()
    assert all(-1 <= r["guided/cos_surrogate"] <= 1 for r in _steps(tmp_path / "guided"))


@pytest.mark.parametrize("loss", ["listnet", "lambdaloss"])
def test_a_resumed_guided_es_run_is_bit_identical(loss, small_config, small_data, tmp_path):
    changes = {"method": "guided_es", "guided.alpha": 0.5, "guided.k": 2, "guided.loss": loss}
    straight = _train(small_config.replace(output_dir=str(tmp_path / "a"), **changes), small_data)
    config = small_config.replace(output_dir=str(tmp_path / "b"), **changes)
    Trainer(config, data=small_data, progress=False).train(stop_after=7)
    resumed = _train(config, small_data)
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name
    assert [r["guided/cos_surrogate"] for r in _steps(tmp_path / "a")] == [
        r["guided/cos_surrogate"] for r in _steps(tmp_path / "b")]


def test_guidance_raises_the_cosine_between_the_es_estimate_and_the_surrogate(small_config, small_data, tmp_path):
    """Blind EGGROLL search on 576 weights with 32 members has cosine about sqrt(N/D) ~ 0.2 with any fixed
    direction; putting 90% of the noise energy in the surrogate's own direction (k = 1) must raise it."""
    cosines = {}
    for alpha in (1.0, 0.1):
        config = small_config.replace(method="guided_es", output_dir=str(tmp_path / str(alpha)),
                                      **{"guided.alpha": alpha, "guided.k": 1})
        _train(config, small_data)
        cosines[alpha] = sum(r["guided/cos_surrogate"] for r in _steps(tmp_path / str(alpha))) / 12
    assert cosines[0.1] > 0.5 > cosines[1.0]


def test_guided_es_refuses_a_head_without_the_closed_form(small_config):
    with pytest.raises(ConfigError, match="closed form"):
        small_config.replace(method="guided_es", head="mlp").validate()


def test_an_unknown_surrogate_loss_is_refused_naming_the_field(small_config):
    with pytest.raises(ConfigError, match="guided.loss"):
        small_config.replace(method="guided_es", **{"guided.loss": "hinge"}).validate()


# ---------------------------------------------------------------- es_targets: sample with ES, step by gradient
def test_fitness_targets_follow_each_querys_best_member_at_a_low_weight_temperature():
    scores = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 0.0, 5.0]],     # member 0
                           [[0.0, 3.0, 0.0], [5.0, 0.0, 0.0]]])    # member 1
    fitness = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # member 0 is best on query 0, member 1 on query 1
    mask = torch.tensor([[True, True, True], [True, True, False]])
    t = fitness_targets(scores, fitness, mask, temperature=1.0, weight_temperature=1e-3)
    assert torch.allclose(t[0], torch.softmax(scores[0, 0], -1), atol=1e-6)
    assert torch.allclose(t[1, :2], torch.softmax(scores[1, 1, :2], -1), atol=1e-6) and t[1, 2] == 0
    flat = fitness_targets(scores, torch.zeros(2, 2), mask, temperature=1.0, weight_temperature=1e-3)
    assert torch.allclose(flat[0], (torch.softmax(scores[0, 0], -1) + torch.softmax(scores[1, 0], -1)) / 2)


def test_es_targets_learns_and_resumes_bit_identically(small_config, small_data, tmp_path):
    changes = {"method": "es_targets", "learning_rate": 0.01, "num_steps": 12}
    straight = _train(small_config.replace(output_dir=str(tmp_path / "a"), **changes), small_data)
    config = small_config.replace(output_dir=str(tmp_path / "b"), **changes)
    Trainer(config, data=small_data, progress=False).train(stop_after=7)
    resumed = _train(config, small_data)
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name
    steps = _steps(tmp_path / "a")
    assert not torch.equal(straight.head.state_dict()["linear.weight"], torch.eye(24))
    assert sum(r["train/batch_ndcg"] for r in steps[-4:]) > sum(r["train/batch_ndcg"] for r in steps[:4])
