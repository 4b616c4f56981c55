"""Quantized weights on a collection (default SciFact; MiniLM, linear head): float heads, post-hoc int8/FP4
quantization of them, native ES on int8/FP4 codes (three rules) and QAT, with test NDCG@10 (all, seen, unseen
documents), training state bytes, retention relative to the float head, and paired tests (per-query test
NDCG@10 averaged over the seeds both rows have, Holm over the tests). The reduced budget is in
docs/quantized_weights.md.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 EGGROLL_NDCG_DATA=/work/shared/datasets \
        python benchmarks/quantized_weights_experiment.py --out /tmp/qw --seeds 0 [--task squad_v1_dev_retrieval]
    python benchmarks/quantized_weights_experiment.py --out /tmp/qw --table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from eggroll_ndcg.models.heads import LinearHead
from eggroll_ndcg.quant.weights import float32_state_bytes, quantize_head
from eggroll_ndcg.train import Trainer, TrainConfig
from eggroll_ndcg.train.evaluate import final_evaluation
from eggroll_ndcg.train.prepare import prepare_data

BASE = dict(task="scifact", encoder="minilm", pool_size=128, batch_queries=32, num_steps=150, eval_every=25,
            max_val_queries=200, objective="ndcg@10", grad_clip=1.0)
ES = {"es.population_size": 1024, "es.rank": 1, "es.sigma": 0.02}
RUNS = {  # name -> config overrides
    "float eggroll": dict(method="eggroll", head="linear", optimizer="clipup", learning_rate=0.05, **ES),
    "float lambdaloss": dict(method="lambdaloss", head="linear", optimizer="adam", learning_rate=0.001),
    "native int8 SR": dict(method="quantized_es", head="linear-int8", learning_rate=0.1, **ES),
    "native int8 z-step": dict(method="quantized_es", head="linear-int8", **ES, **{"weight_es.rule": "z_step"}),
    "native mxfp4 SR": dict(method="quantized_es", head="linear-mxfp4", learning_rate=0.1, **ES),
    "native mxfp4 z-step": dict(method="quantized_es", head="linear-mxfp4", **ES, **{"weight_es.rule": "z_step"}),
    # validation sweep of the native rules (docs/quantized_weights.md): a larger SR step, a stricter z-step
    "native int8 SR lr0.5": dict(method="quantized_es", head="linear-int8", learning_rate=0.5, **ES),
    "native mxfp4 SR lr0.5": dict(method="quantized_es", head="linear-mxfp4", learning_rate=0.5, **ES),
    "native mxfp4 z-step z4": dict(method="quantized_es", head="linear-mxfp4", **ES,
                                   **{"weight_es.rule": "z_step", "weight_es.z_threshold": 4.0}),
    "native int8 momentum": dict(method="quantized_es", head="linear-int8", learning_rate=0.05, **ES,
                                 **{"weight_es.rule": "momentum_rounding"}),
    "native mxfp4 momentum": dict(method="quantized_es", head="linear-mxfp4", learning_rate=0.05, **ES,
                                  **{"weight_es.rule": "momentum_rounding"}),
    "native nvfp4 momentum": dict(method="quantized_es", head="linear-nvfp4", learning_rate=0.05, **ES,
                                  **{"weight_es.rule": "momentum_rounding"}),
    "QAT int8": dict(method="qat", head="linear-int8", optimizer="adam", learning_rate=0.001),
    "QAT mxfp4": dict(method="qat", head="linear-mxfp4", optimizer="adam", learning_rate=0.001),
    "QAT nvfp4": dict(method="qat", head="linear-nvfp4", optimizer="adam", learning_rate=0.001),
}
KEYS = ("test/ndcg@10", "test_seen/ndcg@10", "test_unseen/ndcg@10", "val/ndcg@10")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/qw")
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="*", default=None, help="run names (default: all)")
    parser.add_argument("--table", action="store_true", help="print the markdown table of results.json and stop")
    args = parser.parse_args()
    out = Path(args.out)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.table:
        print(table(results))
        print()
        print(paired_tests(results, out))
        return
    base = {**BASE, "task": args.task}
    data = prepare_data(TrainConfig(**base), progress=False)
    for seed in args.seeds:
        for name, overrides in RUNS.items():
            if args.only and name not in args.only:
                continue
            folder = out / "runs" / f"{name}-{seed}".replace(" ", "_")
            config = TrainConfig(**base, **overrides, seed=seed, output_dir=str(folder))
            started = time.perf_counter()
            metrics = Trainer(config, data=data, progress=False).train()
            row = {k: metrics.get(k) for k in KEYS} | {"seconds": time.perf_counter() - started, "folder": folder.name}
            log = [json.loads(line) for line in open(Path(config.output_dir) / "log.jsonl")]
            steps = [r for r in log if r["event"] == "step"]
            if "memory/state_bytes" in steps[-1]:
                row["state_bytes"] = steps[-1]["memory/state_bytes"]
            else:  # float heads: W + the optimizer's per-weight state
                row["state_bytes"] = float32_state_bytes((384, 384), config.optimizer)
            results[f"{name} | seed {seed}"] = row
            print(name, seed, json.dumps(row), flush=True)
            if name.startswith("float"):
                head = LinearHead(384, 384)
                head.load_state_dict(load_file(str(Path(config.output_dir) / "best_head.safetensors")))
                for fmt in ("int8", "mxfp4", "nvfp4"):
                    summary, per_query, _ = final_evaluation(quantize_head(head, fmt), data, normalize=True)
                    post_folder = out / "post-hoc" / f"{fmt}-{name}-{seed}".replace(" ", "_")
                    post_folder.mkdir(parents=True, exist_ok=True)
                    (post_folder / "test_per_query.json").write_text(json.dumps(per_query))
                    post = {k: summary.get(k) for k in KEYS} | {"state_bytes": quantize_head(head, fmt).state_bytes(),
                                                              "folder": f"../post-hoc/{post_folder.name}"}
                    results[f"post-hoc {fmt} of {name} | seed {seed}"] = post
                    print("post-hoc", fmt, name, seed, json.dumps(post), flush=True)
            results_path.write_text(json.dumps(results, indent=1))


def ceiling_of(name: str) -> str:
    """The float head a row's retention and paired test refer to."""
    return "float lambdaloss" if ("lambdaloss" in name or name.startswith("QAT")) else "float eggroll"


