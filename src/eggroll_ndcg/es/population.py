"""The population of one step: which parameters are perturbed, how, and their factors on demand.

A :class:`Population` is a small immutable description (seed, noise epoch, sigma, size, rank, parameter
specs). Its noise is regenerated from counters (see :mod:`noise`), so a pair's factors are the same
whichever chunk asks for them. :func:`population_forward` runs the ``nn.Linear`` layers of any module as a
population with :func:`perturb.lowrank_delta` added through forward hooks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from .noise import full_noise, lowrank_factors, matrix_shape
from .perturb import lowrank_delta

NoiseKind = Literal["lowrank", "full"]


@dataclass(frozen=True)
class ParamSpec:
    """A perturbed parameter: its name, shape, noise kind and 32-bit counter id."""

    name: str
    shape: tuple[int, ...]
    kind: NoiseKind
    pid: int

    @property
    def matrix(self) -> tuple[int, int]:
        """``(m, n)``: how a low-rank parameter is seen as a matrix."""
        return matrix_shape(self.shape)


@dataclass(frozen=True)
class Population:
    """Members of one step. ``num_members = 2 * num_pairs``; members ``2j, 2j+1`` are ``W ± sigma·E_j``."""

    step: int
    epoch: int
    seed: int
    sigma: float
    num_members: int
    rank: int
    specs: tuple[ParamSpec, ...]
    params: Mapping[str, Tensor] = field(repr=False, compare=False, hash=False)

    @property
    def num_pairs(self) -> int:
        return self.num_members // 2

    def spec(self, name: str) -> ParamSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(f"{name!r} is not perturbed in this population (perturbed: {[s.name for s in self.specs]})")

    def _pairs(self, pairs: range | Tensor | None) -> Tensor:
        if pairs is None:
            pairs = range(self.num_pairs)
        if isinstance(pairs, range):
            pairs = torch.arange(pairs.start, pairs.stop, pairs.step, dtype=torch.int64)
        return pairs

    def factors(self, name: str, pairs: range | Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Low-rank factors ``A [J, m, r]``, ``B [J, n, r]`` of ``pairs`` (default: all) for parameter ``name``."""
        spec = self.spec(name)
        if spec.kind != "lowrank":
            raise ValueError(f"{name!r} has full-rank noise; use full_noise()")
        p = self.params[name]
        m, n = spec.matrix
        pairs = self._pairs(pairs)
        return lowrank_factors(self.seed, self.epoch, spec.pid, pairs, m, n, self.rank, dtype=p.dtype, device=p.device)

    def full_noise(self, name: str, pairs: range | Tensor | None = None) -> Tensor:
        """Full-rank noise ``[J, *shape]`` of ``pairs`` for a (vector) parameter with full-rank noise."""
        spec = self.spec(name)
        if spec.kind != "full":
            raise ValueError(f"{name!r} has low-rank noise; use factors()")
        p = self.params[name]
        pairs = self._pairs(pairs)
        return full_noise(self.seed, self.epoch, spec.pid, pairs, spec.shape, dtype=p.dtype, device=p.device)

    def perturbation(self, name: str, pairs: range | Tensor | None = None) -> Tensor:
        """Oracle / genetic use: the explicit unit perturbation ``E_j`` ``[J, *shape]`` (low-rank: ``A Bᵀ/sqrt r``)."""
        spec = self.spec(name)
        if spec.kind == "full":
            return self.full_noise(name, pairs)
        A, B = self.factors(name, pairs)
        return (torch.bmm(A, B.transpose(1, 2)) / math.sqrt(self.rank)).reshape(A.shape[0], *spec.shape)

    def chunks(self, pairs_per_chunk: int | None = None) -> Iterator[PopulationChunk]:
        """Consecutive chunks of ``pairs_per_chunk`` pairs (``2 *`` that many members); None = one chunk."""
        step = self.num_pairs if pairs_per_chunk is None else int(pairs_per_chunk)
        if step < 1:
            raise ValueError("pairs_per_chunk must be >= 1")
        for start in range(0, self.num_pairs, step):
            yield PopulationChunk(self, start, min(start + step, self.num_pairs))

    def all(self) -> PopulationChunk:
        """The whole population as one chunk."""
        return PopulationChunk(self, 0, self.num_pairs)


