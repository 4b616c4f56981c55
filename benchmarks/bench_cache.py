"""Embedding cache speed-up: encode a collection's documents twice into a fresh cache, in one run.

    python benchmarks/bench_cache.py --dataset autorag_retrieval_ko --encoder minilm --limit 256

The first call encodes and writes the entry; the second hashes the texts, reads and checksums the entry.
Model loading happens once, before both timings. Prints both times and the ratio; exits 1 below --min-ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="autorag_retrieval_ko")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=256, help="encode the first N documents (0 = all)")
    parser.add_argument("--min-ratio", type=float, default=20.0)
    args = parser.parse_args(argv)

    import torch

    from eggroll_ndcg.encoders import cache_key, cache_path, encode_cached, load_encoder
    from zero_shot import load_collection

    collection = load_collection(args.dataset, args.data_dir)
    texts = list(collection.doc_texts[: args.limit or None])
    encoder = load_encoder(args.encoder)
    encoder.identity  # hash the weights once, outside the timings (it is memoized)
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        first = encode_cached(encoder, texts, kind="document", cache_dir=cache_dir, progress=False)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        second = encode_cached(encoder, texts, kind="document", cache_dir=cache_dir, progress=False)
        warm = time.perf_counter() - start
        size = cache_path(cache_key(encoder, texts, kind="document"), cache_dir).stat().st_size
    assert torch.equal(first, second)
    ratio = cold / warm
    print(f"{collection.name}: {len(texts)} documents, encoder {encoder.name}, entry {size / 1e6:.2f} MB")
    print(f"first encode (cold cache) {cold:.3f} s")
    print(f"second encode (cached)    {warm:.4f} s")
    print(f"speed-up                  {ratio:.0f}x (required >= {args.min_ratio:.0f}x)")
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
