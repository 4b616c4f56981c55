"""results.md of `lm compare`: the base / ES / GRPO table, the paired tests, the selection and weight space."""

from __future__ import annotations

import math
from typing import Any

from ..experiments.report import randomization_note, significance_cells

LABELS = {"train/reward": "train reward", "val/reward": "val reward (selection)",
          "test/conciseness": "test conciseness", "test/retrieval_ndcg@10": "test retrieval NDCG@10",
          "test/log_likelihood": "test docstring log-lik", "test/kl_to_base": "test KL to base (k3)",
          "test/summary_tokens": "test summary tokens", "generated_tokens": "generated tokens"}


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _cell(mean_sd: list[float] | None) -> str:
    if not mean_sd:
        return "n/a"
    mean, sd = mean_sd
    return f"{_num(mean)} ± {_num(sd)}"


def write_markdown(results: dict[str, Any], timings: dict[str, Any]) -> str:
    """The report: one row per method (mean ± sd over seeds; the base has one), then the tests."""
    config, table = results["config"], results["table"]
    columns = [c for c in LABELS if any(c in row for row in table.values())]
    lines = [
        "# lm compare: base vs ES vs GRPO on the conciseness task", "",
        f"Model: `{config['model']}`; seeds {list(config['seeds'])}; prompts train/val/test "
        f"{len(results['tasks']['train'])}/{len(results['tasks']['val'])}/{len(results['tasks']['test'])}; "
        f"budget {config['token_budget']} generated tokens per run; {config['max_new_tokens']} new tokens; "
        f"device {config['device']}.",
        "Configurations chosen at seed 0 by the validation reward only; every test figure is on held-out "
        "test functions (packages never used for training, selection or pretraining).", "",
        "| method | " + " | ".join(LABELS[c] for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for method, row in table.items():
        lines.append(f"| {method} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    rows = results["significance"]
    if rows:
        lines += ["", "## Paired tests over test prompts (per-prompt mean over seeds)", "",
                  "| comparison | judge | n | mean diff [95% CI] | t-test p | randomization p | Holm p | W/T/L |",
                  "|---|---|---|---|---|---|---|---|"]
        for row, (p_rand, p_holm) in zip(rows, significance_cells(rows)):
            lo, hi = row["ci95"]
            lines.append(f"| {row['method']} vs {row['reference']} | {row['metric']} | {row['n']} | "
                         f"{row['mean_difference']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {row['t_test_p']:.3g} | {p_rand} | "
                         f"{p_holm} | {row['wins']}/{row['ties']}/{row['losses']} |")
        lines += ["", randomization_note(rows) + " Holm over every row of this table."]
    lines += ["", "## Selection (seed 0, validation reward)", "", "| method | config | val reward |", "|---|---|---|"]
    for method, sel in results["selection"].items():
        for entry in sel["grid"]:
            mark = " **(chosen)**" if entry["config"] == sel["chosen"] else ""
            lines.append(f"| {method} | {entry['config']}{mark} | {_num(entry['val_reward'])} |")
    weights = results.get("weight_space") or {}
    if weights:
        lines += ["", "## Weight space (seed 0)", "", "| method | ‖ΔW‖ | " + " | ".join(
            f"share {g}" for g in ("embedding", "attention", "mlp", "unembedding", "norm")) + " | median stable rank |",
            "|---" * 8 + "|"]
        for method, fp in weights.get("footprints", {}).items():
            ranks = sorted(v["stable_rank"] for v in fp["spectra"].values() if not math.isnan(v["stable_rank"]))
            median = ranks[len(ranks) // 2] if ranks else math.nan
            shares = " | ".join(_num(fp["group_share"].get(g), 3) for g in
                                ("embedding", "attention", "mlp", "unembedding", "norm"))
            lines.append(f"| {method} | {_num(fp['norm'])} | {shares} | {_num(median, 2)} |")
        cos = weights.get("cosines", {})
        path = weights.get("interpolation", {})
        lines += ["", f"cos(ΔW_ES, ΔW_GRPO), all parameters: {_num(cos.get('all'))}; per group: "
                  + ", ".join(f"{g} {_num(v, 3)}" for g, v in cos.get("groups", {}).items()) + "."]
        across = weights.get("cosines_across_seeds", {})
        if across:
            lines.append("Across seeds (all parameters): " + ", ".join(f"{k} {_num(v, 3)}" for k, v in across.items()) + ".")
        if path:
            lines.append("Linear path ES -> GRPO (validation reward): "
                         + ", ".join(f"t={t:.2f}: {_num(v, 3)}" for t, v in zip(path["t"], path["value"]))
                         + f"; barrier {_num(path['barrier'], 3)}.")
        for method, curve in weights.get("robustness", {}).items():
            lines.append(f"Weight noise, {method} (validation reward): " + ", ".join(
                f"ε={e:g}: {_num(m, 3)} ± {_num(s, 3)}" for e, m, s in zip(curve["scale"], curve["mean"], curve["std"])) + ".")
        lines += ["", "Plots: plots/update_share_and_rank.png, update_cosine_by_layer.png, interpolation.png, "
                  "robustness.png."]
    examples = results.get("examples", {})
    if examples:
        lines += ["", "## Example test summaries", "", "| model | function | target | summary |", "|---|---|---|---|"]
        for label, items in examples.items():
            if label.endswith("seed0") or label == "base":
                for item in items[:3]:
                    cells = [label, item["id"], item["target"], item["summary"]]
                    lines.append("| " + " | ".join(c.replace("|", "\\|")[:120] for c in cells) + " |")
    total = timings.get("total_s")
    if total is not None:
        lines += ["", f"Wall time: {total / 60:.1f} min (" + ", ".join(
            f"{k} {v:.0f} s" for k, v in timings.items() if k != "total_s") + ")."]
    return "\n".join(lines) + "\n"