def paired_tests(results: dict, out: Path) -> str:
    """Markdown rows: every non-float row against its float head, per-query test NDCG@10 averaged over the
    seeds both rows ran (runs without a stored per-query file are skipped), paired randomization test, Holm."""
    from eggroll_ndcg.metrics.stats import holm, randomization_test

    def per_query(name: str, seeds: list[str]) -> dict[str, float] | None:
        values: dict[str, list[float]] = {}
        for seed in seeds:
            folder = results[f"{name} | seed {seed}"].get("folder", f"{name}-{seed}".replace(" ", "_"))
            path = out / "runs" / folder / "test_per_query.json"
            if not path.is_file():
                return None
            for query, measures in json.loads(path.read_text()).items():
                values.setdefault(query, []).append(measures["ndcg@10"])
        return {q: sum(v) / len(v) for q, v in values.items()}

    seeds_of: dict[str, list[str]] = {}
    for key in results:
        name, _, seed = key.partition(" | seed ")
        seeds_of.setdefault(name, []).append(seed)
    rows = []
    for name, seeds in seeds_of.items():
        if name.startswith("float"):
            continue
        ceiling = ceiling_of(name)
        common = sorted(set(seeds) & set(seeds_of.get(ceiling, [])))
        ours, theirs = per_query(name, common), per_query(ceiling, common)
        if not common or ours is None or theirs is None:
            continue
        queries = sorted(ours)
        a, b = [ours[q] for q in queries], [theirs[q] for q in queries]
        rows.append((name, ceiling, len(common), sum(a) / len(a) - sum(b) / len(b), randomization_test(a, b)))
    adjusted = holm([r[4] for r in rows]) if rows else []
    lines = ["| row | vs | seeds | mean diff (test ndcg@10) | randomization p | Holm p |", "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {c} | {s} | {d:+.4f} | {p:.3g} | {h:.3g} |" for (n, c, s, d, p), h in zip(rows, adjusted)]
    return "\n".join(lines)


def table(results: dict) -> str:
    """Mean ± std over seeds per row, and retention of test NDCG@10 relative to the float head it belongs to
    (EGGROLL rows: float eggroll; gradient and QAT rows: float lambdaloss)."""
    rows: dict[str, list[dict]] = {}
    for key, row in results.items():
        rows.setdefault(key.split(" | ")[0], []).append(row)

    def stat(values: list[float | None]) -> str:
        if any(v is None for v in values):  # e.g. test_seen on SQuAD, where no test query has a seen document
            return "n/a"
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return f"{mean:.4f} ± {std:.4f}" if len(values) > 1 else f"{mean:.4f}"

    def mean(name: str) -> float:
        return sum(r["test/ndcg@10"] for r in rows[name]) / len(rows[name])

    lines = ["| row | seeds | test ndcg@10 | test_seen | test_unseen | val | state bytes | retention |",
             "|---|---|---|---|---|---|---|---|"]
    for name, group in rows.items():
        ceiling = ceiling_of(name)
        cells = [stat([r[k] for r in group]) for k in KEYS[:3]] + [stat([r["val/ndcg@10"] for r in group])]
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells)
                     + f" | {int(group[0]['state_bytes']):,} | {mean(name) / mean(ceiling):.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
