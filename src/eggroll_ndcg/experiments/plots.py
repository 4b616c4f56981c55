"""PNG learning curves of a comparison, read back from each run's log.jsonl.

Run folders (see compare.py): `runs/<method>/sweep-<i>` for the i-th sweep configuration (first seed, first
fold) and `runs/<method>/seed-<s>[-fold-<f>]` for the chosen configuration's runs. The run of the first seed
(and fold) is the chosen sweep folder itself when compare reuses it, so it has no seed folder:
`discover_runs` finds it (from the chosen sweep index, or from the folders' config.json).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

SEED_FOLDER = re.compile(r"^seed-(-?\d+)(?:-fold-(\d+))?$")
SWEEP_FOLDER = re.compile(r"^sweep-(\d+)$")
RUN_FIELDS = ("seed", "fold", "output_dir")  # config fields that differ between runs of one configuration
# Method pairs whose curves coincide on collections with one positive per query (ListNet's softmax
# cross-entropy over the graded targets is then InfoNCE): the second is drawn dashed and says so.
COINCIDING = (("infonce", "listnet"),)


@dataclass(frozen=True)
class RunLog:
    """One run to draw: its method, the label of its seed (and fold), and its log file."""

    method: str
    label: str
    log: Path


@dataclass(frozen=True)
class LineStyle:
    """How a method is drawn: colour, val and train line styles, legend label."""

    colour: str
    val: str
    train: str
    label: str


def read_evals(log_path: Path) -> list[dict]:
    """The evaluation records of one run's log, in step order."""
    records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("event") == "eval"]


def run_label(seed: Any, fold: Any) -> str:
    """The seed folder name of a (seed, fold) run: "seed-0", "seed-1-fold-2"."""
    return f"seed-{seed}" + (f"-fold-{fold}" if fold is not None else "")


def _read_config(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RUN_FIELDS}


def infer_chosen_sweep(method_dir: Path) -> int | None:
    """The chosen sweep index of a method, read from the run folders' config.json: the sweep folder whose
    settings (all but seed, fold, output_dir) equal the seed runs'; the only sweep folder when there is one
    and no seed run says otherwise. None when that cannot be told."""
    sweeps = {int(m.group(1)): p for p in method_dir.glob("sweep-*") if (m := SWEEP_FOLDER.match(p.name))}
    seeds = [_read_config(p) for p in method_dir.glob("seed-*") if SEED_FOLDER.match(p.name)]
    chosen_settings = [_settings(c) for c in seeds if c is not None]
    if not chosen_settings:
        return next(iter(sweeps)) if len(sweeps) == 1 else None
    matches = [i for i, folder in sorted(sweeps.items())
               if (config := _read_config(folder)) is not None and _settings(config) in chosen_settings]
    return matches[0] if len(matches) == 1 else None


def _seed_sort_key(label: str) -> tuple:
    match = SEED_FOLDER.match(label)
    if match is None:
        return (1, label)
    return (0, int(match.group(1)), int(match.group(2) or -1))


def method_runs(method_dir: Path, method: str, chosen_index: int | None = None) -> list[RunLog]:
    """Every run of the chosen configuration of one method: each seed folder with a log, and the chosen sweep
    folder (`chosen_index`, else `infer_chosen_sweep`) under its own seed's label unless that seed has its
    own folder too. Sorted by seed, then fold."""
    runs = {p.name: RunLog(method, p.name, p / "log.jsonl") for p in method_dir.glob("seed-*")
            if SEED_FOLDER.match(p.name) and (p / "log.jsonl").is_file()}
    index = chosen_index if chosen_index is not None else infer_chosen_sweep(method_dir)
    sweep = method_dir / f"sweep-{index}"
    if index is not None and (sweep / "log.jsonl").is_file():
        config = _read_config(sweep) or {}
        label = run_label(config["seed"], config.get("fold")) if "seed" in config else sweep.name
        if label not in runs:
            runs[label] = RunLog(method, label, sweep / "log.jsonl")
    elif method_dir.is_dir() and any(method_dir.glob("sweep-*")):
        log.warning("%s: cannot tell which sweep folder is the chosen configuration's first run; "
                    "its curve is left out", method_dir)
    return [runs[label] for label in sorted(runs, key=_seed_sort_key)]


