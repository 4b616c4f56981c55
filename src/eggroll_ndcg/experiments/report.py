"""Summaries and the markdown table of a comparison: mean ± std over seeds and paired significance."""

from __future__ import annotations

import statistics
from typing import Any

from ..metrics.stats import bootstrap_ci, holm, paired_t_test, randomization_test, win_tie_loss

TABLE_METRICS = (
    "train/ndcg@10", "val/ndcg@10", "test/ndcg@10", "test/mrr@10", "test/recall@100",
    "test_seen/ndcg@10", "test_unseen/ndcg@10",
)
SIGNIFICANCE_MEASURE = "ndcg@10"
REFERENCES = ("zero-shot", "eggroll")
RANDOMIZATION_RESAMPLES = 10_000  # random sign vectors of the randomization test (metrics.stats)


def randomization_floor(n: int, n_resamples: int = RANDOMIZATION_RESAMPLES) -> tuple[float, bool]:
    """(smallest p the randomization test can return for n queries, whether its p is exact).

    Mirrors `metrics.stats.randomization_test`: when 2^n <= n_resamples (and n <= 20) it enumerates every sign
    vector and p is exact, at least 2 / 2^n (the observed signs and their negation); otherwise it draws
    `n_resamples` random sign vectors and p = (1 + count) / (1 + n_resamples) >= 1 / (1 + n_resamples), so a
    p at that floor only says the true p is about that small or smaller.
    """
    if n <= 20 and 2**n <= n_resamples:
        return 2.0 / 2**n, True
    return 1.0 / (1 + n_resamples), False


def at_floor(p: float, floor: float, exact: bool) -> bool:
    """True when a Monte Carlo p equals its floor (no resample was as extreme as the observed difference)."""
    return not exact and p <= floor * (1 + 1e-9)


def holm_depends_on_floor(p_values: list[float], floored: list[bool]) -> list[bool]:
    """Per row: does its Holm-adjusted p change when the p-values at the floor are taken to 0 (their true
    values are only known to be that small or smaller)? Such an adjusted p is an upper bound, shown with "≤"."""
    if not p_values:
        return []
    reported = holm(p_values)
    lowest = holm([0.0 if f else p for p, f in zip(p_values, floored)])
    return [low < high for low, high in zip(lowest, reported)]


def _seed_value(fold_runs: list[dict[str, Any]], metric: str) -> float | None:
    """A seed's value of `metric` (None when no run has it, e.g. no seen-document test query). Over k-fold
    runs, test metrics are weighted by each fold's number of test queries of that group (so they equal the
    mean over all those queries); other metrics are plain means over folds."""
    pairs = []
    for run in fold_runs:
        value = run.get(metric)
        if value is None:
            continue
        if metric.startswith("test_"):
            weight = run[f"{metric.split('/')[0]}/count"]
        elif metric.startswith("test/") and "test_seen/count" in run:
            weight = run["test_seen/count"] + run["test_unseen/count"]
        else:
            weight = 1
        pairs.append((value, weight))
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def _mean_std(values: list[float | None]) -> list[float | None]:
    """[mean, std] over seeds of the defined values; [None, None] when none is defined."""
    defined = [v for v in values if v is not None]
    if not defined:
        return [None, None]
    return [statistics.fmean(defined), statistics.stdev(defined) if len(defined) > 1 else 0.0]


def summarize(results: dict[str, Any], per_query: dict[str, dict[str, dict[str, float]]],
              seen: dict[str, bool]) -> dict[str, Any]:
    """Mean ± std over seeds of TABLE_METRICS for every method, and the paired tests on test queries.

    Per-query values are each method's mean over seeds. Every method is compared with zero-shot and with
    EGGROLL (when present) on all test queries and on unseen-document queries; Holm's correction runs over
    all those comparisons together.
    """
    table: dict[str, dict[str, list[float]]] = {}
    for method, entry in results["methods"].items():
        table[method] = {
            m: _mean_std([_seed_value(runs, m) for runs in entry["runs"].values()]) for m in TABLE_METRICS
        }

    comparisons = []
    groups = {"all": sorted(seen), "unseen": sorted(q for q, s in seen.items() if not s)}
    if len(groups["unseen"]) == len(groups["all"]):  # every test query is unseen: one group, not two copies
        del groups["unseen"]
    for reference in REFERENCES:
        if reference not in per_query:
            continue
        for method in per_query:
            if method == reference or (reference == "eggroll" and method == "zero-shot"):
                continue
            for group, ids in groups.items():
                if len(ids) < 2:
                    continue
                a = [per_query[method][q][SIGNIFICANCE_MEASURE] for q in ids]
                b = [per_query[reference][q][SIGNIFICANCE_MEASURE] for q in ids]
                interval = bootstrap_ci(a, b, seed=0)
                wtl = win_tie_loss(a, b, tol=1e-12)
                comparisons.append({
                    "method": method, "reference": reference, "queries": group, "n": len(ids),
                    "mean_difference": interval.estimate, "ci95": [interval.low, interval.high],
                    "t_test_p": paired_t_test(a, b).p_value,
                    "randomization_p": randomization_test(a, b, n_resamples=RANDOMIZATION_RESAMPLES, seed=0),
                    "randomization_resamples": RANDOMIZATION_RESAMPLES,
                    "wins": wtl.wins, "ties": wtl.ties, "losses": wtl.losses,
                })
    if comparisons:
        for row, adjusted in zip(comparisons, holm([row["randomization_p"] for row in comparisons])):
            row["holm_p"] = adjusted
    return {"table": table, "significance": comparisons,
            "test_queries": {"all": len(seen), "unseen": sum(not s for s in seen.values())}}


