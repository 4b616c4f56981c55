"""The house is open: a method, a head and an objective defined in test code only join through their
registries and train, resume and run from the CLI without any file under src/ changing."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from eggroll_ndcg.cli import main
from eggroll_ndcg.models.heads import HEADS, HeadSpec, score_pool
from eggroll_ndcg.train.checkpoint import load_checkpoint
from eggroll_ndcg.train.config import SECTIONS, ConfigError, TrainConfig, register_section
from eggroll_ndcg.train.methods import METHODS, MethodSpec, register_method
from eggroll_ndcg.train.objectives import OBJECTIVES, Objective
from eggroll_ndcg.train.trainer import Trainer


@dataclass
class RandomSearchSection:
    candidates: int = 4
    scale: float = 0.05

    def validate(self, fail) -> None:
        if self.candidates < 1:
            fail("candidates", "must be >= 1")


class RandomSearch:
    """Keep the best of `candidates` Gaussian perturbations of the head (or the head itself) on the batch."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective):
        self.head, self.config, self.objective = head, config, objective
        self.steps = 0

    def _value(self, batch) -> float:
        with torch.no_grad():
            scores = score_pool(self.head, batch.query_emb, batch.doc_emb, normalize=self.config.normalize)
            return float(self.objective(scores, batch).mean())

    def step(self, batch, step: int) -> dict:
        options = self.config.random_search
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + step)
        params = list(self.head.parameters())
        base = [p.detach().clone() for p in params]
        best, best_value = [torch.zeros_like(p) for p in params], self._value(batch)
        for _ in range(options.candidates):
            deltas = [options.scale * torch.randn(p.shape, generator=generator) for p in params]
            with torch.no_grad():
                for p, b, d in zip(params, base, deltas):
                    p.copy_(b + d)
            value = self._value(batch)
            if value > best_value:
                best, best_value = deltas, value
        with torch.no_grad():
            for p, b, d in zip(params, base, best):
                p.copy_(b + d)
        self.steps += 1
        return {"fitness/mean": best_value}

    def steps_done(self) -> int:
        return self.steps

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]


class DiagonalHead(nn.Module):
    """f(h) = d ⊙ h, d starting at 1 (the zero-shot encoder)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, h):
        return h * self.scale


def _top_hit(scores, batch, k):
    """A toy objective: 1 when the top candidate is relevant."""
    top = scores.masked_fill(~batch.mask, float("-inf")).argmax(-1, keepdim=True)
    return (batch.grades.expand_as(scores).gather(-1, top)[..., 0] > 0).to(scores.dtype)


@pytest.fixture()
def toy_registrations():
    register_section("random_search", RandomSearchSection)
    register_method(MethodSpec("random_search", RandomSearch, sections=("random_search",), summary="toy"))
    HEADS.register("diagonal", HeadSpec(lambda doc_emb, settings: DiagonalHead(doc_emb.shape[1])))
    OBJECTIVES.register("tophit", lambda k: Objective("tophit", k, _top_hit))
    yield
    METHODS.unregister("random_search")
    SECTIONS.unregister("random_search")
    HEADS.unregister("diagonal")
    OBJECTIVES.unregister("tophit")


def test_a_toy_method_head_and_objective_train_and_resume_bit_identically(toy_registrations, small_config,
                                                                         small_data, tmp_path):
    config = small_config.replace(method="random_search", head="diagonal", objective="tophit@1",
                                  **{"random_search.candidates": 3}).validate()
    straight = Trainer(config.replace(output_dir=str(tmp_path / "a")), data=small_data, progress=False).train()
    resumed_config = config.replace(output_dir=str(tmp_path / "b"))
    assert Trainer(resumed_config, data=small_data, progress=False).train(stop_after=5) == {"stopped_at": 5}
    resumed = Trainer(resumed_config, data=small_data, progress=False).train()
    a, b = (load_checkpoint(tmp_path / name / "checkpoint")["head"]["scale"] for name in ("a", "b"))
    assert torch.equal(a, b) and not torch.equal(a, torch.ones_like(a))  # it moved, and resumed exactly
    assert (tmp_path / "a" / "best_head.safetensors").read_bytes() == (tmp_path / "b" / "best_head.safetensors").read_bytes()
    timing = ("train_time", "time_to_best")
    assert {k: v for k, v in straight.items() if k not in timing} == {k: v for k, v in resumed.items() if k not in timing}
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert "train/batch_tophit" in log[1]


@pytest.mark.slow
def test_a_toy_method_runs_from_the_cli_and_appears_in_its_help(toy_registrations, synthetic_folder, tmp_path,
                                                                capsys):
    out = tmp_path / "cli-run"
    args = ["train", "--task", str(synthetic_folder), "--method", "random_search", "--output-dir", str(out),
            "--quiet", "--set", "head=diagonal", "--set", "num_steps=4", "--set", "eval_every=2",
            "--set", "random_search.scale=0.1", "--set", "pool_size=16"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["random_search"] == {"candidates": 4, "scale": 0.1}
    assert main(args) == 0  # a finished run folder resumes to the same result
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "random_search (toy)" in capsys.readouterr().out


def test_the_section_of_another_method_is_neither_validated_nor_compared_on_resume(toy_registrations):
    config = TrainConfig(method="infonce", es={"population_size": 7})  # odd: invalid for eggroll only
    config.validate()
    with pytest.raises(ConfigError, match="'es.population_size'"):
        config.replace(method="eggroll").validate()
    assert "es" not in config.result_fields() and "loss" in config.result_fields()
    with pytest.raises(ConfigError, match="'random_search.candidates'"):
        TrainConfig(method="random_search", random_search={"candidates": 0}).validate()
