"""EggrollES: ask / tell low-rank evolution strategies over named torch parameters.

    engine = EggrollES(dict(model.named_parameters()), population_size=256, rank=1, sigma=0.03, seed=0,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    pop = engine.ask()                              # Population of the current step
    fitness = torch.empty(pop.num_members)
    for chunk in pop.chunks(32):                    # any chunking: factors depend only on the pair index
        fitness[chunk.members] = my_fitness(chunk)  # e.g. population_forward / bilinear_population_scores
    stats = engine.tell(fitness)                    # shapes, regenerates noise, param.grad = -g, optimizer.step()

Per step ``t``: sigma_t from the controller; noise epoch ``t // noise_reuse``; ``tell`` computes
``g = 1/(N sigma_t) Σ_i f̃_i E_i`` (see :mod:`estimate`), clips its global norm to ``grad_clip`` if set,
writes ``param.grad = -g`` (no other rescaling) and calls ``optimizer.step()``; weight decay, momentum and
learning rate belong to the optimizer. Then the sigma controller observes the (finite) fitness.

``tell`` refuses, before anything changes (weights, optimizer, controller, step), a non-finite fitness
(NaN, ±inf; or replaces it under ``nan_policy="worst"``, see :mod:`shaping`) and a non-finite gradient (an
overflow of huge finite fitness values). ``load_state_dict`` cross-checks the step counters a state
holds (engine step, the optimizer's per-parameter ``step``, the adaptive sigma rule's ``observed``)
and raises :class:`StateMismatchError` naming the field that disagrees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from .estimate import clip_global_norm, es_gradient, global_norm
from .noise import param_id
from .population import ParamSpec, Population
from .shaping import ShapingFn, handle_nan, shape_fitness
from .sigma import SigmaSchedule, as_controller

STATE_FORMAT = "eggroll_ndcg.es/1"


class StateMismatchError(ValueError):
    """A state (or checkpoint) whose counters or settings disagree; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EggrollES:
    """Low-rank antithetic ES (EGGROLL) over named parameters; see the module docstring."""

    def __init__(
        self,
        named_params: Mapping[str, nn.Parameter] | Iterable[tuple[str, nn.Parameter]],
        *,
        population_size: int,
        rank: int = 1,
        sigma: float | SigmaSchedule,
        seed: int,
        optimizer: torch.optim.Optimizer,
        noise_reuse: int = 1,
        shaping: str | ShapingFn = "centered_rank",
        vector_noise: Literal["full", "freeze"] = "full",
        grad_clip: float | None = None,
        pair_chunk: int | None = None,
        nan_policy: Literal["raise", "worst"] = "raise",
    ) -> None:
        self.params: dict[str, nn.Parameter] = dict(named_params)
        if population_size < 2 or population_size % 2:
            raise ValueError(f"population_size must be even and >= 2, got {population_size}")
        if rank < 1 or noise_reuse < 1:
            raise ValueError("rank and noise_reuse must be >= 1")
        if vector_noise not in ("full", "freeze"):
            raise ValueError("vector_noise must be 'full' or 'freeze'")
        self.population_size = int(population_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.noise_reuse = int(noise_reuse)
        self.shaping = shaping
        self.vector_noise = vector_noise
        self.grad_clip = grad_clip
        self.pair_chunk = pair_chunk
        self.nan_policy = nan_policy
        self.sigma_controller = as_controller(sigma)
        self.optimizer = optimizer
        self._step = 0

        specs = []
        for name, p in self.params.items():
            if p.dim() >= 2:
                specs.append(ParamSpec(name, tuple(p.shape), "lowrank", param_id(name)))
            elif vector_noise == "full":
                specs.append(ParamSpec(name, tuple(p.shape), "full", param_id(name)))
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        pids = [s.pid for s in self.specs]
        if len(set(pids)) != len(pids):
            raise ValueError("two parameter names share a crc32 id; rename one")
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [s.name for s in self.specs if id(self.params[s.name]) not in in_optimizer]
        if missing:
            raise ValueError(f"the optimizer does not hold perturbed parameters {missing}")

    # ------------------------------------------------------------------ ask / tell
    @property
    def step(self) -> int:
        """Completed ``tell`` calls (read-only; a trainer cross-checks it against its own step on resume).
        Step ``t`` uses noise epoch ``t // noise_reuse`` and ``sigma(t)``."""
        return self._step

    @property
    def sigma(self) -> float:
        """Sigma of the current step."""
        return self.sigma_controller.sigma(self.step)

    @property
    def frozen(self) -> tuple[str, ...]:
        """Named parameters that get no noise and no update (vectors with ``vector_noise='freeze'``)."""
        perturbed = {s.name for s in self.specs}
        return tuple(name for name in self.params if name not in perturbed)

    def ask(self) -> Population:
        """The population of the current step (nothing is generated until factors are asked for)."""
        return Population(
            step=self.step,
            epoch=self.step // self.noise_reuse,
            seed=self.seed,
            sigma=self.sigma,
            num_members=self.population_size,
            rank=self.rank,
            specs=self.specs,
            params=self.params,
        )

    def tell(self, fitness: Tensor) -> dict[str, float]:
        """Update from the fitness of the current population: ``[N]`` or ``[N, Q]``, higher is better.

        Returns plain floats: fitness mean/std/min/max (over members, after the query mean), shaped std,
        grad_norm (before clipping), grad_norm_clipped, update_norm, sigma (used), next_sigma, plus the
        sigma controller's statistics (adaptive: signal_fraction, nonlinearity_ratio). Then ``step += 1``.
        A non-finite fitness (unless ``nan_policy="worst"`` replaces it) or gradient raises ``ValueError``
        before any state changes.
        """
        fitness = torch.as_tensor(fitness)
        if fitness.dim() not in (1, 2) or fitness.shape[0] != self.population_size:
            n = self.population_size
            raise ValueError(f"fitness must be [{n}] or [{n}, Q], got {tuple(fitness.shape)}")
        population = self.ask()
        fitness = handle_nan(fitness.double(), self.nan_policy)
        shaped = shape_fitness(fitness, self.shaping)
        grads, grad_norm = clip_global_norm(self.gradient(population, shaped), self.grad_clip)
        descent = {name: (-g).to(self.params[name].dtype) for name, g in grads.items()}
        _require_finite_gradient(descent)
        before = {name: p.detach().clone() for name, p in self.params.items() if name in grads}
        for name, g in descent.items():
            self.params[name].grad = g
        self.optimizer.step()
        update_norm = global_norm({name: self.params[name].detach() - before[name] for name in before})

        per_member = fitness.mean(dim=1) if fitness.dim() == 2 else fitness
        stats = {
            "step": float(self.step),
            "fitness_mean": float(per_member.mean()),
            "fitness_std": float(per_member.std(unbiased=False)),
            "fitness_min": float(per_member.min()),
            "fitness_max": float(per_member.max()),
            "shaped_std": float(shaped.std(unbiased=False)),
            "grad_norm": grad_norm,
            "grad_norm_clipped": global_norm(grads),
            "update_norm": update_norm,
            "sigma": population.sigma,
        }
        stats.update(self.sigma_controller.observe(self.step, per_member))
        self._step += 1
        stats["next_sigma"] = self.sigma
        return stats

    def gradient(self, population: Population, shaped: Tensor) -> dict[str, Tensor]:
        """The ES estimate ``g = 1/(N sigma) Σ_i f̃_i E_i`` of ``tell`` from the shaped fitness; a subclass with
        another noise distribution (``es.guided``) overrides only this."""
        return es_gradient(population, shaped, pair_chunk=self.pair_chunk)

    # ------------------------------------------------------------------ state
    def config(self) -> dict:
        """The settings a checkpoint must agree with to be resumed by this engine."""
        return {
            "population_size": self.population_size,
            "rank": self.rank,
            "seed": self.seed,
            "noise_reuse": self.noise_reuse,
            "vector_noise": self.vector_noise,
            "params": {s.name: {"shape": list(s.shape), "kind": s.kind, "pid": s.pid} for s in self.specs},
        }

    def state_dict(self) -> dict:
        """Step, seed and layout (``config``), sigma-controller state and optimizer state (not the weights)."""
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "config": self.config(),
            "sigma": self.sigma_controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output after checking it all first (nothing changes on an error):
        format, ``config`` (``ValueError``) and every counter against ``step`` (:class:`StateMismatchError`)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not an engine state of format {STATE_FORMAT!r}: {state.get('format')!r}")
        mine = self.config()
        diffs = [k for k in mine if state["config"].get(k) != mine[k]]
        if diffs:
            raise StateMismatchError("config", f"checkpoint settings differ from this engine's in {diffs}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise StateMismatchError("step", f"must be an integer >= 0, got {step!r}")
        for field, count in _state_counters(state, self._optimizer_indices()).items():
            if count != step:
                raise StateMismatchError(field, f"counts {count:g} steps but the engine state says step = {step}")
        self._step = step
        self.sigma_controller.load_state_dict(state["sigma"])
        self.optimizer.load_state_dict(state["optimizer"])

    def _optimizer_indices(self) -> dict[int, str]:
        """``optimizer.state_dict()`` index -> name of each perturbed parameter (indices run over groups)."""
        names = {id(self.params[s.name]): s.name for s in self.specs}
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        return {index: names[id(p)] for index, p in enumerate(params) if id(p) in names}


def _state_counters(state: dict, perturbed: dict[int, str]) -> dict[str, float]:
    """Every step counter of an engine state other than ``step``, by field name; each must equal ``step``.

    The optimizer steps once per ``tell`` and every perturbed parameter gets a gradient each time, so a
    per-parameter ``state[i]["step"]`` (Adam, AdamW, ...) counts the engine's steps; the adaptive sigma rule
    counts its observations (``observed``, one per ``tell``). Counters a state lacks are not checked. This
    assumes the engine drives its optimizer and controller from their first step.
    """
    counters: dict[str, float] = {}
    for index, entries in state["optimizer"]["state"].items():
        if int(index) in perturbed and "step" in entries:  # a tensor (Adam keeps float32) or a number
            counters[f"optimizer.state[{perturbed[int(index)]}].step"] = float(entries["step"])
    if state["sigma"].get("observed") is not None:
        counters["sigma.observed"] = float(state["sigma"]["observed"])
    return counters


def _require_finite_gradient(grads: dict[str, Tensor]) -> None:
    """Raise ``ValueError`` if any gradient entry is NaN or ±inf (an overflow: e.g. raw shaping of fitness
    near ``±1e308``, or a cast to the parameter dtype); called before anything changes."""
    bad = [name for name, g in grads.items() if not bool(torch.isfinite(g).all())]
    if bad:
        raise ValueError(f"non-finite ES gradient for {bad} (fitness or shaped values too large?); nothing changed")
