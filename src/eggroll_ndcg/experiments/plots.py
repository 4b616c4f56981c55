"""PNG learning curves of a comparison, read back from each run's log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_evals(log_path: Path) -> list[dict]:
    """The evaluation records of one run's log, in step order."""
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("event") == "eval"]


def plot_learning_curves(runs_dir: Path, out_dir: Path, methods: tuple[str, ...], metric: str) -> list[Path]:
    """learning_curves.png (train and val `metric` against steps and against wall-clock seconds) and
    train_val_gap.png (train minus val against steps), one colour per method, one line per seed run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {
        method: [read_evals(log) for log in sorted((runs_dir / method).glob("seed-*/log.jsonl"))]
        for method in methods
    }
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    gap_fig, gap_ax = plt.subplots(figsize=(6.5, 4.5))
    for index, (method, runs) in enumerate(curves.items()):
        colour = colours[index % len(colours)]
        for run_index, evals in enumerate(runs):
            if not evals:
                continue
            steps = [r["step"] for r in evals]
            seconds = [r["elapsed"] for r in evals]
            val = [r[f"val/{metric}"] for r in evals]
            train = [r[f"train/{metric}"] for r in evals]
            label = method if run_index == 0 else None
            axes[0].plot(steps, val, color=colour, label=label)
            axes[0].plot(steps, train, color=colour, linestyle=":", alpha=0.7)
            axes[1].plot(seconds, val, color=colour, label=label)
            axes[1].plot(seconds, train, color=colour, linestyle=":", alpha=0.7)
            gap_ax.plot(steps, [t - v for t, v in zip(train, val)], color=colour, label=label)
    for ax, xlabel in zip(axes, ("step", "wall-clock seconds (training only)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"val (solid) and train (dotted) {metric}")
    axes[1].set_title("against wall-clock")
    axes[0].legend(fontsize=8)
    gap_ax.set_xlabel("step")
    gap_ax.set_ylabel(f"train - val {metric}")
    gap_ax.set_title("train-val gap")
    gap_ax.axhline(0, color="grey", linewidth=0.8)
    gap_ax.grid(alpha=0.3)
    gap_ax.legend(fontsize=8)
    paths = [out_dir / "learning_curves.png", out_dir / "train_val_gap.png"]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=110)
    gap_fig.tight_layout()
    gap_fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    plt.close(gap_fig)
    return paths
