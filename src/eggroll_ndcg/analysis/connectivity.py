"""How two solutions relate: cosine of their updates, and linear mode connectivity.

Update cosine, per learned parameter p: cos(ΔW_a, ΔW_b) = <ΔW_a, ΔW_b>_F / (||ΔW_a||_F ||ΔW_b||_F), with
ΔW = W - W0 from the common base W0 (both runs must start from the same head: same kind, shapes, buffers).

Linear path: W(t) = (1 - t) W_a + t W_b on every learned parameter (buffers such as a frozen basis are
shared and kept), at `points` evenly spaced t in [0, 1]; each point is scored on validation and test
queries by `judges.own_figures`, so t = 0 and t = 1 reproduce the runs' own metrics.json figures exactly.
The base -> solution path is the same with W_a = W0.

Barrier height of a path with values f(t) (higher is better):

    barrier = max_t [ (1 - t) f(0) + t f(1) - f(t) ]   (>= 0; 0 when f never dips below the chord)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .judges import own_figures
from .runs import Run, State


def comparable(a: Run, b: Run) -> str | None:
    """Why two runs cannot be interpolated (other data, head or buffers), or None when they can."""
    if a.data is not b.data:
        return "trained on different data (task, encoder, splits or pools differ)"
    if a.config.head != b.config.head or set(a.best) != set(b.best):
        return f"different heads ({a.config.head} vs {b.config.head})"
    params = set(a.param_names)
    for name, tensor in a.best.items():
        if tensor.shape != b.best[name].shape:
            return f"shapes of {name} differ"
        if name not in params and not torch.equal(tensor, b.best[name]):
            return f"buffer {name} differs"
    if any(not torch.equal(a.base[n], b.base[n]) for n in a.param_names):
        return "different base heads W0 (another head seed)"
    return None


def update_cosines(a: Run, b: Run) -> dict[str, float]:
    """{parameter: cos(ΔW_a, ΔW_b)} and "all" (the concatenated update); nan where an update is zero."""
    out, dot_all, na_all, nb_all = {}, 0.0, 0.0, 0.0
    for name in a.param_names:
        da = (a.best[name] - a.base[name]).double().flatten()
        db = (b.best[name] - b.base[name]).double().flatten()
        dot, na, nb = float(da @ db), float(da @ da), float(db @ db)
        out[name] = dot / math.sqrt(na * nb) if na > 0 and nb > 0 else math.nan
        dot_all, na_all, nb_all = dot_all + dot, na_all + na, nb_all + nb
    out["all"] = dot_all / math.sqrt(na_all * nb_all) if na_all > 0 and nb_all > 0 else math.nan
    return out


def interpolate(state_a: State, state_b: State, t: float, params: tuple[str, ...]) -> State:
    """(1 - t) a + t b on `params`; every other entry (buffers) from `a`. t = 0 and t = 1 return the
    endpoints' tensors exactly."""
    out = dict(state_a)
    for name in params:
        if t == 0.0:
            out[name] = state_a[name]
        elif t == 1.0:
            out[name] = state_b[name]
        else:
            out[name] = (1.0 - t) * state_a[name] + t * state_b[name]
    return out


def barrier(values: list[float], ts: list[float]) -> float:
    """max_t [(1 - t) f(0) + t f(1) - f(t)] of a path's values (module docstring)."""
    f0, f1 = values[0], values[-1]
    return max((1.0 - t) * f0 + t * f1 - v for t, v in zip(ts, values))


def linear_path(run: Run, state_a: State, state_b: State, *, points: int = 21,
                splits: tuple[str, ...] = ("val", "test")) -> dict[str, Any]:
    """NDCG@10 on `splits` along W(t) from `state_a` to `state_b` (heads of `run`'s kind and data), with
    each split's barrier height."""
    ts = [i / (points - 1) for i in range(points)] if points > 1 else [0.0]
    curves: dict[str, list[float]] = {split: [] for split in splits}
    params = run.param_names
    for t in ts:
        figures = own_figures(run.head(interpolate(state_a, state_b, t, params)), run, splits)
        for split in splits:
            curves[split].append(figures[split])
    return {"t": ts, **{split: curves[split] for split in splits},
            **{f"barrier/{split}": barrier(curves[split], ts) for split in splits}}


def update_norm(state: State, base: State, params: tuple[str, ...]) -> float:
    """||W - W0||_F over all learned parameters."""
    return math.sqrt(sum(float(((state[n] - base[n]).double() ** 2).sum()) for n in params))


