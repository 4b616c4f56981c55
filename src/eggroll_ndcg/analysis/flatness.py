"""How sharp a solution is: NDCG@10 under random weight noise of growing relative size.

For a relative scale ε and a draw d, every learned parameter W_p is replaced by

    W_p + ε ||W_p||_F · Z_p / ||Z_p||_F,    Z_p ~ N(0, I) of W_p's shape (a generator seeded by (seed, ε, d))

so the noise has Frobenius norm exactly ε ||W_p||_F in a uniformly random direction. The curve is the mean
(and standard deviation) over `draws` draws of validation NDCG@10 (`judges.own_figures`) at each ε; at
ε = 0 no noise is drawn and the value is the run's own validation figure. A flatter solution loses less as
ε grows. The reference system's "flat minima" explanation predicts ES's curve above the gradient's.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from .judges import own_figures
from .runs import Run, State

DEFAULT_SCALES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def perturb(state: State, params: tuple[str, ...], scale: float, generator: torch.Generator) -> State:
    """`state` with relative-norm noise of size `scale` on each of `params` (module docstring)."""
    if scale == 0.0:
        return dict(state)
    out = dict(state)
    for name in params:
        weight = state[name]
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float64)
        norm = float(noise.norm())
        if norm > 0:
            out[name] = weight + (scale * float(weight.double().norm()) / norm * noise).to(weight.dtype)
    return out


def flatness_curve(run: Run, state: State, *, scales: tuple[float, ...] = DEFAULT_SCALES, draws: int = 5,
                   seed: int = 0, split: str = "val") -> dict[str, Any]:
    """{"scale": [...], "mean": [...], "std": [...]} of `split` NDCG@10 under noise (module docstring)."""
    params = run.param_names
    means, stds = [], []
    for index, scale in enumerate(scales):
        n = 1 if scale == 0.0 else draws
        values = []
        for draw in range(n):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * 1009 + draw)
            values.append(own_figures(run.head(perturb(state, params, scale, generator)), run, (split,))[split])
        means.append(sum(values) / len(values))
        stds.append(statistics.pstdev(values) if len(values) > 1 else 0.0)
    return {"scale": list(scales), "mean": means, "std": stds, "draws": draws, "split": split}
