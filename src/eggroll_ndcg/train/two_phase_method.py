"""Two-phase methods: `es_then_gradient` and `gradient_then_es`, one run that hands the head from one
registered method to another.

Phase 1 runs until the hand-off, phase 2 from there to the end of the run, on the same head, batches,
validation, run folder, log and checkpoint. The ES phase is the registered `eggroll` method (its `es`
section); the gradient phase is the registered gradient method `handoff.gradient` (`infonce`, `listnet`,
`lambdaloss`, `approx_ndcg`, `pl_pg`; its `loss` / `pl_pg` sections). Each phase has its own optimizer
section, `es_phase` and `gradient_phase` (`PhaseSection`: optimizer, learning rate, weight decay, momentum,
grad clip; a null field keeps the shared config's value), because ES and gradient steps want different
optimizers (ClipUp at 0.05 against Adam at 1e-3 in the packaged SciFact config).

Hand-off (section `handoff`): after `handoff.step` steps, or, with `handoff.patience` set, once
`patience` validations in a row (every `eval_every` steps, through the trainer's `observe_validation`
hook) have not beaten phase 1's best validation value; whichever comes first when both are set. Phase 2
starts from the current weights with a fresh optimizer; its methods are built at the hand-off, so their
state starts there (the ES engine's noise counter starts at 0 then). The trainer's own `patience` (early
stopping) counts over the whole run: keep it null or above `handoff.patience`.

Each step record gets `phase` (1 or 2); the step of the hand-off is `handoff_step` in the method state and
in the first phase-2 record (`handoff/at_step`). The state holds the phase, the hand-off bookkeeping and
the state of the phase that runs, so a resume before, at or after the hand-off is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .batches import PoolBatch
from .config import OPTIMIZERS, TrainConfig, register_section
from .methods import METHODS, Method, MethodSpec, register_method
from .objectives import Objective

GRADIENT_METHODS = ("infonce", "listnet", "lambdaloss", "approx_ndcg", "pl_pg")
PHASE_FIELDS = ("optimizer", "learning_rate", "weight_decay", "momentum", "grad_clip")


@dataclass
class HandoffSection:
    """When to hand off (section `handoff`): after `step` steps and/or after `patience` validations
    without a new phase-1 best; `gradient` names the gradient method of the gradient phase."""

    step: int | None = None
    patience: int | None = None
    gradient: str = "listnet"

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.step is None and self.patience is None:
            fail("step", "set handoff.step (a step count) and/or handoff.patience (validations without gain)")
        if self.step is not None and self.step < 0:
            fail("step", f"must be >= 0, got {self.step}")
        if self.patience is not None and self.patience < 1:
            fail("patience", f"must be >= 1 or null, got {self.patience}")
        if self.gradient not in GRADIENT_METHODS:
            fail("gradient", f"expected one of {', '.join(GRADIENT_METHODS)}, got {self.gradient!r}")


@dataclass
class PhaseSection:
    """Optimizer settings of one phase (sections `es_phase`, `gradient_phase`); null = the shared field."""

    optimizer: str | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    grad_clip: float | None = None

    def validate(self, fail: Callable[[str, str], None]) -> None:
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        for name in ("learning_rate", "grad_clip"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                fail(name, f"must be > 0 or null (the shared field), got {getattr(self, name)}")
        if self.weight_decay is not None and self.weight_decay < 0:
            fail("weight_decay", f"must be >= 0 or null, got {self.weight_decay}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            fail("momentum", f"must be in [0, 1) or null, got {self.momentum}")

    def overrides(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PHASE_FIELDS if getattr(self, name) is not None}


register_section("handoff", HandoffSection)
register_section("es_phase", PhaseSection)
register_section("gradient_phase", PhaseSection)


class TwoPhaseMethod:
    """Phase 1 then phase 2 (module docstring); `order` is ("es", "gradient") or ("gradient", "es")."""

    def __init__(self, head: nn.Module, config: TrainConfig, objective: Objective, *, order: tuple[str, str]):
        self.head, self.config, self.objective, self.order = head, config, objective, order
        self.handoff = config.handoff
        self.phase = 1
        self.steps = 0
        self.handoff_step: int | None = None
        self.best: float | None = None
        self.stale = 0
        self.current = self._build(order[0])

    def _build(self, kind: str) -> Method:
        """The registered method of phase kind `kind` with that phase's optimizer settings."""
        name = "eggroll" if kind == "es" else self.handoff.gradient
        phase = (self.config.es_phase if kind == "es" else self.config.gradient_phase).overrides()
        return METHODS.get(name).build(self.head, self.config.replace(method=name, **phase), self.objective)

    def _hand_off(self) -> None:
        self.phase, self.handoff_step = 2, self.steps
        self.current = self._build(self.order[1])

    def step(self, batch: PoolBatch, step: int) -> dict[str, Any]:
        record: dict[str, Any] = {}
        if self.phase == 1 and self.handoff.step is not None and self.steps >= self.handoff.step:
            self._hand_off()
            record["handoff/at_step"] = float(self.steps)
        record.update(self.current.step(batch, step))
        record["phase"] = float(self.phase)
        self.steps += 1
        return record

    def observe_validation(self, step: int, value: float) -> None:
        """Phase 1: count validations without a new best; hand off after `handoff.patience` of them."""
        if self.phase != 1 or self.handoff.patience is None:
            return
        if self.best is None or value > self.best:
            self.best, self.stale = value, 0
            return
        self.stale += 1
        if self.stale >= self.handoff.patience:
            self._hand_off()

    def steps_done(self) -> int:
        return self.steps

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "steps": self.steps, "handoff_step": self.handoff_step, "best": self.best,
                "stale": self.stale, "current": self.current.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.best, self.stale = state["steps"], state["best"], state["stale"]
        if state["phase"] == 2:
            self.phase, self.handoff_step = 2, state["handoff_step"]
            self.current = self._build(self.order[1])
        self.current.load_state_dict(state["current"])


def _refuses(config: TrainConfig) -> str | None:
    handoff = config.handoff
    if config.patience is not None and handoff.patience is not None and config.patience <= handoff.patience:
        return (f"patience={config.patience} would stop the run before handoff.patience={handoff.patience} "
                "hands off; set patience null or above handoff.patience")
    refuses = METHODS.get(handoff.gradient).refuses
    return refuses(config) if refuses else None


_SECTIONS = ("es", "loss", "pl_pg", "handoff", "es_phase", "gradient_phase")
register_method(MethodSpec(
    "es_then_gradient", lambda head, config, objective: TwoPhaseMethod(head, config, objective, order=("es", "gradient")),
    sections=_SECTIONS, summary="EGGROLL, then a gradient method from the hand-off (handoff.step / handoff.patience)",
    refuses=_refuses,
))
register_method(MethodSpec(
    "gradient_then_es", lambda head, config, objective: TwoPhaseMethod(head, config, objective, order=("gradient", "es")),
    sections=_SECTIONS, summary="a gradient method, then EGGROLL from the hand-off (handoff.step / handoff.patience)",
    refuses=_refuses,
))
