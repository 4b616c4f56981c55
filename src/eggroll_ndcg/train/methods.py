"""The method protocol and the method registry.

A method is the step rule of a run: the trainer owns the data, the head, the loop, evaluation, checkpoints
and logs, and asks the method for one update per minibatch. A method implements `Method`:

    step(batch: PoolBatch, step: int) -> dict[str, float]    # update the head in place; log fields
    state_dict() -> dict                                       # everything it needs to resume exactly
    load_state_dict(state: dict) -> None

Optional: `observe_validation(step: int, value: float) -> None`. When a method has it, the trainer calls it
after each validation (every `eval_every` steps, not at step 0) with the step and the validation value
(`val_metric`, validation queries only), before the checkpoint is written, so what the method does with it
is in the checkpoint (the two-phase methods hand off on it, `train.two_phase_method`).

and is registered with a `MethodSpec`: its name, a `build(head, config, objective)` factory, the config
sections it reads (`es`, `loss`, ...: validated for it, compared on resume), and optionally `refuses(config)`,
which returns why the method cannot run a config (for example a loss that cannot target the objective) or
None. Adding a method is one module plus one `register_method(MethodSpec(...))` line; the CLI help, the
config validation and `compare` read `METHODS`.

The built-in methods register themselves in `train.es_method` (eggroll) and `train.gradient_method`
(infonce, listnet, lambdaloss, approx_ndcg, pl_pg); importing `eggroll_ndcg.train` loads both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..registry import Registry

if TYPE_CHECKING:  # annotations only: no import of the modules that register methods
    from torch import nn

    from .batches import PoolBatch
    from .config import TrainConfig
    from .objectives import Objective


class Method(Protocol):
    """The step rule of a run (see the module docstring)."""

    def step(self, batch: "PoolBatch", step: int) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: `build(head, config, objective) -> Method`, the config `sections` it reads, a
    one-line `summary` (CLI help), and `refuses(config) -> str | None` for configs it cannot run."""

    name: str
    build: Callable[["nn.Module", "TrainConfig", "Objective"], Method]
    sections: tuple[str, ...] = ()
    summary: str = ""
    refuses: Callable[["TrainConfig"], str | None] | None = None
    trains_codes: bool = False  # can train a head with no float parameters (quantized weights, `quant.weights`)


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a method under `spec.name` (see the module docstring)."""
    return METHODS.register(spec.name, spec, replace=replace)


def methods_help() -> str:
    """"name: summary" of every registered method, for help texts."""
    return "; ".join(f"{name} ({spec.summary})" if spec.summary else name for name, spec in METHODS.items())
