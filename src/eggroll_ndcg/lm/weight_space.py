"""Where ES and GRPO moved a language model's weights: per-layer share, spectrum, cosines, linear mode
connectivity and robustness to weight noise. Pure functions on state dicts ({name: Tensor}).

For the update ΔW_p = W_p(tuned) - W_p(base) of every floating parameter p (matrices [m, n], vectors [m]):

    share_p      = ||ΔW_p||_F² / Σ_q ||ΔW_q||_F²      (sums to 1 over the parameters; 0/0 -> all nan)
    group share  = Σ_{p in group} share_p            groups: embedding, attention, mlp, unembedding, norm
    stable rank  = Σ s_i² / s_1²  (1 for a rank-one update), effective rank exp(H(s / Σ s))
    cos_p(a, b)  = <ΔW_a, ΔW_b>_F / (||ΔW_a||_F ||ΔW_b||_F) from the common base (nan when one is zero)
    path         W(t) = (1 - t) W_a + t W_b, f(t) = evaluate(W(t)), barrier = max_t [(1-t) f(0) + t f(1) - f(t)]
    robustness   W_p + ε ||W_p||_F Z_p / ||Z_p||_F, Z ~ N(0, I), mean ± sd of evaluate over draws per ε

The spectrum, rank, interpolation, barrier and noise formulas are the analysis package's (analysis/spectra.py,
connectivity.py, flatness.py), imported, not repeated; here they run on a transformers state dict and group
the parameters by the role of the layer (`layer_group`).
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from ..analysis.connectivity import barrier, interpolate
from ..analysis.flatness import perturb
from ..analysis.spectra import effective_rank, singular_values, stable_rank

State = dict[str, Tensor]
GROUPS = ("embedding", "attention", "mlp", "unembedding", "norm")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")


def layer_group(name: str) -> str:
    """The role of a transformers parameter from its name: "embedding" (token/position embeddings),
    "attention" (q/k/v/o projections and their biases), "mlp" (gate/up/down, fc), "unembedding" (lm_head),
    "norm" (every normalization weight); anything else is "other"."""
    lowered = name.lower()
    if "norm" in lowered or re.search(r"(^|\.)ln_", lowered):
        return "norm"
    if "lm_head" in lowered or "unembed" in lowered:
        return "unembedding"
    if "embed" in lowered or "wte" in lowered or "wpe" in lowered:
        return "embedding"
    if "attn" in lowered or "attention" in lowered or re.search(r"\.(q|k|v|o)_proj\.", lowered):
        return "attention"
    if "mlp" in lowered or re.search(r"\.(gate|up|down)_proj\.|\.fc\d?\.", lowered):
        return "mlp"
    return "other"


def layer_index(name: str) -> int | None:
    """The decoder block a parameter belongs to ("model.layers.3.mlp.up_proj.weight" -> 3), else None."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def _parameters(base: State, tuned: State) -> list[str]:
    """Floating tensors present in both state dicts with equal shapes, in `base` order."""
    names = [n for n, t in base.items() if t.is_floating_point() and n in tuned]
    for name in names:
        if tuned[name].shape != base[name].shape:
            raise ValueError(f"{name}: shapes differ ({tuple(base[name].shape)} vs {tuple(tuned[name].shape)})")
    return names


def deltas(base: State, tuned: State) -> dict[str, Tensor]:
    """{name: ΔW = tuned - base} in float64 on the CPU, for every shared floating parameter."""
    return {n: tuned[n].detach().cpu().double() - base[n].detach().cpu().double() for n in _parameters(base, tuned)}


def update_share(base: State, tuned: State) -> dict[str, float]:
    """{parameter: share of the squared update} (sums to 1; nan everywhere when nothing moved)."""
    squares = {n: float((d ** 2).sum()) for n, d in deltas(base, tuned).items()}
    total = sum(squares.values())
    return {n: (v / total if total > 0 else math.nan) for n, v in squares.items()}


