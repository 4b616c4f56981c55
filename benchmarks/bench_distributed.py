"""Population sharding (train/distributed.py): EGGROLL steps per second with W = 1 and W = 2 processes.

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py                 # linear 384x384, N = 256 and 2048
    python benchmarks/bench_distributed.py --populations 512 --head mlp --worlds 1 2 --steps 10

Each W runs in W spawned processes (gloo on 127.0.0.1, one thread each: torch.set_num_threads(1)) that build
the same head and EggrollMethod on one fixed random batch of the stdlib-code shape (32 queries x pool 128,
384-dim embeddings) and take `--steps` timed steps after one warm-up step. Printed per (N, W): the median
step time, steps per second, the speed-up over W = 1, and the share of the step spent in communication
(`time/communication`: the all_gather of the fitness, including the wait for the slowest rank), with
whether the weights after the steps are bit-identical to W = 1. Needs no data set.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, args: dict, out: str) -> None:
    os.environ.update(OMP_NUM_THREADS="1")
    if world > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port), EGGROLL_NDCG_DIST_TIMEOUT="120")
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    from safetensors.torch import save_file

    from eggroll_ndcg.train import distributed
    from eggroll_ndcg.train.batches import PoolBatch
    from eggroll_ndcg.train.config import TrainConfig
    from eggroll_ndcg.train.trainer import make_head, make_method

    config = TrainConfig(task="stdlib-code", method="eggroll", head=args["head"], head_hidden_size=args["hidden"],
                         optimizer="clipup", learning_rate=0.05,
                         **{"es.population_size": args["population"], "es.pair_chunk": args["pair_chunk"]})
    distributed.setup(config)
    generator = torch.Generator().manual_seed(0)
    n, queries, pool, docs = args["dim"], args["queries"], args["pool"], 2048
    doc_emb = torch.nn.functional.normalize(torch.randn(docs, n, generator=generator), dim=-1)
    grades = (torch.rand(queries, pool, generator=generator) < 0.03).float()
    grades[:, 0] = 1.0
    batch = PoolBatch(
        query_emb=torch.nn.functional.normalize(torch.randn(queries, n, generator=generator), dim=-1),
        doc_emb=doc_emb[torch.randint(0, docs, (queries, pool), generator=generator)], grades=grades,
        mask=torch.ones(queries, pool, dtype=torch.bool),
        ideal_grades=grades.sort(dim=1, descending=True).values[:, :8], rows=torch.arange(queries))
    head = make_head(config, doc_emb)
    method = make_method(config, head)
    method.step(batch, 0)  # warm-up
    steps, comms = [], []
    for step in range(1, args["steps"] + 1):
        started = time.perf_counter()
        record = method.step(batch, step)
        steps.append(time.perf_counter() - started)
        comms.append(record.get("time/communication", 0.0))
    if rank == 0:
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(Path(out) / "weights.safetensors"))
        Path(out, "times.txt").write_text(" ".join(f"{s!r},{c!r}" for s, c in zip(steps, comms)), encoding="utf-8")
    os._exit(0)


def run(world: int, args: dict, timeout_s: float) -> tuple[list[float], list[float], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    out = tempfile.mkdtemp(prefix=f"bench-dist-w{world}-")
    context, port = mp.get_context("spawn"), _free_port()
    processes = [context.Process(target=_worker, args=(rank, world, port, args, out), daemon=True)
                 for rank in range(world)]
    started = time.monotonic()
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(max(1.0, timeout_s - (time.monotonic() - started)))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    times = Path(out, "times.txt")
    if not times.exists():
        sys.exit(f"W = {world}: the workers did not finish (exit codes {[p.exitcode for p in processes]})")
    pairs = [item.split(",") for item in times.read_text(encoding="utf-8").split()]
    return [float(s) for s, _ in pairs], [float(c) for _, c in pairs], load_file(str(Path(out, "weights.safetensors")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--head", default="linear")
    parser.add_argument("--hidden", type=int, default=64, help="head_hidden_size of the mlp head")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--pool", type=int, default=128)
    parser.add_argument("--pair-chunk", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per (N, W) run")
    args = parser.parse_args()
    print(f"EGGROLL, {args.head} head {args.dim}x{args.dim}, {args.queries} queries x pool {args.pool}, pair_chunk "
          f"{args.pair_chunk}, gloo on CPU, 1 thread per process, {os.cpu_count()} cores, median of {args.steps} steps")
    print("\n| N | W | step (ms) | steps/s | speed-up | communication (ms) | communication share | weights = W 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for population in args.populations:
        settings = dict(population=population, head=args.head, hidden=args.hidden, dim=args.dim,
                        queries=args.queries, pool=args.pool, pair_chunk=args.pair_chunk, steps=args.steps)
        baseline, reference = None, None
        for world in args.worlds:
            steps, comms, weights = run(world, settings, args.timeout)
            step, comm = statistics.median(steps), statistics.median(comms)
            baseline = baseline or step
            reference = reference or weights
            same = all(torch.equal(weights[k], reference[k]) for k in reference)
            print(f"| {population} | {world} | {step * 1000:.1f} | {1 / step:.2f} | {baseline / step:.2f}x | "
                  f"{comm * 1000:.2f} | {comm / step:.1%} | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
