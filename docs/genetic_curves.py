"""Learning curves of a `compare` folder against fitness evaluations and wall-clock (docs/genetic.md).

    python docs/genetic_curves.py RUNS/compare-scifact-genetic docs/genetic-scifact-curves.png

Validation NDCG@10 (the trainer's eval records) of every run folder under runs/<method>/ against the
cumulative number of fitness evaluations (members x queries; the step record's `evaluations` when the method
logs it, else es.population_size x batch_queries for eggroll) and against training wall-clock seconds.
Gradient baselines evaluate no fitness: they are drawn at the evaluation count of the ES runs at the same step
(same steps, same batches), dashed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(run: Path) -> tuple[list[float], list[float], list[float], bool]:
    config = json.loads((run / "config.json").read_text())
    config = config.get("config", config)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    per_step = config["es"]["population_size"] * config["batch_queries"]
    logged = any("evaluations" in r for r in records if r["event"] == "step")
    total, evals, seconds, values, done = 0, [], [], [], {}
    for r in records:
        if r["event"] == "step":
            total += r.get("evaluations", per_step)
            done[r["step"]] = total
        elif r["event"] == "eval":
            evals.append(done.get(r["step"], 0) if r["step"] else 0)
            seconds.append(r["elapsed"])
            values.append(r["val/ndcg@10"])
    return evals, seconds, values, logged or config["method"] == "eggroll"


def main(folder: str, out: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {}
    for run in sorted(Path(folder).glob("runs/*/*")):
        if not (run / "log.jsonl").exists():
            continue
        method = run.parent.name
        evals, seconds, values, fitness = curves(run)
        color = colors.setdefault(method, f"C{len(colors)}")
        style = "-" if fitness else "--"
        label = method if method not in {l.get_label() for l in axes[0].lines} else None
        axes[0].plot(evals, values, style, color=color, label=label, alpha=0.8)
        axes[1].plot(seconds, values, style, color=color, alpha=0.8)
    axes[0].set_xlabel("fitness evaluations (members x queries)")
    axes[1].set_xlabel("training wall-clock (s)")
    for ax in axes:
        ax.set_ylabel("val NDCG@10")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(Path(folder).name)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
