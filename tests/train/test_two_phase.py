"""es_then_gradient and gradient_then_es: one run, one log, one checkpoint, hand-off by steps or validation."""

from __future__ import annotations

import json

import pytest
import torch

from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.trainer import Trainer

ORDERS = ("es_then_gradient", "gradient_then_es")


@pytest.fixture()
def small_config(synthetic_folder, tmp_path) -> TrainConfig:
    """conftest's small_config in dotted spelling (a flat `sigma` is ambiguous once two sections have one)."""
    return TrainConfig(task=str(synthetic_folder), encoder="minilm", pool_size=32, batch_queries=16, num_steps=12,
                       eval_every=4, learning_rate=0.05, output_dir=str(tmp_path / "run"),
                       **{"es.population_size": 32, "es.sigma": 0.05})


def _records(run_dir, event="step"):
    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def _config(small_config, method, tmp_path, name, **changes):
    return small_config.replace(method=method, output_dir=str(tmp_path / name), **{
        "handoff.step": 6, "handoff.gradient": "listnet", "es_phase.optimizer": "clipup",
        "gradient_phase.learning_rate": 0.01, **changes})


@pytest.mark.parametrize("method", ORDERS)
@pytest.mark.parametrize("killed_at", [7, 10])  # checkpoint at step 4 (before the hand-off) / 8 (after it)
def test_a_resumed_two_phase_run_is_bit_identical_across_the_hand_off(method, killed_at, small_config, small_data,
                                                                      tmp_path):
    straight = Trainer(_config(small_config, method, tmp_path, "a"), data=small_data, progress=False)
    straight.train()
    config = _config(small_config, method, tmp_path, "b")
    assert Trainer(config, data=small_data, progress=False).train(stop_after=killed_at) == {"stopped_at": killed_at}
    resumed = Trainer(config, data=small_data, progress=False)
    resumed.train()
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert [r["phase"] for r in b] == [1.0] * 6 + [2.0] * 6 == [r["phase"] for r in a]
    assert [r["train/batch_ndcg"] for r in a] == [r["train/batch_ndcg"] for r in b]
    assert (tmp_path / "b" / "best_head.safetensors").read_bytes() == (tmp_path / "a" / "best_head.safetensors").read_bytes()


@pytest.mark.parametrize(("method", "first", "second"), [("es_then_gradient", "eggroll", "listnet"),
                                                         ("gradient_then_es", "listnet", "eggroll")])
def test_phase_one_is_the_registered_method_with_its_phase_settings(method, first, second, small_config, small_data,
                                                                    tmp_path):
    """The first 6 steps of the hybrid are step for step the first method run alone with the phase's
    optimizer settings; after the hand-off the records are the second method's."""
    hybrid = _config(small_config, method, tmp_path, "hybrid")
    Trainer(hybrid, data=small_data, progress=False).train()
    phase = {"optimizer": "clipup"} if first == "eggroll" else {"learning_rate": 0.01}
    alone = small_config.replace(method=first, output_dir=str(tmp_path / "alone"), num_steps=6, **phase)
    Trainer(alone, data=small_data, progress=False).train()
    h, s = _records(tmp_path / "hybrid"), _records(tmp_path / "alone")
    assert [r["train/batch_ndcg"] for r in h[:6]] == [r["train/batch_ndcg"] for r in s]
    assert h[6]["handoff/at_step"] == 6.0
    assert ("loss" in h[7]) == (second == "listnet") and ("fitness/mean" in h[7]) == (second == "eggroll")


@pytest.mark.parametrize("method", ORDERS)
def test_hand_off_when_validation_stops_improving_and_resume(method, small_config, small_data, tmp_path):
    """With a phase-1 learning rate too small to change any ranking, the validation at step 8 does not beat
    the one at step 4: patience 1 hands off right there, and a run killed after it resumes bit-identically."""
    tiny = {"es_phase.learning_rate": 1e-12} if method == "es_then_gradient" else {"gradient_phase.learning_rate": 1e-12}
    changes = {"handoff.step": None, "handoff.patience": 1, "num_steps": 16, **tiny}
    straight = Trainer(_config(small_config, method, tmp_path, "a", **changes), data=small_data, progress=False)
    straight.train()
    phases = [r["phase"] for r in _records(tmp_path / "a")]
    assert phases == [1.0] * 8 + [2.0] * 8
    config = _config(small_config, method, tmp_path, "b", **changes)
    Trainer(config, data=small_data, progress=False).train(stop_after=10)  # checkpoint at 8, just after the hand-off
    resumed = Trainer(config, data=small_data, progress=False)
    resumed.train()
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name


def test_a_two_phase_config_without_a_hand_off_is_refused(small_config):
    with pytest.raises(ConfigError, match="handoff.step"):
        small_config.replace(method="es_then_gradient").validate()


def test_early_stopping_that_would_preempt_the_hand_off_is_refused(small_config):
    config = small_config.replace(method="gradient_then_es", patience=2, **{"handoff.patience": 2})
    with pytest.raises(ConfigError, match="handoff.patience"):
        config.validate()


def test_an_unknown_phase_optimizer_is_refused_naming_the_field(small_config):
    config = small_config.replace(method="es_then_gradient", **{"handoff.step": 3, "gradient_phase.optimizer": "lion"})
    with pytest.raises(ConfigError, match="gradient_phase.optimizer"):
        config.validate()
