"""Where an ES step's time goes, against the gradient baselines, on a real SciFact batch.

    python benchmarks/bench_train_step.py                        # SciFact (needs EGGROLL_NDCG_DATA), 1 thread
    python benchmarks/bench_train_step.py --populations 256 2048 --threads 2
    python benchmarks/bench_train_step.py --compare-dir runs/compare-scifact   # + time to best validation

Prints, for EGGROLL at each population size N, the median time of one step split into phases (noise: the
counter-based factors; projections: the GEMMs of the closed form; scores: its elementwise terms; metric:
the objective per member and query; gradient: shaping + the ES gradient; optimizer: the torch.optim step),
each gradient baseline's step, the ratio of the ES step at N = 2048 to an InfoNCE step on the same head,
batch and pool, and the peak memory of an ES step against inference plus the fitness matrix (each measured
in a fresh child process). The phase
split wraps the library's functions with timers for this run only; nothing in src/ is changed. With
--compare-dir it also prints each method's training time to best validation from a finished `compare`
run and the ratio of EGGROLL's to the best gradient baseline's (by validation).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

import eggroll_ndcg.es.engine as engine_module
import eggroll_ndcg.es.perturb as perturb_module
from eggroll_ndcg.experiments.compare import CompareConfig
from eggroll_ndcg.cli.train_cmd import config_path
from eggroll_ndcg.train.batches import batch_rows, gather_batch
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.trainer import make_head, make_method

PHASES = ("noise", "projections", "scores", "metric", "gradient", "optimizer")
TIMES: dict[str, float] = defaultdict(float)


def timed(phase: str, fn):
    """`fn` that adds its wall-clock time to TIMES[phase]."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[phase] += time.perf_counter() - started
    return wrapper


def instrument() -> None:
    """Wrap the library functions each phase consists of (this process only)."""
    perturb_module._closed_form_terms = timed("projections", perturb_module._closed_form_terms)
    perturb_module._block_scores = timed("scores", perturb_module._block_scores)
    engine_module.es_gradient = timed("gradient", engine_module.es_gradient)
    engine_module.shape_fitness = timed("gradient", engine_module.shape_fitness)


def real_batch(config_name: str):
    compare = CompareConfig.from_yaml(config_path(config_name))
    data = prepare_data(compare.base, progress=False)
    trainable = torch.nonzero(data.train_pools.ideal_grades[:, 0] > 0).flatten()
    rows = torch.tensor([data.query_row[q] for q in data.train_pools.query_ids])
    batch = gather_batch(data.train_pools, batch_rows(trainable, compare.base.batch_queries, seed=0, step=0),
                         data.query_emb[rows], data.doc_emb)
    return compare, data, batch


