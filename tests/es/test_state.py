"""Claims about checkpoints (es/state.py): safetensors + JSON, and resuming is bit-identical."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from eggroll_ndcg.es import (
    AdaptiveSigma,
    ClipUp,
    EggrollES,
    StateMismatchError,
    load_checkpoint,
    population_forward,
    save_checkpoint,
)


def _setup(optimizer: str):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = {
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.02, weight_decay=1e-2),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5),
        "clipup": lambda p: ClipUp(p, lr=0.02),
    }[optimizer](model.parameters())
    engine = EggrollES(dict(model.named_parameters()), population_size=16, rank=2, seed=9, noise_reuse=2,
                       sigma=AdaptiveSigma(0.05, lower=1e-3, upper=1.0), optimizer=opt, grad_clip=5.0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 2, generator=g)
    return model, engine, x, y


def _steps(model, engine, x, y, n):
    for _ in range(n):
        out = population_forward(model, engine.ask().all(), x, shared_inputs=True)
        engine.tell(-((out - y) ** 2).mean(dim=(1, 2)))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "clipup"])
def test_resume_from_checkpoint_is_bit_identical(tmp_path, optimizer):
    """Claim: 10 steps straight == 5 steps, save, a fresh model/optimizer/engine loads the checkpoint, 5 more
    steps: bit-identical weights, sigma and step. Holds because noise is regenerated from
    (seed, step // noise_reuse, pair, parameter) and sigma-controller and optimizer states are restored exactly."""
    model, engine, x, y = _setup(optimizer)
    _steps(model, engine, x, y, 10)
    straight = {k: v.detach().clone() for k, v in model.named_parameters()}

    model, engine, x, y = _setup(optimizer)
    _steps(model, engine, x, y, 5)
    save_checkpoint(tmp_path / "ckpt", engine, extra_tensors={"best": torch.arange(3.0)}, extra_json={"epoch": 5})
    model, engine, x, y = _setup(optimizer)  # fresh objects, initial weights
    extra_tensors, extra_json = load_checkpoint(tmp_path / "ckpt", engine)
    assert engine.step == 5 and extra_json == {"epoch": 5} and torch.equal(extra_tensors["best"], torch.arange(3.0))
    _steps(model, engine, x, y, 5)
    assert all(torch.equal(straight[k], v.detach()) for k, v in model.named_parameters())


def test_checkpoint_is_safetensors_plus_json_and_refuses_another_layout(tmp_path):
    """Claim: the checkpoint folder holds only engine.safetensors and engine.json (no pickle), and loading
    it into an engine with a different seed or population raises instead of silently diverging."""
    model, engine, x, y = _setup("adamw")
    _steps(model, engine, x, y, 2)
    folder = save_checkpoint(tmp_path / "ckpt", engine)
    assert sorted(p.name for p in folder.iterdir()) == ["engine.json", "engine.safetensors"]
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["step"] == 2 and meta["config"]["seed"] == 9 and "current" in meta["sigma"]
    other = EggrollES(dict(model.named_parameters()), population_size=16, rank=2, seed=10, noise_reuse=2,
                      sigma=0.1, optimizer=torch.optim.AdamW(model.parameters()))
    with pytest.raises(ValueError, match="seed"):
        load_checkpoint(folder, other)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "clipup"])
def test_an_edited_step_in_the_checkpoint_json_is_refused_naming_the_field(tmp_path, optimizer):
    """Claim (issue 10): a checkpoint whose engine.json step was edited (3 -> 5) is not used silently,
    whatever the optimizer: loading raises StateMismatchError (a ValueError) naming `step`, and the
    engine is left untouched (step 0, initial weights)."""
    model, engine, x, y = _setup(optimizer)
    _steps(model, engine, x, y, 3)
    folder = save_checkpoint(tmp_path / "ckpt", engine)
    meta = json.loads((folder / "engine.json").read_text())
    meta["step"] = 5
    (folder / "engine.json").write_text(json.dumps(meta))
    model, engine, x, y = _setup(optimizer)
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    with pytest.raises(StateMismatchError, match="step") as caught:
        load_checkpoint(folder, engine)
    assert isinstance(caught.value, ValueError) and caught.value.field == "step"
    assert engine.step == 0 and all(torch.equal(initial[k], v.detach()) for k, v in model.named_parameters())


def test_load_state_dict_cross_checks_every_counter_against_the_step():
    """Claim (issue 10): EggrollES.load_state_dict compares the engine step with each perturbed parameter's
    optimizer `step` (Adam/AdamW) and with the adaptive sigma rule's `observed` count, and a mismatch raises
    StateMismatchError naming that field before anything is restored. A state without a count (older
    checkpoints) loads."""
    model, engine, x, y = _setup("adamw")
    _steps(model, engine, x, y, 3)
    state = engine.state_dict()
    assert state["sigma"]["observed"] == 3
    assert all(float(s["step"]) == 3 for s in state["optimizer"]["state"].values())
    edited = copy.deepcopy(state)
    edited["step"] = 5
    edited["sigma"]["observed"] = 5
    fresh = _setup("adamw")[1]
    with pytest.raises(StateMismatchError, match=r"optimizer\.state\[0\.weight\]\.step: counts 3 steps") as caught:
        fresh.load_state_dict(edited)
    assert caught.value.field == "optimizer.state[0.weight].step" and fresh.step == 0 and not fresh.optimizer.state

    model, engine, x, y = _setup("sgd")  # SGD keeps no step: the sigma rule's count still catches it
    _steps(model, engine, x, y, 2)
    edited = engine.state_dict()
    edited["step"] = 7
    with pytest.raises(StateMismatchError, match=r"sigma\.observed: counts 2 steps but .* step = 7"):
        _setup("sgd")[1].load_state_dict(edited)
    with pytest.raises(StateMismatchError, match="step"):
        _setup("sgd")[1].load_state_dict({**edited, "step": -1})

    older = engine.state_dict()
    del older["sigma"]["observed"]
    fresh = _setup("sgd")[1]
    fresh.load_state_dict(older)
    assert fresh.step == 2 and "observed" not in fresh.state_dict()["sigma"]
