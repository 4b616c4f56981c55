"""A small synthetic collection with a learnable structure, written as a real BEIR folder.

Documents are random unit vectors; each query is a fixed random distortion of its relevant document plus
noise, so the identity head (zero-shot) is imperfect and a trained head can do better. Embeddings are given
directly (no encoder run), which keeps the trainer tests fast; everything else is the real pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from eggroll_ndcg.data.beir import load_beir
from eggroll_ndcg.train.prepare import EncodedCollection

DIM, DOCS, QUERIES = 24, 240, 120


def write_synthetic_beir(folder: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for d in range(DOCS):
            handle.write(json.dumps({"_id": f"d{d:03d}", "title": "", "text": f"document {d}"}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for q in range(QUERIES):
            handle.write(json.dumps({"_id": f"q{q:03d}", "text": f"query {q}"}) + "\n")
    relevant = torch.randint(0, DOCS, (QUERIES,), generator=generator)
    for split, rows in (("train", range(0, 80)), ("test", range(80, QUERIES))):
        with open(folder / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for q in rows:
                handle.write(f"q{q:03d}\td{int(relevant[q]):03d}\t1\n")


def synthetic_encoded(folder: Path) -> EncodedCollection:
    collection = load_beir(folder)
    generator = torch.Generator().manual_seed(11)
    docs = torch.nn.functional.normalize(torch.randn(DOCS, DIM, generator=generator), dim=-1)
    distortion = torch.eye(DIM) + 1.5 * torch.randn(DIM, DIM, generator=generator) / DIM**0.5
    query_ids = tuple(sorted(collection.judgments))
    queries = []
    for qid in query_ids:
        (doc_id,) = collection.judgments[qid]
        noise = 0.8 * torch.randn(DIM, generator=generator) / DIM**0.5
        queries.append(distortion @ docs[collection.doc_ids.index(doc_id)] + noise)
    query_emb = torch.nn.functional.normalize(torch.stack(queries), dim=-1)
    return EncodedCollection(
        collection=collection, query_row={q: i for i, q in enumerate(query_ids)}, query_emb=query_emb, doc_emb=docs
    )
