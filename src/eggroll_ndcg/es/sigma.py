"""Sigma control: fixed schedules and an adaptive rule driven by a normalized statistic.

Every controller answers ``sigma(step)`` and may ``observe(step, fitness)`` after each step (schedules
ignore it). State round-trips through ``state_dict()`` (plain JSON-able numbers; the adaptive rule also
counts its observations, which the engine cross-checks against its step on load).

Adaptive rule (:class:`AdaptiveSigma`)
--------------------------------------
Per antithetic pair split the fitness into its odd and even parts:

    o_j = (f⁺_j - f⁻_j) / 2   ≈ sigma gᵀE_j                     (first order: the slope signal)
    e_j = (f⁺_j + f⁻_j) / 2   ≈ f(W) + sigma²/2 E_jᵀ H E_j         (second order: curvature)

Two normalized statistics (both invariant to ``f -> a f + b``, ``a != 0``):

* signal fraction ``phi = #{j : o_j != 0 or e_j != median(e)} / J``: share of pairs in which the
  perturbation changed anything. On a quantized fitness (NDCG over a pool) a too small sigma changes no
  ranking and ``phi -> 0``. (The even part counts too: at the optimum of a symmetric problem ``o_j = 0``
  for every pair, yet sigma is not too small when the ``e_j`` still differ.)
* nonlinearity ratio ``rho = std_j(e_j) / rms_j(o_j)`` ~ ``sigma ||H|| / ||g||``: near 0 while the
  perturbation stays in the linear regime, near 1 when members are as good as random draws
  (``f⁺`` and ``f⁻`` independent gives ``var e = var o``).

Update (a 1/5th-success-style multiplicative rule in log sigma):

    u = +1                                  if phi < min_signal   (no signal: widen the search)
    u = clip(log(target_ratio / rho), -1, 1) otherwise             (too nonlinear: shrink, too linear: widen)
    sigma <- clip(sigma · exp(rate · u), lower, upper)

The fixed point ``rho = target_ratio`` (0 < target < 1) sits strictly between "no signal" and "pure
noise", so on a problem whose best sigma lies inside the bounds the rule does not ratchet to a bound
(unlike a rule on raw fitness variance, which grows with sigma without limit). It needs all members of a
step to be scored on the same data (otherwise per-member evaluation noise reads as nonlinearity).
"""

from __future__ import annotations

import math

from torch import Tensor


class SigmaSchedule:
    """Base class: ``sigma(step)``; ``observe`` is a no-op; no state."""

    def sigma(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, step: int, fitness: Tensor) -> dict[str, float]:
        """Called by the engine after each step with the NaN-free fitness ``[N]``; returns stats."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ConstantSigma(SigmaSchedule):
    def __init__(self, value: float) -> None:
        self.value = float(value)

    def sigma(self, step: int) -> float:
        return self.value


def _progress(step: int, steps: int) -> float:
    return min(max(step, 0), steps) / max(steps, 1)


class LinearSigma(SigmaSchedule):
    """``start + (end - start) · min(t/steps, 1)``."""

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def sigma(self, step: int) -> float:
        return self.start + (self.end - self.start) * _progress(step, self.steps)


class CosineSigma(SigmaSchedule):
    """``end + (start - end) · (1 + cos(pi · min(t/steps, 1))) / 2``."""

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def sigma(self, step: int) -> float:
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * _progress(step, self.steps)))


class ExponentialSigma(SigmaSchedule):
    """Geometric: ``start · (end/start) ^ min(t/steps, 1)``."""

    def __init__(self, start: float, end: float, steps: int) -> None:
        if start <= 0 or end <= 0:
            raise ValueError("exponential schedule needs positive start and end")
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def sigma(self, step: int) -> float:
        return self.start * (self.end / self.start) ** _progress(step, self.steps)


def pair_statistics(fitness: Tensor) -> tuple[float, float]:
    """``(phi, rho)`` of a NaN-free fitness ``[N]`` (see the module docstring); ``rho = inf`` without signal."""
    f = fitness.double()
    odd = (f[0::2] - f[1::2]) / 2
    even = (f[0::2] + f[1::2]) / 2
    phi = float(((odd != 0) | (even != even.median())).double().mean())
    rms_odd = float(odd.pow(2).mean().sqrt())
    std_even = float((even - even.mean()).pow(2).mean().sqrt())
    rho = std_even / rms_odd if rms_odd > 0 else math.inf
    return phi, rho


class AdaptiveSigma(SigmaSchedule):
    """Multiplicative sigma control toward ``rho = target_ratio`` with a signal-fraction guard."""

    def __init__(
        self,
        initial: float,
        *,
        lower: float,
        upper: float,
        target_ratio: float = 0.5,
        min_signal: float = 0.5,
        rate: float = 0.2,
    ) -> None:
        if not 0 < lower <= initial <= upper:
            raise ValueError(f"need 0 < lower <= initial <= upper, got {lower}, {initial}, {upper}")
        if not 0 < target_ratio < 1:
            raise ValueError("target_ratio must lie in (0, 1): 1 is what pure noise gives")
        self.lower, self.upper = float(lower), float(upper)
        self.target_ratio, self.min_signal, self.rate = float(target_ratio), float(min_signal), float(rate)
        self.current = float(initial)
        self.observed: int | None = 0  # observations so far (None: restored from a state that had no count)

    def sigma(self, step: int) -> float:
        return self.current

    def observe(self, step: int, fitness: Tensor) -> dict[str, float]:
        if self.observed is not None:
            self.observed += 1
        phi, rho = pair_statistics(fitness)
        if phi < self.min_signal:
            u = 1.0
        else:
            u = max(-1.0, min(1.0, math.log(self.target_ratio / max(rho, 1e-300))))
        self.current = min(self.upper, max(self.lower, self.current * math.exp(self.rate * u)))
        return {"signal_fraction": phi, "nonlinearity_ratio": rho}

    def state_dict(self) -> dict:
        """``current`` sigma and ``observed`` (how many steps it has seen: the engine checks it against its
        step on load; absent after loading an older state without it)."""
        state: dict = {"current": self.current}
        if self.observed is not None:
            state["observed"] = self.observed
        return state

    def load_state_dict(self, state: dict) -> None:
        self.current = float(state["current"])
        self.observed = int(state["observed"]) if state.get("observed") is not None else None


def as_controller(sigma: float | SigmaSchedule) -> SigmaSchedule:
    """A float becomes :class:`ConstantSigma`; a controller passes through."""
    return sigma if isinstance(sigma, SigmaSchedule) else ConstantSigma(float(sigma))
