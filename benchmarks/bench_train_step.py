"""One EGGROLL step against one gradient step on the same head, batch and pool, and time-to-best-validation.

    python benchmarks/bench_train_step.py                       # step timings only (synthetic tensors)
    python benchmarks/bench_train_step.py --compare-dir runs/compare-stdlib-code   # + time-to-best of a compare

Part 1 times `method.step` for every method on one batch of realistic size (linear head d x d, batch of
queries, pool, population N), all measured in this run, and prints each time and its ratio to EGGROLL.
Part 2 reads `timings.json` of a finished `eggroll-ndcg compare` and prints, per method, the mean training
wall-clock and the mean time to the best validation score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from eggroll_ndcg.models.heads import build_head
from eggroll_ndcg.train.batches import PoolBatch
from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.methods import METHODS
from eggroll_ndcg.train.trainer import make_method


def synthetic_batch(batch: int, pool: int, dim: int, seed: int = 0) -> PoolBatch:
    generator = torch.Generator().manual_seed(seed)
    normal = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)  # noqa: E731
    grades = torch.zeros(batch, pool)
    grades[:, 0] = 1.0
    return PoolBatch(
        query_emb=normal(batch, dim), doc_emb=normal(batch, pool, dim), grades=grades,
        mask=torch.ones(batch, pool, dtype=torch.bool), ideal_grades=torch.ones(batch, 1),
        rows=torch.arange(batch),
    )


def time_steps(config: TrainConfig, batch: PoolBatch, repeats: int) -> float:
    """Median seconds of one `method.step` (after one warm-up step)."""
    head = build_head(config.head, batch.doc_emb.flatten(0, 1))
    method = make_method(config, head)
    method.step(batch, 0)
    times = []
    for step in range(1, repeats + 1):
        started = time.perf_counter()
        method.step(batch, step)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pool", type=int, default=128)
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compare-dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    batch = synthetic_batch(args.batch, args.pool, args.dim)
    print(f"one step, linear head {args.dim}x{args.dim}, {args.batch} queries x pool {args.pool}, "
          f"EGGROLL population {args.population} (median of {args.repeats}):")
    base = TrainConfig(es={"population_size": args.population}, learning_rate=1e-3)
    timings = {method: time_steps(base.replace(method=method), batch, args.repeats) for method in METHODS}
    for method, seconds in timings.items():
        print(f"  {method:12s} {seconds * 1000:8.2f} ms   ({seconds / timings['eggroll']:.2f}x EGGROLL)")
    if args.compare_dir:
        rows = json.loads((args.compare_dir / "timings.json").read_text(encoding="utf-8"))
        print(f"\ntime to best validation in {args.compare_dir} (mean over seed runs, training wall-clock only):")
        for method, runs in rows.items():
            print(f"  {method:12s} train {statistics.fmean(r['train_time'] for r in runs):7.1f} s   "
                  f"best val after {statistics.fmean(r['time_to_best'] for r in runs):7.1f} s")


if __name__ == "__main__":
    main()
