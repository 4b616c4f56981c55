"""analysis.json, analysis.md and plots/ of an analysis (`analyze.analyze`), and the per-method summary.

Summary rules: per method, mean ± standard deviation over its runs (seeds); per pair of methods, the same
over the analysed pairs. Reward hacking "at equal training fitness": along each run's kept checkpoints, the
held-out change (over step 0) at the first point where the training-judge gain reaches a level g (linear
interpolation between kept steps); g* is the largest gain every run with checkpoints reached, and the
summary reports g*/2 and g* for every method, and each method's own reach (the largest gain all its runs
reached) for the methods that reach it, so that methods trained to different gains are still compared at
equal gain, and no mean mixes runs that reached a level with runs that did not.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import json_bytes, write_bytes_atomic, write_text_atomic  # noqa: E402

HELD_OUT = ("val", "test", "test_unseen")


def mean_std(values: list[float | None]) -> dict[str, float] | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    return {"mean": sum(values) / len(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def at_gain(trajectory: list[dict[str, Any]], level: float, judge: str) -> float | None:
    """Held-out change of `judge` when the training-judge gain first reaches `level` (module docstring)."""
    base = trajectory[0]
    points = [(p["train_pool"] - base["train_pool"], p[judge] - base[judge]) for p in trajectory
              if p.get(judge) is not None]
    for (g0, h0), (g1, h1) in zip(points, points[1:]):
        if g0 < level <= g1:
            return h0 + (h1 - h0) * (level - g0) / (g1 - g0)
    return 0.0 if points and level <= points[0][0] else None


def distance_keys(tracked: list[dict[str, Any]]) -> tuple[str, ...]:
    """The distance-from-base entries of the trajectories ("weight_distance", "kl_top10", "kl_top1")."""
    first = tracked[0]["trajectory"][0]
    return tuple(k for k in ("weight_distance", *sorted(k for k in first if k.startswith("kl_top"))) if k in first)


def equal_gain(tracked: list[dict[str, Any]]) -> dict[str, Any]:
    """Held-out change at equal training-judge gain (module docstring) of the runs with a trajectory:
    {"g_star", "reach": {method: gain all its runs reached}, "levels": {"g": {method: {judge: mean ± sd}}}};
    {} without trajectories."""
    if not tracked:
        return {}
    gain = {id(r): max(p["train_pool"] - r["trajectory"][0]["train_pool"] for p in r["trajectory"]) for r in tracked}
    reach: dict[str, float] = {}
    for r in tracked:
        reach[r["method"]] = min(reach.get(r["method"], math.inf), gain[id(r)])
    g_star = min(reach.values())
    judges = HELD_OUT + distance_keys(tracked)
    levels: dict[str, Any] = {}
    for level in sorted({g_star / 2, g_star, *reach.values()}):
        if f"{level:.4f}" not in levels:
            levels[f"{level:.4f}"] = {
                method: {judge: mean_std([at_gain(r["trajectory"], level, judge) for r in tracked
                                          if r["method"] == method]) for judge in judges}
                for method in reach if reach[method] >= level}
    return {"g_star": g_star, "reach": reach, "levels": levels}


def summarize(analysis: dict[str, Any]) -> dict[str, Any]:
    runs = analysis["runs"]
    methods: dict[str, list[dict]] = {}
    for run in runs:
        methods.setdefault(run["method"], []).append(run)
    per_method: dict[str, Any] = {}
    for method, group in methods.items():
        entry: dict[str, Any] = {"runs": len(group), "family": group[0]["family"]}
        for key in ("val/ndcg@10", "test/ndcg@10", "test_unseen/ndcg@10"):
            entry[key] = mean_std([r["metrics"][key] for r in group])
        entry["update_norm"] = mean_std([r["update_norm"] for r in group])
        entry["spectra"] = {name: {stat: mean_std([r["spectra"][name].get(stat) for r in group])
                                   for stat in ("share", "stable_rank", "effective_rank", "alignment/corpus",
                                                "alignment/queries")}
                            for name in group[0]["spectra"]}
        for split in ("val", "test"):
            entry[f"base_barrier/{split}"] = mean_std([r["base_path"][f"barrier/{split}"] for r in group])
        scales = group[0]["flatness"]["scale"]
        entry["flatness_drop"] = {str(s): mean_std([r["flatness"]["mean"][i] - r["flatness"]["mean"][0] for r in group])
                                  for i, s in enumerate(scales)}
        entry["judge_change"] = {
            key: mean_std([r["judges"][key] - r["judges_base"][key] for r in group
                           if r["judges"].get(key) is not None and r["judges_base"].get(key) is not None])
            for key in group[0]["judges"]}
        entry["divergence_best"] = {k: mean_std([r["divergence_best"][k] for r in group])
                                    for k in group[0]["divergence_best"]}
        per_method[method] = entry
    pair_groups: dict[str, list[dict]] = {}
    for pair in analysis["pairs"]:
        if "skipped" not in pair:
            pair_groups.setdefault(" vs ".join(sorted(pair["methods"].split(" vs "))), []).append(pair)
    per_pair = {name: {"pairs": len(group), "cosine/all": mean_std([p["cosine"]["all"] for p in group]),
                       **{f"barrier/{s}": mean_std([p["path"][f"barrier/{s}"] for p in group])
                          for s in ("val", "test")},
                       "min_val_along_path": mean_std([min(p["path"]["val"]) for p in group])}
                for name, group in pair_groups.items()}
    tracked = [r for r in runs if r.get("trajectory")]
    for r in tracked:  # the distance from the base joins the judges of each kept step
        by_step = {d["step"]: d for d in r.get("divergence") or []}
        for point in r["trajectory"]:
            point.update({k: v for k, v in by_step.get(point["step"], {}).items() if k != "step"})
    hacking = equal_gain(tracked)
    return {"methods": per_method, "pairs": per_pair, "reward_hacking": hacking}


def fmt(value: dict[str, float] | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value['mean']:+.{digits}f} ± {value['std']:.{digits}f}" if value["mean"] < 0 else \
        f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def markdown(analysis: dict[str, Any]) -> str:
    summary, lines = analysis["summary"], ["# Weight-space analysis", ""]
    if analysis["runs"] and analysis["runs"][0].get("solution") == "last":
        lines += ["Solution analysed: each run's **last kept head** (step "
                  + ", ".join(sorted({str(r["solution_step"]) for r in analysis["runs"]})) + "), not its "
                  "validation-selected best head; the run figures below are that head's.", ""]
    lines += ["Runs: " + ", ".join(f"`{r['label']}`" for r in analysis["runs"]) + ".", "",
              "## Runs", "", "| run | val NDCG@10 | test NDCG@10 | ‖ΔW‖ | barrier base→solution (val) |",
              "|---|---|---|---|---|"]
    for r in analysis["runs"]:
        lines.append(f"| {r['label']} | {r['metrics']['val/ndcg@10']:.4f} | {r['metrics']['test/ndcg@10']:.4f} | "
                     f"{r['update_norm']:.4f} | {r['base_path']['barrier/val']:.4f} |")
    lines += ["", "## Where the update went (mean ± sd over seeds)", "",
              "| method | parameter | share | stable rank | effective rank | align corpus PCs | align query PCs |",
              "|---|---|---|---|---|---|---|"]
    chance = next((e.get("alignment/corpus/chance") for r in analysis["runs"] for e in r["spectra"].values()
                   if e.get("alignment/corpus/chance")), None)
    for method, entry in summary["methods"].items():
        for name, stats in entry["spectra"].items():
            lines.append(f"| {method} | {name} | {fmt(stats['share'])} | {fmt(stats['stable_rank'], 2)} | "
                         f"{fmt(stats['effective_rank'], 2)} | {fmt(stats['alignment/corpus'])} | "
                         f"{fmt(stats['alignment/queries'])} |")
    if chance:
        lines += ["", f"Alignment chance level (a random direction): {chance:.4f}."]
    lines += ["", "## How two solutions relate", "", "| pair | n | update cosine | barrier (val) | barrier (test) |"
              " min val NDCG@10 on the path |", "|---|---|---|---|---|---|"]
    for name, entry in summary["pairs"].items():
        lines.append(f"| {name} | {entry['pairs']} | {fmt(entry['cosine/all'])} | {fmt(entry['barrier/val'])} | "
                     f"{fmt(entry['barrier/test'])} | {fmt(entry['min_val_along_path'])} |")
    scales = list(next(iter(summary["methods"].values()))["flatness_drop"]) if summary["methods"] else []
    lines += ["", "## Flatness: change of val NDCG@10 under relative weight noise ε", "",
              "| method | " + " | ".join(f"ε={s}" for s in scales) + " |", "|---|" + "---|" * len(scales)]
    for method, entry in summary["methods"].items():
        lines.append(f"| {method} | " + " | ".join(fmt(entry["flatness_drop"][s]) for s in scales) + " |")
    keys = list(next(iter(summary["methods"].values()))["judge_change"]) if summary["methods"] else []
    lines += ["", "## Judges: change from the base head (best head − zero-shot)", "",
              "| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for method, entry in summary["methods"].items():
        lines.append(f"| {method} | " + " | ".join(fmt(entry["judge_change"][k]) for k in keys) + " |")
    hacking = summary["reward_hacking"]
    if hacking:
        columns = list(next(iter(next(iter(hacking["levels"].values())).values())))
        lines += ["", f"## Change from step 0 at equal training-judge gain (g* = {hacking['g_star']:.4f})", "",
                  "Held-out judges (full-corpus NDCG@10) and the distance from the base, interpolated at the first "
                  "kept step where the training-judge gain reaches the level; a level lists the methods all of "
                  "whose runs reach it (reach: "
                  + ", ".join(f"{m} {g:.4f}" for m, g in hacking.get("reach", {}).items()) + ").", "",
                  "| gain | method | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        for level, table in hacking["levels"].items():
            for method, judges in table.items():
                lines.append(f"| {level} | {method} | " + " | ".join(fmt(judges[j]) for j in columns) + " |")
    lines += ["", "## Distance from the base (best head)", "", "| method | ‖W−W0‖ | PL KL top-k | PL KL top-1 |",
              "|---|---|---|---|"]
    for method, entry in summary["methods"].items():
        d = entry["divergence_best"]
        topk = next(k for k in d if k.startswith("kl_top") and k != "kl_top1")
        lines.append(f"| {method} | {fmt(d['weight_distance'])} | {fmt(d[topk])} | {fmt(d['kl_top1'])} |")
    lines += ["", "Plots: " + ", ".join(f"`plots/{p}`" for p in PLOTS), ""]
    return "\n".join(lines)


PLOTS = ("spectra.png", "connectivity.png", "flatness.png", "reward_hacking.png", "divergence.png")


def _colour(analysis: dict[str, Any]) -> dict[str, str]:
    methods = list(dict.fromkeys(r["method"] for r in analysis["runs"]))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {m: cycle[i % len(cycle)] for i, m in enumerate(methods)}


def plots(analysis: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    colour, runs = _colour(analysis), analysis["runs"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        name = "W (effective)" if "W (effective)" in r["spectra"] else next(iter(r["spectra"]))
        s = r["spectra"][name]["singular_values"]
        if s and s[0] > 0:
            ax.semilogy(range(1, len(s) + 1), [v / s[0] for v in s], color=colour[r["method"]], label=r["label"], lw=1)
    ax.set(xlabel="index i", ylabel="s_i / s_1 of ΔW", title="update spectra")
    ax.legend(fontsize=6)
    fig.tight_layout(), fig.savefig(folder / "spectra.png", dpi=120), plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        axes[0].plot(r["base_path"]["t"], r["base_path"]["val"], color=colour[r["method"]], label=r["label"], lw=1)
    for p in analysis["pairs"]:
        if "path" in p:
            axes[1].plot(p["path"]["t"], p["path"]["val"], lw=1, label=f"{p['a']} → {p['b']}")
    axes[0].set(xlabel="t (base → solution)", ylabel="val NDCG@10", title="base → solution")
    axes[1].set(xlabel="t (a → b)", ylabel="val NDCG@10", title="between solutions")
    for ax in axes:
        ax.legend(fontsize=5)
    fig.tight_layout(), fig.savefig(folder / "connectivity.png", dpi=120), plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        f = r["flatness"]
        ax.errorbar(f["scale"], f["mean"], yerr=f["std"], color=colour[r["method"]], label=r["label"], lw=1, capsize=2)
    ax.set(xscale="symlog", xlabel="relative noise ε (of ||W||)", ylabel="val NDCG@10", title="flatness")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.legend(fontsize=6)
    fig.tight_layout(), fig.savefig(folder / "flatness.png", dpi=120), plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        traj = r.get("trajectory") or []
        if traj:
            g = [p["train_pool"] - traj[0]["train_pool"] for p in traj]
            for ax, judge in zip(axes, ("test", "test_unseen")):
                ax.plot(g, [(p[judge] or 0) - (traj[0][judge] or 0) for p in traj], "o-", ms=2, lw=1,
                        color=colour[r["method"]], label=r["label"])
    for ax, judge in zip(axes, ("test NDCG@10 (full corpus)", "unseen-document test NDCG@10")):
        ax.axhline(0, color="grey", lw=0.5)
        ax.set(xlabel="training-judge gain (pool fitness − step 0)", ylabel=f"Δ {judge}")
        ax.legend(fontsize=5)
    fig.tight_layout(), fig.savefig(folder / "reward_hacking.png", dpi=120), plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        div = r.get("divergence") or []
        if div:
            kl = next(k for k in div[0] if k.startswith("kl_top") and k != "kl_top1")
            steps = [d["step"] for d in div]
            axes[0].plot(steps, [d["weight_distance"] for d in div], color=colour[r["method"]], label=r["label"])
            axes[1].plot([d["step"] for d in div], [d[kl] for d in div], color=colour[r["method"]], label=r["label"])
    axes[0].set(xlabel="step", ylabel="||W − W0||")
    axes[1].set(xlabel="step", ylabel="PL KL(top-k) from the base head")
    for ax in axes:
        ax.legend(fontsize=5)
    fig.tight_layout(), fig.savefig(folder / "divergence.png", dpi=120), plt.close(fig)


def write_outputs(analysis: dict[str, Any], out_dir: Path) -> None:
    """analysis.json, analysis.md and plots/*.png under `out_dir` (each written atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots(analysis, out_dir / "plots")
    write_text_atomic(out_dir / "analysis.md", markdown(analysis))
    write_bytes_atomic(out_dir / "analysis.json", json_bytes(_finite(analysis)))


def rewrite(out_dir: str | Path) -> dict[str, Any]:
    """Recompute the summary, analysis.md and the plots from an existing analysis.json (no model is run)."""
    out_dir = Path(out_dir)
    analysis = json.loads((out_dir / "analysis.json").read_text(encoding="utf-8"))
    analysis["summary"] = summarize(analysis)
    write_outputs(analysis, out_dir)
    return analysis


def _finite(value: Any) -> Any:
    """JSON-safe: nan / inf become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


__all__ = ["equal_gain", "markdown", "rewrite", "summarize", "write_outputs"]
