"""ClipUp (Toklu et al. 2020, "ClipUp: a simple and powerful optimizer for distribution-based policy
evolution") as a ``torch.optim.Optimizer``.

Per parameter group, with ``grad`` the descent direction the engine writes (``-g``):

    v <- momentum · v - lr · grad / ||grad||          (norms are global over the group's parameters)
    v <- v · min(1, max_speed / ||v||)
    p <- p · (1 - lr · weight_decay) + v          (decoupled weight decay, as in AdamW; 0 by default)

The step length is at most ``max_speed`` whatever the scale of the fitness or of sigma. The paper's
advice: ``lr ≈ max_speed / 2``, momentum 0.9. ``momentum=0`` is honoured exactly: the old velocity is
dropped (not multiplied by 0, which would keep a NaN), so each step is ``-lr · grad / ||grad||`` clipped.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class ClipUp(Optimizer):
    """ClipUp; ``lr > 0``, ``max_speed > 0`` (default ``2 · lr``), ``0 <= momentum <= 1``, ``weight_decay >= 0``."""

    def __init__(
        self, params, lr: float, max_speed: float | None = None, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        if lr <= 0:
            raise ValueError("lr must be positive")
        max_speed = 2.0 * lr if max_speed is None else max_speed
        if max_speed <= 0:
            raise ValueError(f"max_speed must be positive, got {max_speed}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, max_speed=max_speed, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                if group["momentum"] == 0:
                    v.zero_()
                else:
                    v.mul_(group["momentum"])
                if grad_norm > 0:
                    v.add_(p.grad / grad_norm.to(p.dtype), alpha=-group["lr"])
                velocities.append(v)
            speed = torch.sqrt(sum((v.double() ** 2).sum() for v in velocities))
            if speed > group["max_speed"]:
                for v in velocities:
                    v.mul_((group["max_speed"] / speed).to(v.dtype))
            for p, v in zip(params, velocities):
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(v)
        return loss
