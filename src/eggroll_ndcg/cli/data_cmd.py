"""`eggroll-ndcg data info NAME_OR_PATH` and `eggroll-ndcg data list`."""

from __future__ import annotations

import argparse
import sys

from ..data.beir import DataError, grade_levels
from ..data.sources import OfflineError, UnknownSourceError, data_dir_description, list_sources, resolve
from ..data.splits import eligible_queries


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command and its `info` / `list` sub-commands."""
    parser = subparsers.add_parser(
        "data", help="inspect and list retrieval collections",
        description="Inspect the collections that short names and folders resolve to (no encoding, no download).")
    commands = parser.add_subparsers(dest="data_command", required=True)

    info = commands.add_parser(
        "info", help="load and validate a collection; print counts, grades and problems",
        description="Load and validate a collection; print its counts, splits, grades and problems. "
        "Exit 1 with the reason (file and line) when it cannot be loaded.")
    info.add_argument("name", metavar="NAME_OR_PATH", help="a short name (see `data list`) or a BEIR folder")
    info.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    info.set_defaults(func=run_info)

    listing = commands.add_parser(
        "list", help="list the collections that short names resolve to",
        description="Print where short names are looked up, then every collection a short name resolves to "
        "and whether it is usable here.")
    listing.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    listing.set_defaults(func=run_list)


def run_info(args: argparse.Namespace) -> int:
    """Print a summary of the collection; exit 1 with the error when it cannot be loaded."""
    try:
        collection = resolve(args.name, data_dir=args.data_dir)
    except (DataError, OfflineError, UnknownSourceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    manifest = collection.manifest
    eligible = eligible_queries(collection)
    print(f"collection   {collection.name}")
    print(f"source       {manifest.get('source', '?')}")
    print(f"content hash {manifest.get('content_hash', '?')}")
    print(f"documents    {len(collection.doc_ids):,}")
    print(f"queries      {len(collection.query_texts):,} ({len(collection.judgments):,} judged, "
          f"{len(eligible):,} with a relevant document)")
    for split, ids in collection.split_queries.items():
        judgments = sum(len(collection.judgments.get(query_id, {})) for query_id in ids)
        print(f"  {split:<10} {len(ids):,} judged queries, {judgments:,} judgments")
    levels = ", ".join(f"{grade}: {count:,}" for grade, count in grade_levels(collection).items())
    print(f"grades       {levels}")
    build = manifest.get("build")
    if build and "python" in build:
        print(f"built with   Python {build['python']}")
    print(f"problems     {len(collection.problems) or 'none'}")
    for problem in collection.problems:
        print(f"  - {problem}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print where short names are looked up, then every collection one resolves to and whether it is usable."""
    rows = list_sources(args.data_dir)
    print(f"looked in: {data_dir_description(args.data_dir)}")
    width = max(len(row.name) for row in rows)
    state_width = max(len(row.status) for row in rows)
    for row in rows:
        line = f"{row.name:<{width}}  {row.kind:<8}  {row.status:<{state_width}}  {row.location}  {row.description}"
        print(line.rstrip())
    if not any(row.kind == "local" for row in rows):
        print("(no local collections: set EGGROLL_NDCG_DATA or pass --data-dir to list a folder of BEIR collections)")
    return 0
