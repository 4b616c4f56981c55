"""Genetic individuals as a shared base plus a short chain of named low-rank deltas (seed-chain encoding).

An individual ``i`` is the shared base parameters ``θ₀`` plus a chain of terms ``(key_k, c_k)``:

    θ_i = θ₀ + Σ_k c_k E_k,        E_k = A_k B_kᵀ / sqrt(r)  (matrix parameter)   or  ε_k  (vector parameter)

where ``key_k = (seed, generation, index)`` names the counter-based noise of :mod:`es.noise`: the factors
of parameter ``p`` are ``lowrank_factors(seed, epoch=generation, pid(p), pairs=[index], m, n, r)``, exactly
the engine's layout, so nothing but the keys and coefficients is stored (Such et al. 2017). Chains are kept
sorted by key with one coefficient per key, so algebra on individuals is algebra on coefficient maps:
a blend ``α θ₁ + (1 − α) θ₂`` is the chain ``α·chain₁ + (1 − α)·chain₂`` (shared ancestors merge).

**Scoring without forming any W.** For a head that describes its noise on an effective weight
(``weight_noise``: linear without bias, subspace, adapter), individual ``i``'s effective weight is
``W₀ + Ã_i B̃_iᵀ`` with ``Ã_i = [c_k A'_k / sqrt r]_k`` ``[m, T·r]`` and ``B̃_i = [B'_k]_k`` ``[n, T·r]``
(``A'_k, B'_k`` the head's map of the term's factors). :func:`population_scores` computes the rank-space
projections ``B'_kᵀh``, ``A'_kᵀ(W₀h)`` once per *unique* term (terms are shared by relatives), gathers them
per individual, and hands them to the closed form of :mod:`es.perturb` (``_block_scores`` with ``c = 1``;
its "+" member is the individual). Any other head (the residual MLP) runs its Linear layers as a
population through :func:`es.population_forward`, as the ES path does. Individuals are materialized
(:func:`materialize`) only to write the elite into the trainer's head and to fold an elite into a new base.

**Memory bound.** A term is 3 int64 + 1 float64 (32 bytes): the population costs at most ``K·L·32`` bytes
for ``K`` individuals of at most ``L`` terms, plus one copy of the base. Scoring holds the projections of
the ``U ≤ K·L`` unique terms, ``O(U·r·Q·P)`` floats, and blocks of ``O(T·r·Q·P)`` per individual.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from .noise import full_noise, lowrank_factors, matrix_shape, param_id
from .perturb import _BaseTerms, _block_scores, _PairTerms
from .population import ParamSpec, population_forward

Key = tuple[int, int, int]  # (seed, generation, index)
DROP_BELOW = 1e-12  # |coefficient| at or below this is dropped (below float32 resolution of any weight)


@dataclass(frozen=True)
class Individual:
    """A chain of ``(key, coefficient)`` terms, sorted by key, one per key, no (near-)zero coefficient."""

    terms: tuple[tuple[Key, float], ...] = ()

    @staticmethod
    def of(mapping: Mapping[Key, float]) -> "Individual":
        return Individual(tuple(sorted((k, float(c)) for k, c in mapping.items() if abs(c) > DROP_BELOW)))

    def as_dict(self) -> dict[Key, float]:
        return dict(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def scaled(self, factor: float) -> "Individual":
        """``factor · Δ``."""
        return Individual.of({k: factor * c for k, c in self.terms})

    def plus(self, other: "Individual") -> "Individual":
        """``Δ₁ + Δ₂`` (equal keys add their coefficients)."""
        out = self.as_dict()
        for k, c in other.terms:
            out[k] = out.get(k, 0.0) + c
        return Individual.of(out)

    def minus(self, other: "Individual") -> "Individual":
        return self.plus(other.scaled(-1.0))

    def with_term(self, key: Key, coefficient: float) -> "Individual":
        return self.plus(Individual(((key, float(coefficient)),)))


def perturbed_specs(params: Mapping[str, Tensor]) -> tuple[ParamSpec, ...]:
    """Every parameter: low-rank noise for ndim >= 2, full noise for vectors (the engine's "full" layout)."""
    return tuple(ParamSpec(name, tuple(p.shape), "lowrank" if p.dim() >= 2 else "full", param_id(name))
                 for name, p in params.items())


class TermFactors:
    """Factors of unique terms, generated on demand from counters and cached (derived data, never saved).

    ``lowrank(name, keys) -> A [U, m, r], B [U, n, r]``; ``full(name, keys) -> [U, *shape]``."""

    def __init__(self, params: Mapping[str, Tensor], rank: int):
        self.params = dict(params)
        self.specs = {s.name: s for s in perturbed_specs(self.params)}
        self.rank = rank
        self._cache: dict[tuple[str, Key], object] = {}

    def _generate(self, name: str, keys: Sequence[Key]) -> None:
        spec, p = self.specs[name], self.params[name]
        missing = [k for k in dict.fromkeys(keys) if (name, k) not in self._cache]
        groups: dict[tuple[int, int], list[Key]] = {}
        for k in missing:
            groups.setdefault((k[0], k[1]), []).append(k)
        for (seed, generation), group in groups.items():
            pairs = torch.tensor([k[2] for k in group], dtype=torch.int64)
            if spec.kind == "lowrank":
                m, n = matrix_shape(spec.shape)
                A, B = lowrank_factors(seed, generation, spec.pid, pairs, m, n, self.rank, dtype=p.dtype,
                                       device=p.device)
                for i, k in enumerate(group):
                    self._cache[(name, k)] = (A[i], B[i])
            else:
                eps = full_noise(seed, generation, spec.pid, pairs, spec.shape, dtype=p.dtype, device=p.device)
                for i, k in enumerate(group):
                    self._cache[(name, k)] = eps[i]

    def lowrank(self, name: str, keys: Sequence[Key]) -> tuple[Tensor, Tensor]:
        self._generate(name, keys)
        return (torch.stack([self._cache[(name, k)][0] for k in keys]),
                torch.stack([self._cache[(name, k)][1] for k in keys]))

    def full(self, name: str, keys: Sequence[Key]) -> Tensor:
        self._generate(name, keys)
        return torch.stack([self._cache[(name, k)] for k in keys])

    def keep_only(self, keys: Iterable[Key]) -> None:
        """Drop the cached factors of terms no individual holds any more (bounds the cache by ``U``)."""
        alive = set(keys)
        self._cache = {nk: v for nk, v in self._cache.items() if nk[1] in alive}


def materialize(base: Mapping[str, Tensor], individual: Individual, factors: TermFactors) -> dict[str, Tensor]:
    """``θ₀ + Σ_k c_k E_k`` for every parameter (oracle, elite write-back and fold only)."""
    out = {name: t.detach().clone() for name, t in base.items()}
    if not individual.terms:
        return out
    keys = [k for k, _ in individual.terms]
    for name, spec in factors.specs.items():
        coef = torch.tensor([c for _, c in individual.terms], dtype=out[name].dtype, device=out[name].device)
        if spec.kind == "lowrank":
            A, B = factors.lowrank(name, keys)  # [T, m, r], [T, n, r]
            scaled = A * (coef / math.sqrt(factors.rank))[:, None, None]
            delta = scaled.permute(1, 0, 2).reshape(A.shape[1], -1) @ B.permute(1, 0, 2).reshape(B.shape[1], -1).T
            out[name] = out[name] + delta.reshape(spec.shape)
        else:
            eps = factors.full(name, keys).reshape(len(keys), -1)
            out[name] = out[name] + (coef[:, None] * eps).sum(0).reshape(spec.shape)
    return out


def _stacked(individuals: Sequence[Individual], index: Mapping[Key, int], pad: int, device) -> tuple[Tensor, Tensor]:
    """``idx [C, T]`` into the unique-term table (``pad`` = an all-zero slot) and ``coef [C, T]`` (0 padded)."""
    width = max(1, max(len(i) for i in individuals))
    idx = torch.full((len(individuals), width), pad, dtype=torch.int64)
    coef = torch.zeros(len(individuals), width, dtype=torch.float64)
    for row, ind in enumerate(individuals):
        for col, (k, c) in enumerate(ind.terms):
            idx[row, col], coef[row, col] = index[k], c
    return idx.to(device), coef.to(device)


def _head_factors(head: nn.Module, factors: TermFactors, keys: list[Key]) -> tuple[Tensor, Tensor] | None:
    """W-space factors ``A' [U, m, r]``, ``B' [U, n, r]`` of the unique terms, or None (no closed form)."""
    describe = getattr(head, "weight_noise", None)
    if describe is None:
        return None
    return describe(lambda name: factors.lowrank(name, keys))


SCORE_BLOCK_ELEMENTS = 1 << 21  # per gathered [C, T·r, Q, P] tensor of a block of individuals


@torch.no_grad()
def population_scores(head: nn.Module, factors: TermFactors, individuals: Sequence[Individual], h_q: Tensor,
                      h_d: Tensor, *, normalize: bool, eps: float = 1e-12) -> Tensor:
    """Scores ``[K, Q, P]`` of every individual on ``h_q [Q, n]``, ``h_d [Q, P, n]``; ``head`` holds the base.

    Closed form when the head has ``weight_noise`` (module docstring), else the population forward."""
    keys = list(dict.fromkeys(k for ind in individuals for k, _ in ind.terms))
    mapped = _head_factors(head, factors, keys) if keys else _head_factors(head, factors, [(0, 0, 0)])
    if mapped is None:
        return _forward_scores(head, factors, individuals, h_q, h_d, normalize=normalize)
    weight = head.weight
    n_q, pool, n = h_d.shape
    q = h_q @ weight.T
    d = h_d.reshape(n_q * pool, n) @ weight.T
    m = q.shape[-1]
    base = _BaseTerms(qd=torch.bmm(d.view(n_q, pool, m), q[:, :, None])[..., 0],
                      qq=(q * q).sum(-1)[:, None] if normalize else None,
                      dd=torch.linalg.vector_norm(d, dim=-1).square_().view(n_q, pool) if normalize else None)
    scores = torch.empty(len(individuals), n_q, pool, dtype=q.dtype, device=q.device)
    if not keys:
        scores[:] = _inverse_normalized(base) if normalize else base.qd
        return scores
    A, B = mapped  # [U, m, r], [U, n, r]
    rank = A.shape[-1]
    zero = lambda t: torch.cat((t, torch.zeros_like(t[:1])))  # noqa: E731  (slot U: padding)
    a_rows, b_rows = A.transpose(1, 2).reshape(-1, m), B.transpose(1, 2).reshape(-1, n)  # [U·r, m], [U·r, n]
    u_q = zero((b_rows @ h_q.T).view(len(keys), rank, n_q, 1))
    at_q = zero((a_rows @ q.T).view(len(keys), rank, n_q, 1))
    u_d = zero((b_rows @ h_d.reshape(-1, n).T).view(len(keys), rank, n_q, pool))
    at_d = zero((a_rows @ d.T).view(len(keys), rank, n_q, pool))
    A = zero(A)
    index = {k: i for i, k in enumerate(keys)}
    width = max(1, max(len(i) for i in individuals))
    block = max(1, SCORE_BLOCK_ELEMENTS // (width * rank * n_q * pool))
    for start in range(0, len(individuals), block):
        chunk = individuals[start:start + block]
        idx, coef = _stacked(chunk, index, len(keys), q.device)
        c = (coef / math.sqrt(rank)).to(q.dtype)[:, :, None, None, None]  # [C, T, 1, 1, 1]
        flat = lambda t: t.reshape(t.shape[0], -1, *t.shape[3:])  # noqa: E731  [C, T, r, Q, *] -> [C, T·r, Q, *]
        a_i = (A[idx] * c[..., 0]).permute(0, 2, 1, 3).reshape(len(chunk), m, -1)  # Ã_i [C, m, T·r]
        terms = _PairTerms(u_q=flat(u_q[idx]), at_q=flat(at_q[idx] * c), u_d=flat(u_d[idx]),
                           at_d=flat(at_d[idx] * c), gram=torch.bmm(a_i.transpose(1, 2), a_i))
        out = torch.empty(len(chunk), 2, n_q, pool, dtype=q.dtype, device=q.device)
        _block_scores(out, base, terms, c=1.0, eps=eps)  # "+" member = W₀ + Ã_i B̃_iᵀ
        scores[start:start + len(chunk)] = out[:, 0]
    return scores


def _inverse_normalized(base: _BaseTerms, eps: float = 1e-12) -> Tensor:
    """Cosine of the base head alone (every individual with an empty chain)."""
    return base.qd * base.qq.clamp_min(eps * eps).rsqrt() * base.dd.clamp_min(eps * eps).rsqrt()


class _ChainChunk:
    """A population chunk for :func:`population_forward` whose "pair" ``i`` is individual ``i``: factors
    ``[c_k A_k]_k``, ``[B_k]_k`` stacked to rank ``T·r`` and ``sigma = sqrt(T·r)``, so its "+" member is
    ``θ₀ + Σ_k c_k E_k`` exactly (bias noise ``Σ_k c_k ε_k / sigma``)."""

    def __init__(self, head: nn.Module, factors: TermFactors, individuals: Sequence[Individual]):
        params = dict(head.named_parameters())
        specs = perturbed_specs(params)
        self.population = SimpleNamespace(params=params, specs=specs)
        self.num_members = 2 * len(individuals)
        keys = list(dict.fromkeys(k for ind in individuals for k, _ in ind.terms)) or [(0, 0, 0)]
        index = {k: i for i, k in enumerate(keys)}
        some = next(iter(params.values()))
        idx, coef = _stacked(individuals, index, len(keys), some.device)
        self.sigma = math.sqrt(idx.shape[1] * factors.rank)
        self._noise: dict[str, object] = {}
        for spec in specs:
            if spec.kind == "lowrank":
                A, B = factors.lowrank(spec.name, keys)
                A, B = torch.cat((A, torch.zeros_like(A[:1]))), torch.cat((B, torch.zeros_like(B[:1])))
                c = (coef / math.sqrt(factors.rank)).to(A.dtype)[:, :, None, None]
                stack = lambda t: t.permute(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1)  # noqa: E731
                self._noise[spec.name] = (stack(A[idx] * c), stack(B[idx]))
            else:
                eps = factors.full(spec.name, keys).reshape(len(keys), -1)
                eps = torch.cat((eps, torch.zeros_like(eps[:1])))
                self._noise[spec.name] = (coef.to(eps.dtype)[:, :, None] * eps[idx]).sum(1) / self.sigma

    def factors(self, name: str) -> tuple[Tensor, Tensor]:
        return self._noise[name]  # type: ignore[return-value]

    def full_noise(self, name: str) -> Tensor:
        return self._noise[name]  # type: ignore[return-value]


def _forward_scores(head: nn.Module, factors: TermFactors, individuals: Sequence[Individual], h_q: Tensor,
                    h_d: Tensor, *, normalize: bool, block: int = 4) -> Tensor:
    """Population forward of heads without a closed form, ``block`` individuals at a time."""
    out = []
    for start in range(0, len(individuals), block):
        chunk = _ChainChunk(head, factors, individuals[start:start + block])
        q = population_forward(head, chunk, h_q, shared_inputs=True)[0::2]  # [C, Q, m]
        d = population_forward(head, chunk, h_d, shared_inputs=True)[0::2]  # [C, Q, P, m]
        if normalize:
            q, d = nn.functional.normalize(q, dim=-1), nn.functional.normalize(d, dim=-1)
        out.append(torch.einsum("cqpm,cqm->cqp", d, q))
    return torch.cat(out)


def fold(base: Mapping[str, Tensor], individuals: Sequence[Individual], elite: int, factors: TermFactors,
         max_terms: int) -> tuple[dict[str, Tensor], list[Individual], list[int]]:
    """Fold ``individuals[elite]`` into a new base: ``θ₀' = θ_elite`` and every ``Δ_i' = Δ_i − Δ_elite``
    (shared ancestors cancel exactly). Returns the new base, the re-expressed individuals and the indices of
    those still longer than ``max_terms`` (the caller replaces them)."""
    new_base = materialize(base, individuals[elite], factors)
    shift = individuals[elite]
    moved = [ind.minus(shift) for ind in individuals]
    return new_base, moved, [i for i, ind in enumerate(moved) if len(ind) > max_terms]


def pack(individuals: Sequence[Individual]) -> dict[str, Tensor]:
    """Checkpoint form: ``keys int64 [ΣT, 3]``, ``coefs float64 [ΣT]``, ``lengths int64 [K]``."""
    terms = [t for ind in individuals for t in ind.terms]
    return {"keys": torch.tensor([k for k, _ in terms], dtype=torch.int64).reshape(-1, 3),
            "coefs": torch.tensor([c for _, c in terms], dtype=torch.float64),
            "lengths": torch.tensor([len(ind) for ind in individuals], dtype=torch.int64)}


def unpack(packed: Mapping[str, Tensor]) -> list[Individual]:
    keys = [tuple(int(v) for v in row) for row in packed["keys"].tolist()]
    coefs = packed["coefs"].tolist()
    out, start = [], 0
    for length in packed["lengths"].tolist():
        out.append(Individual(tuple((keys[i], float(coefs[i])) for i in range(start, start + length))))
        start += length
    return out