def group_share(share: dict[str, float]) -> dict[str, float]:
    """{group: Σ share} over `layer_group` of every parameter (groups without parameters omitted)."""
    out: dict[str, float] = {}
    for name, value in share.items():
        group = layer_group(name)
        out[group] = out.get(group, 0.0) + value
    return {g: out[g] for g in (*GROUPS, "other") if g in out}


def layer_share(share: dict[str, float]) -> dict[str, float]:
    """{decoder block index (as a string, in order): Σ share of its parameters}."""
    out: dict[int, float] = {}
    for name, value in share.items():
        index = layer_index(name)
        if index is not None:
            out[index] = out.get(index, 0.0) + value
    return {str(i): out[i] for i in sorted(out)}


def update_spectra(base: State, tuned: State, *, keep_values: int = 16) -> dict[str, dict[str, Any]]:
    """Per matrix parameter (2-d): group, block, ||ΔW||_F, the top `keep_values` singular values of ΔW,
    stable rank and effective rank (nan for a zero update), and the largest possible rank min(m, n)."""
    report: dict[str, dict[str, Any]] = {}
    for name, delta in deltas(base, tuned).items():
        if delta.dim() != 2:
            continue
        s = singular_values(delta)
        report[name] = {"group": layer_group(name), "layer": layer_index(name), "norm": float(delta.norm()),
                        "singular_values": s[:keep_values].tolist(), "stable_rank": stable_rank(s),
                        "effective_rank": effective_rank(s), "max_rank": int(s.numel())}
    return report


def _cosine(dot: float, na: float, nb: float) -> float:
    return dot / math.sqrt(na * nb) if na > 0 and nb > 0 else math.nan


def update_cosines(base: State, a: State, b: State) -> dict[str, Any]:
    """cos(ΔW_a, ΔW_b) per parameter ("parameters"), per group and per block of the concatenated updates
    ("groups", "layers") and over everything ("all"); nan where either update is zero."""
    da, db = deltas(base, a), deltas(base, b)
    per: dict[str, float] = {}
    sums: dict[tuple[str, str], list[float]] = {}
    for name in da:
        if name not in db:
            continue
        x, y = da[name].flatten(), db[name].flatten()
        dot, nx, ny = float(x @ y), float(x @ x), float(y @ y)
        per[name] = _cosine(dot, nx, ny)
        index = layer_index(name)
        keys = [("groups", layer_group(name)), ("all", "all")] + ([("layers", str(index))] if index is not None else [])
        for key in keys:
            acc = sums.setdefault(key, [0.0, 0.0, 0.0])
            acc[0] += dot
            acc[1] += nx
            acc[2] += ny
    out: dict[str, Any] = {"parameters": per, "groups": {}, "layers": {}}
    for (kind, key), (dot, nx, ny) in sums.items():
        if kind == "all":
            out["all"] = _cosine(dot, nx, ny)
        else:
            out[kind][key] = _cosine(dot, nx, ny)
    out["layers"] = {k: out["layers"][k] for k in sorted(out["layers"], key=int)}
    out.setdefault("all", math.nan)
    return out


def interpolation_path(a: State, b: State, evaluate: Callable[[State], float], points: int = 11) -> dict[str, Any]:
    """f(t) = evaluate((1 - t) a + t b) at `points` evenly spaced t in [0, 1] (non-floating entries from a;
    t = 0 and 1 are the endpoints exactly) and the barrier height (module docstring)."""
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    params = tuple(_parameters(a, b))
    ts = [i / (points - 1) for i in range(points)]
    values = [float(evaluate(interpolate(a, b, t, params))) for t in ts]
    return {"t": ts, "value": values, "barrier": barrier(values, ts)}