class PopulationChunk:
    """Pairs ``pair_start .. pair_stop-1`` = members ``2*pair_start .. 2*pair_stop-1`` of a population.

    Factors are generated on first use and cached in the chunk, so scoring and forward passes over the
    same chunk share them.
    """

    def __init__(self, population: Population, pair_start: int, pair_stop: int) -> None:
        self.population = population
        self.pair_start = pair_start
        self.pair_stop = pair_stop
        self._cache: dict[str, object] = {}

    @property
    def sigma(self) -> float:
        return self.population.sigma

    @property
    def rank(self) -> int:
        return self.population.rank

    @property
    def num_pairs(self) -> int:
        return self.pair_stop - self.pair_start

    @property
    def num_members(self) -> int:
        return 2 * self.num_pairs

    @property
    def pairs(self) -> range:
        return range(self.pair_start, self.pair_stop)

    @property
    def members(self) -> slice:
        """Where this chunk's members sit in the population's fitness vector."""
        return slice(2 * self.pair_start, 2 * self.pair_stop)

    def factors(self, name: str) -> tuple[Tensor, Tensor]:
        """``A [J, m, r]``, ``B [J, n, r]`` of this chunk's pairs for parameter ``name``."""
        if name not in self._cache:
            self._cache[name] = self.population.factors(name, self.pairs)
        return self._cache[name]  # type: ignore[return-value]

    def full_noise(self, name: str) -> Tensor:
        """``[J, *shape]`` full-rank noise of this chunk's pairs for parameter ``name``."""
        if name not in self._cache:
            self._cache[name] = self.population.full_noise(name, self.pairs)
        return self._cache[name]  # type: ignore[return-value]

    def is_perturbed(self, name: str) -> bool:
        return any(spec.name == name for spec in self.population.specs)


def population_forward(
    module: nn.Module, chunk: PopulationChunk, *inputs: Tensor, shared_inputs: bool = False, strict: bool = True, **kwargs
):
    """Run ``module`` as the chunk's population: every ``nn.Linear`` whose weight is perturbed gets
    ``± (sigma/sqrt r)(x B_j) A_jᵀ`` (and ``± sigma·eps_j`` on a perturbed bias) added to its output.

    Inputs carry a leading member axis of size ``chunk.num_members``; with ``shared_inputs=True`` they
    carry none and are broadcast (``expand``, no copy). Parameters are matched by identity with the
    population's named parameters. With ``strict=True`` a perturbed parameter that is not the weight or
    bias of an ``nn.Linear`` in ``module`` raises (only Linear layers run as a population); pass
    ``strict=False`` when the population also covers parameters of other modules. Runs under
    ``torch.no_grad()``.
    """
    population = chunk.population
    names = {id(population.params[spec.name]): spec.name for spec in population.specs}
    if shared_inputs:
        inputs = tuple(x.expand(chunk.num_members, *x.shape) for x in inputs)
    handles = []
    seen: set[str] = set()

    def make_hook(weight_name: str, bias_name: str | None):
        def hook(_mod: nn.Module, args: tuple, output: Tensor) -> Tensor:
            A, B = chunk.factors(weight_name)
            bias_noise = chunk.full_noise(bias_name) if bias_name is not None else None
            return output + lowrank_delta(args[0], A, B, chunk.sigma, bias_noise=bias_noise)

        return hook

    try:
        for mod in module.modules():
            if not isinstance(mod, nn.Linear):
                continue
            w_name = names.get(id(mod.weight))
            b_name = names.get(id(mod.bias)) if mod.bias is not None else None
            if b_name is not None and w_name is None:
                raise NotImplementedError(f"bias {b_name!r} is perturbed but its Linear weight is not")
            if w_name is not None:
                seen.update({w_name} | ({b_name} if b_name else set()))
                handles.append(mod.register_forward_hook(make_hook(w_name, b_name)))
        missing = [spec.name for spec in population.specs if spec.name not in seen]
        if missing and strict:
            raise NotImplementedError(f"perturbed parameters {missing} are not weights/biases of an nn.Linear here")
        with torch.no_grad():  # ES needs no autograd graph
            return module(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