def format_p(p: float, *, bound: bool, floor: float | None = None) -> str:
    """A p-value for the tables: "≤ <floor>" for a Monte Carlo p at its floor, "≤ <p>" for another upper
    bound (a Holm p that rests on such a p), else the value to 3 significant digits."""
    if bound:
        return f"≤ {(floor if floor is not None else p):.2g}"
    return f"{p:.3g}"


def significance_cells(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(randomization p, Holm p) as printed, for each significance row in order (see `format_p`)."""
    floors = [randomization_floor(row["n"], row.get("randomization_resamples", RANDOMIZATION_RESAMPLES))
              for row in rows]
    floored = [at_floor(row["randomization_p"], floor, exact) for row, (floor, exact) in zip(rows, floors)]
    holm_bounds = holm_depends_on_floor([row["randomization_p"] for row in rows], floored)
    return [(format_p(row["randomization_p"], bound=f, floor=floor), format_p(row["holm_p"], bound=h))
            for row, (floor, _), f, h in zip(rows, floors, floored, holm_bounds)]


def randomization_note(rows: list[dict[str, Any]]) -> str:
    """The sentence under the significance table that says how the randomization p-values were computed."""
    resamples = {row.get("randomization_resamples", RANDOMIZATION_RESAMPLES) for row in rows} or {
        RANDOMIZATION_RESAMPLES}
    r = max(resamples)
    floor = 1.0 / (r + 1)
    return (f"Randomization test: {r:,} random sign flips of the per-query differences, so p >= 1/{r + 1:,}; "
            f"a p at that floor (no flip as extreme as the observed difference) is shown as \"≤ {floor:.2g}\", "
            f"and so is a Holm p that rests on one. With 2^n <= {r:,} queries every sign vector is enumerated "
            f"and p is exact (at least 2/2^n).")


def _cell(mean_std: list[float | None]) -> str:
    mean, std = mean_std
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def write_markdown(results: dict[str, Any], timings: dict[str, Any]) -> str:
    """results.md: the metrics table, the significance table and the chosen configurations."""
    base = results["config"]["base"]
    summary = results["summary"]
    selection = ("validation queries only" if base.get("val_queries", "all") == "all" else
                 "unseen-document validation queries only (val_queries: unseen-documents)")
    lines = [
        f"# Comparison on `{base['task']}` with `{base['encoder']}`",
        "",
        f"Seeds: {results['config']['seeds']}. Head: {base['head']} (normalize={base['normalize']}), "
        f"pool: top {base['pool_size']} (+{base['bm25_negatives']} BM25, +{base['random_negatives']} random), "
        f"{base['num_steps']} steps, batch {base['batch_queries']} queries. Model selection on {selection}; "
        f"test = {summary['test_queries']['all']} held-out queries "
        f"({summary['test_queries']['unseen']} with no relevant document seen as a training positive).",
        "",
        "| method | " + " | ".join(TABLE_METRICS) + " |",
        "|---" * (len(TABLE_METRICS) + 1) + "|",
    ]
    order = ["zero-shot", *results["config"]["methods"]]  # not dict order: results.json is written key-sorted
    for method in order:
        row = summary["table"][method]
        lines.append(f"| {method} | " + " | ".join(_cell(row[m]) for m in TABLE_METRICS) + " |")
    lines += [
        "",
        f"## Paired tests on test {SIGNIFICANCE_MEASURE} (per-query means over seeds; Holm over all rows)",
        "",
        "| method | vs | queries | n | mean diff | 95% CI | t-test p | randomization p | Holm p | W/T/L |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = summary["significance"]
    for row, (randomization_p, holm_p) in zip(rows, significance_cells(rows)):
        lines.append(
            f"| {row['method']} | {row['reference']} | {row['queries']} | {row['n']} | {row['mean_difference']:+.4f} "
            f"| [{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}] | {row['t_test_p']:.3g} | {randomization_p} "
            f"| {holm_p} | {row['wins']}/{row['ties']}/{row['losses']} |"
        )
    lines += ["", randomization_note(rows)]
    lines += ["", "## Chosen configurations (validation queries only)", ""]
    for method in order:
        entry = results["methods"][method]
        if "chosen" in entry:
            val_key = f"val/{base['val_metric']}"
            tried = ", ".join(f"{row['values']} -> {row[val_key]:.4f}" for row in entry["sweep"])
            lines.append(f"- **{method}**: {entry['chosen'] or 'base values'} (tried: {tried})")
    if timings:
        lines += ["", "## Wall-clock (seconds, mean over runs)", "", "| method | train time | time to best val |",
                  "|---|---|---|"]
        for method in order[1:]:
            rows = timings[method]
            lines.append(f"| {method} | {statistics.fmean(r['train_time'] for r in rows):.1f} "
                         f"| {statistics.fmean(r['time_to_best'] for r in rows):.1f} |")
    return "\n".join(lines) + "\n"
