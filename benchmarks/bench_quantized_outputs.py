"""Quantized outputs on a collection (default SciFact, MiniLM): every row of docs/quantized_outputs.md.

OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 EGGROLL_NDCG_DATA=/work/shared/datasets \
    python benchmarks/bench_quantized_outputs.py --out runs/quant-outputs [--es-steps 100] [--skip-training]

Rows: float zero-shot; post-hoc binary / binary_asym / int8 of the raw embeddings; PCA-sign; ITQ; float
rescoring of the binary top 4x10; trained heads (seed 0): infonce float head (float, and post-hoc binary /
rescored), EGGROLL binary head, STE and tanh surrogates. Test = the official test queries, with the
seen/unseen-document groups. Plus bits per document, index size and one-thread search time per query.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from eggroll_ndcg.metrics.trec import evaluate
from eggroll_ndcg.quant.hashing import itq_head, pca_sign_head
from eggroll_ndcg.quant.outputs import make_codec
from eggroll_ndcg.quant.serving import rescored_run, search_timing
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.evaluate import final_evaluation
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.trainer import Trainer

KEYS = ("test/ndcg@10", "test_seen/ndcg@10", "test_unseen/ndcg@10", "val/ndcg@10")


def groups(data, run, ids):
    ev = evaluate(run, {q: data.collection.judgments[q] for q in ids}, measures=("ndcg@10",), missing_as_zero=True)
    seen = set(data.seen_document_queries(ids))
    out = {"test/ndcg@10": ev.mean["ndcg@10"]}
    for name, sel in (("seen", [q for q in ids if q in seen]), ("unseen", [q for q in ids if q not in seen])):
        out[f"test_{name}/ndcg@10"] = sum(ev.per_query[q]["ndcg@10"] for q in sel) / max(1, len(sel))
    return out


BITS = {"none": 12288, "binary": 384, "binary_asym": 384, "int8": 3072}  # m = 384


def plot(results: Path, png: Path) -> None:
    """Test NDCG@10 against bits per document for every row of results.json."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(results.read_text())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in rows.items():
        bits = BITS.get(r["quantize"], 384)  # "binary+rescore x4": a binary index
        ax.scatter(bits, r["test/ndcg@10"], s=30)
        ax.annotate(name, (bits, r["test/ndcg@10"]), fontsize=6, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits per document (index)")
    ax.set_ylabel("test NDCG@10 (SciFact, 300 queries)")
    ax.set_title("Quantized outputs, SciFact MiniLM, seed 0 (reduced budget)")
    fig.tight_layout()
    fig.savefig(png, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--out", default="runs/quant-outputs")
    parser.add_argument("--es-steps", type=int, default=100)
    parser.add_argument("--es-population", type=int, default=512)
    parser.add_argument("--grad-steps", type=int, default=200)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--plot", help="only draw OUT/results.json as this PNG")
    args = parser.parse_args()
    out = Path(args.out)
    if args.plot:
        return plot(out / "results.json", Path(args.plot))
    out.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(task=args.task, encoder="minilm", head="linear", pool_size=128, batch_queries=32,
                       eval_every=25, max_val_queries=200, objective="ndcg@10")
    data = prepare_data(base, progress=False)
    rows: dict[str, dict] = {}

    def record(name, head, quantize, extra=None):
        metrics, _, _ = final_evaluation(head, data, normalize=True, quantize=quantize)
        rows[name] = {k: metrics.get(k) for k in KEYS} | {"quantize": quantize} | (extra or {})
        print(name, json.dumps(rows[name]), flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=2))

    def rescored(name, head):
        test_ids = data.queries("test")
        rows[name] = groups(data, rescored_run(head, data, test_ids, k=10, multiplier=4), test_ids) | {
            "quantize": "binary+rescore x4"}
        print(name, json.dumps(rows[name]), flush=True)

    for kind in ("none", "binary", "binary_asym", "int8"):
        record(f"zero-shot {kind}", None, kind)
    rescored("zero-shot binary + float rescore x4", None)
    record("PCA-sign", pca_sign_head(data.doc_emb), "binary")
    record("ITQ", itq_head(data.doc_emb), "binary")

    # serving figures (MiniLM raw outputs; a linear head has the same m = 384)
    queries = data.query_emb[torch.tensor([data.query_row[q] for q in data.queries("test")])]
    timing = {}
    for kind in ("none", "binary", "binary_asym", "int8"):
        codec = make_codec(kind, data.doc_emb, normalize=True)
        timing[kind] = search_timing(codec, queries, data.doc_emb, data.collection.doc_ids, k=10)
    print("timing", json.dumps(timing), flush=True)
    (out / "timing.json").write_text(json.dumps(timing, indent=2))
    if args.skip_training:
        return

    def train(name, **changes):
        config = base.replace(output_dir=str(out / name), **changes)
        started = time.perf_counter()
        trainer = Trainer(config, data=data, progress=False)
        metrics = trainer.train()
        rows[name] = {k: metrics.get(k) for k in KEYS} | {"quantize": config.quantize, "best_step": metrics["best_step"],
                                                        "train_time_s": round(time.perf_counter() - started, 1)}
        print(name, json.dumps(rows[name]), flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=2))
        return trainer.head

    float_head = train("infonce float", method="infonce", learning_rate=0.001, num_steps=args.grad_steps)
    record("infonce float -> post-hoc binary", float_head, "binary")
    rescored("infonce float -> binary + float rescore x4", float_head)
    record("infonce float -> post-hoc int8", float_head, "int8")
    for method in ("ste", "tanh_relax"):
        train(f"{method} binary (infonce)", method=method, quantize="binary", learning_rate=0.001,
              num_steps=args.grad_steps)
    train("eggroll binary", method="eggroll", quantize="binary", optimizer="clipup", learning_rate=0.05,
          num_steps=args.es_steps, pool_size=64, batch_queries=16,
          es={"population_size": args.es_population, "rank": 1, "sigma": 0.02})


if __name__ == "__main__":
    main()