def perturbation_robustness(state: State, evaluate: Callable[[State], float], scales: Iterable[float] = (0.0, 0.01, 0.03, 0.1),
                            draws: int = 3, seed: int = 0, *, params: tuple[str, ...] | None = None) -> dict[str, Any]:
    """{"scale", "mean", "std", "drop"}: evaluate under relative Gaussian noise on `params` (default every
    floating parameter), mean and population sd over `draws` seeded draws per scale (one, noiseless, at 0);
    drop = value at scale 0 (or the first scale) minus the mean."""
    scales = list(scales)
    params = params if params is not None else tuple(n for n, t in state.items() if t.is_floating_point())
    means, stds = [], []
    for index, scale in enumerate(scales):
        values = []
        for draw in range(1 if scale == 0.0 else draws):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * 1009 + draw)
            values.append(float(evaluate(perturb(state, params, scale, generator))))
        means.append(statistics.fmean(values))
        stds.append(statistics.pstdev(values) if len(values) > 1 else 0.0)
    reference = means[0]
    return {"scale": scales, "mean": means, "std": stds, "drop": [reference - m for m in means], "draws": draws}


def footprint(base: State, tuned: State) -> dict[str, Any]:
    """One tuned model's update: per-parameter share, group and block shares, spectra, ||ΔW|| overall."""
    share = update_share(base, tuned)
    spectra = update_spectra(base, tuned)
    total = math.sqrt(sum(float((d ** 2).sum()) for d in deltas(base, tuned).values()))
    return {"norm": total, "share": share, "group_share": group_share(share), "layer_share": layer_share(share),
            "spectra": spectra}


def plots(analysis: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Per-layer PNGs from `analysis` = {"footprints": {method: footprint}, "cosines": update_cosines result,
    "interpolation": path, "robustness": {method: curve}} (any key may be missing); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    prints = analysis.get("footprints", {})
    if prints:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        width = 0.8 / len(prints)
        for k, (method, fp) in enumerate(prints.items()):
            groups = list(GROUPS)
            axes[0].bar([i + k * width for i in range(len(groups))], [fp["group_share"].get(g, 0.0) for g in groups],
                        width, label=method)
            layers = list(fp["layer_share"])
            axes[1].plot([int(i) for i in layers], [fp["layer_share"][i] for i in layers], marker="o", label=method)
            names = [n for n in fp["spectra"]]
            axes[2].plot(range(len(names)), [fp["spectra"][n]["stable_rank"] for n in names], marker=".", label=method)
        axes[0].set_xticks([i + 0.4 - width / 2 for i in range(len(GROUPS))], GROUPS)
        axes[0].set_title("share of ||ΔW||² by group")
        axes[1].set_title("share of ||ΔW||² by decoder block")
        axes[1].set_xlabel("block")
        axes[2].set_title("stable rank of ΔW per matrix (model order)")
        axes[2].set_xlabel("matrix index")
        for ax in axes:
            ax.legend()
        save(fig, "update_share_and_rank.png")
    cos = analysis.get("cosines")
    if cos and cos.get("layers"):
        fig, ax = plt.subplots(figsize=(6, 4))
        layers = list(cos["layers"])
        ax.plot([int(i) for i in layers], [cos["layers"][i] for i in layers], marker="o")
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_title(f"cos(ΔW_ES, ΔW_GRPO) per block (all: {cos.get('all', math.nan):.3f})")
        ax.set_xlabel("block")
        save(fig, "update_cosine_by_layer.png")
    path = analysis.get("interpolation")
    if path:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(path["t"], path["value"], marker="o")
        ax.set_title(f"ES (t=0) -> GRPO (t=1), barrier {path['barrier']:.3f}")
        ax.set_xlabel("t")
        ax.set_ylabel(path.get("label", "value"))
        save(fig, "interpolation.png")
    robust = analysis.get("robustness", {})
    if robust:
        fig, ax = plt.subplots(figsize=(6, 4))
        for method, curve in robust.items():
            ax.errorbar(curve["scale"], curve["mean"], yerr=curve["std"], marker="o", capsize=3, label=method)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlabel("relative noise ε")
        ax.set_title("reward under weight noise")
        ax.legend()
        save(fig, "robustness.png")
    return written