def discover_runs(runs_dir: Path, methods: Sequence[str],
                  chosen_sweep: Mapping[str, int] | None = None) -> dict[str, list[RunLog]]:
    """method -> its runs to draw (see `method_runs`); `chosen_sweep` maps a method to its chosen sweep index."""
    chosen_sweep = chosen_sweep or {}
    return {method: method_runs(Path(runs_dir) / method, method, chosen_sweep.get(method)) for method in methods}


def chosen_sweep_indices(results: Mapping[str, Any]) -> dict[str, int]:
    """method -> index of its chosen configuration in its sweep, from a results dict (results.json)."""
    chosen = {}
    for method, entry in results.get("methods", {}).items():
        values = [row["values"] for row in entry.get("sweep", [])]
        if "chosen" in entry and entry["chosen"] in values:
            chosen[method] = values.index(entry["chosen"])
    return chosen


def line_styles(methods: Sequence[str], colours: Sequence[str]) -> dict[str, LineStyle]:
    """One colour per method; val solid and train dotted, except the second method of a COINCIDING pair
    when both are drawn: val dashed, train dash-dot, and its legend says the two coincide."""
    styles = {}
    for index, method in enumerate(methods):
        colour = colours[index % len(colours)]
        partner = next((a for a, b in COINCIDING if b == method and a in methods), None)
        if partner is None:
            styles[method] = LineStyle(colour, "-", ":", method)
        else:
            styles[method] = LineStyle(colour, "--", "-.",
                                       f"{method} (dashed: same as {partner} with one positive per query)")
    return styles


def plot_learning_curves(runs_dir: Path, out_dir: Path, methods: Sequence[str], metric: str, *,
                         chosen_sweep: Mapping[str, int] | None = None) -> list[Path]:
    """learning_curves.png (train and val `metric` against steps and against wall-clock seconds) and
    train_val_gap.png (train minus val against steps), one colour per method, one line per seed run.

    `chosen_sweep` (method -> chosen sweep index, e.g. `chosen_sweep_indices(results)`) names the sweep folder
    that holds the first seed's run; without it that folder is found from the runs' config.json.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = discover_runs(runs_dir, methods, chosen_sweep)
    styles = line_styles(list(methods), plt.rcParams["axes.prop_cycle"].by_key()["color"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    gap_fig, gap_ax = plt.subplots(figsize=(6.5, 4.5))
    for method, method_logs in runs.items():
        style = styles[method]
        labelled = False
        for run in method_logs:
            evals = read_evals(run.log)
            if not evals:
                continue
            steps = [r["step"] for r in evals]
            seconds = [r["elapsed"] for r in evals]
            val = [r[f"val/{metric}"] for r in evals]
            train = [r[f"train/{metric}"] for r in evals]
            label = None if labelled else style.label
            labelled = True
            axes[0].plot(steps, val, color=style.colour, linestyle=style.val, label=label)
            axes[0].plot(steps, train, color=style.colour, linestyle=style.train, alpha=0.7)
            axes[1].plot(seconds, val, color=style.colour, linestyle=style.val, label=label)
            axes[1].plot(seconds, train, color=style.colour, linestyle=style.train, alpha=0.7)
            gap_ax.plot(steps, [t - v for t, v in zip(train, val)], color=style.colour, linestyle=style.val,
                        label=label)
    for ax, xlabel in zip(axes, ("step", "wall-clock seconds (training only)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"val (solid/dashed) and train (dotted/dash-dot) {metric}")
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