def profile(config, data, batch, repeats: int) -> tuple[float, dict[str, float]]:
    """Median step seconds of `config.method` and the mean per-phase seconds (EGGROLL only)."""
    head = make_head(config, data.doc_emb)
    method = make_method(config, head)
    if hasattr(method, "engine"):
        method.engine.optimizer.step = timed("optimizer", method.engine.optimizer.step)
        method.objective = timed("metric", method.objective)
    method.step(batch, 0)  # warm-up
    TIMES.clear()
    steps, noise = [], 0.0
    for step in range(1, repeats + 1):
        started = time.perf_counter()
        record = method.step(batch, step)
        steps.append(time.perf_counter() - started)
        noise += record.get("time/noise", 0.0)
    phases = {phase: TIMES[phase] / repeats for phase in PHASES}
    phases["noise"] = noise / repeats
    return statistics.median(steps), phases


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="scifact", help="packaged compare config whose base batch is used")
    parser.add_argument("--populations", type=int, nargs="+", default=[256, 2048, 8192])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare-dir", type=Path)
    parser.add_argument("--memory-probe", choices=("none", "inference", "es"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        return memory_probe(args.memory_probe, args.config)
    compare, data, batch = real_batch(args.config)
    base = compare.base
    instrument()
    B, P, n = batch.doc_emb.shape
    print(f"{args.config}: one step, {base.head} head {n}x{n}, {B} queries x pool {P}, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print("\n| method | N | step (ms) | " + " | ".join(PHASES) + " |")
    print("|---|---|---|" + "---|" * len(PHASES))
    es_times = {}
    for population in args.populations:
        config = base.replace(method="eggroll", optimizer="clipup", learning_rate=0.05,
                              **{"es.population_size": population})
        seconds, phases = profile(config, data, batch, args.repeats)
        es_times[population] = seconds
        shares = " | ".join(f"{phases[p] * 1000:.1f} ({phases[p] / seconds:.0%})" for p in PHASES)
        print(f"| eggroll | {population} | {seconds * 1000:.1f} | {shares} |")
    grad_times = {}
    for name in compare.methods:  # the config's gradient baselines (ES-family methods have no loss step)
        if name == "eggroll":
            continue
        seconds, _ = profile(base.replace(method=name, learning_rate=1e-3), data, batch, args.repeats)
        grad_times[name] = seconds
        print(f"| {name} | - | {seconds * 1000:.1f} |" + " |" * len(PHASES))
    if 2048 in es_times:
        print(f"\nES step at N = 2048 / InfoNCE step: {es_times[2048] / grad_times['infonce']:.2f}x "
              f"(target <= 4x; {args.threads} thread(s))")
    memory(args.config, args.threads)
    if args.compare_dir:
        time_to_best(args.compare_dir)


def memory_probe(kind: str, config_name: str) -> None:
    """Child process: load the batch, then run `kind` ("none", "inference" or "es"), print peak RSS in MiB."""
    compare, data, batch = real_batch(config_name)
    base = compare.base
    if kind == "inference":
        head = make_head(base, data.doc_emb)
        with torch.no_grad():
            head(batch.query_emb), head(batch.doc_emb)
    elif kind == "es":
        config = base.replace(method="eggroll", **{"es.population_size": 2048})
        make_method(config, make_head(config, data.doc_emb)).step(batch, 0)
    print(peak_rss_mib())


def memory(config_name: str, threads: int) -> None:
    """Peak resident memory of an ES step at N = 2048 against one inference pass plus the fitness matrix, each
    in a fresh process (ru_maxrss is a process-wide high-water mark), over a process that only loads the data."""
    import subprocess
    import sys

    def peak(kind: str) -> float:
        out = subprocess.run([sys.executable, __file__, "--config", config_name, "--threads", str(threads),
                              "--memory-probe", kind], check=True, capture_output=True, text=True).stdout
        return float(out.strip().splitlines()[-1])

    loaded, inference, es = peak("none"), peak("inference"), peak("es")
    fitness_mib = 2048 * 32 * 8 / 2**20
    print(f"\npeak RSS: a process that only loads the data {loaded:.0f} MiB; with one inference pass "
          f"{inference:.0f} MiB; with an ES step at N = 2048 {es:.0f} MiB (+{es - inference:.0f} MiB over inference; "
          f"fitness matrix {fitness_mib:.2f} MiB). ES peak / (inference peak + fitness) = "
          f"{es / (inference + fitness_mib):.2f} (target < 1.5)")


def time_to_best(folder: Path) -> None:
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    rows = json.loads((folder / "timings.json").read_text(encoding="utf-8"))
    best = {m: statistics.fmean(r["time_to_best"] for r in runs) for m, runs in rows.items()}
    print(f"\ntime to best validation in {folder} (mean over seed runs, training wall-clock only):")
    for method, runs in rows.items():
        print(f"  {method:12s} train {statistics.fmean(r['train_time'] for r in runs):7.1f} s   "
              f"best val after {best[method]:7.1f} s")
    gradient = [m for m in rows if m != "eggroll"]
    key = f"val/{results['config']['base'].get('val_metric', 'ndcg@10')}"
    def val(m):
        runs = results["methods"][m]["runs"]
        return statistics.fmean(r[key] for seed in runs.values() for r in seed)
    chosen = max(gradient, key=val)
    print(f"EGGROLL time to best / {chosen} (best gradient by validation): {best['eggroll'] / max(best[chosen], 1e-9):.1f}x"
          " (target <= 5x)")


if __name__ == "__main__":
    main()
