"""Batched NDCG@10 vs pytrec_eval on the same rankings, both paths of ranking_metrics, measured in one run.

Workload: 512 members x 64 queries x pool 256 = 32,768 rankings; random float32 scores; per query a handful
of judged-relevant candidates in the pool (1-5, grades 1-3, as in real pools), a few judged non-relevant ones
(grade 0), and 0-2 extra positives outside the pool (they count in IDCG).

Timed (median of repeats, after a warm-up that includes any torch.compile): ``ranking_metrics(...,
measures=("ndcg",), ks=[10], method=...)`` for method "topk" (top-k + exact ties) and "rank" (count the
candidates that beat each relevant one; the fused CPU kernel when torch.compile works, else plain torch), with
1 and 2 threads, versus pytrec_eval's ``RelevanceEvaluator(qrels, {"ndcg_cut.10"})`` construction plus
``evaluate(run)``, timed before and after the torch runs, the faster one counted (building the Python dicts
from the tensors is *not* timed; both favour pytrec_eval).
Checks the values: max |torch - pytrec_eval| <= 1e-6 with float32 scores and <= 1e-12 with float64 scores.
The machine may be shared: the load average is printed before and after.

Run: ``python benchmarks/bench_metrics.py [--members 512 --queries 64 --pool 256 --device cpu]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from eggroll_ndcg.metrics import rank_count, ranking_metrics
from eggroll_ndcg.metrics.relevant import choose_method, relevant_slots

METHODS = ("topk", "rank")
THREADS = (1, 2)


def make_workload(members: int, queries: int, pool: int, seed: int = 0):
    """scores [N, Q, P]; grades [Q, P] with 1-5 relevant (grade 1-3) and 8 judged non-relevant per query;
    extra [Q, 2] positives outside the pool (0 = none); ideal [Q, J] the positive judged grades, sorted."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(members, queries, pool, generator=generator)
    grades = torch.zeros(queries, pool)
    for q in range(queries):
        n_relevant = int(torch.randint(1, 6, (), generator=generator))
        chosen = torch.randperm(pool, generator=generator)[:n_relevant + 8]
        grades[q, chosen[:n_relevant]] = torch.randint(1, 4, (n_relevant,), generator=generator).float()
    extra = torch.randint(0, 4, (queries, 2), generator=generator).float()
    extra = extra * (torch.rand(queries, 2, generator=generator) < 0.5)
    ideal = torch.sort(torch.cat([grades, extra], -1), -1, descending=True).values[:, :16]
    return scores, grades, extra, ideal


def ndcg10(scores, grades, ideal, method: str) -> torch.Tensor:
    return ranking_metrics(scores, grades, ks=[10], ideal_grades=ideal, measures=("ndcg",), method=method)["ndcg"]


def time_torch(scores, grades, ideal, method: str, repeats: int) -> tuple[float, float, torch.Tensor]:
    """(first call incl. any compile, median of repeats) in seconds, and NDCG@10 [N, Q]."""
    sync = torch.cuda.synchronize if scores.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    ndcg = ndcg10(scores, grades, ideal, method)  # warm-up (compiles the rank kernel on first use)
    sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        ndcg = ndcg10(scores, grades, ideal, method)
        sync()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), ndcg[..., 0].cpu()


def time_topk(scores, k: int, repeats: int) -> float:
    """A reference: one plain torch.topk over the scores, without tie handling or metric arithmetic."""
    sync = torch.cuda.synchronize if scores.is_cuda else (lambda: None)
    times = []
    for _ in range(repeats + 1):
        sync()
        start = time.perf_counter()
        torch.topk(scores, k, dim=-1)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def time_pytrec_eval(scores, grades, extra) -> tuple[float, torch.Tensor]:
    import pytrec_eval

    members, queries, pool = scores.shape
    doc_ids = [f"d{pool - 1 - p:04d}" for p in range(pool)]  # position 0 = highest doc id, as in CandidatePools
    query_qrels = []
    for q in range(queries):
        judged = {doc_ids[p]: int(grades[q, p]) for p in range(pool) if grades[q, p] > 0}
        judged.update({f"missing{j}": int(g) for j, g in enumerate(extra[q].tolist()) if g > 0})
        judged.setdefault("judged-nonrelevant", 0)  # a query with no positive still has qrels (NDCG 0)
        query_qrels.append(judged)
    qrels, run = {}, {}
    values = scores.double().tolist()  # float32 values are exact in float64: same ranking and ties
    for n in range(members):
        for q in range(queries):
            qid = f"m{n}q{q}"
            qrels[qid] = query_qrels[q]
            run[qid] = dict(zip(doc_ids, values[n][q]))
    start = time.perf_counter()
    result = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    elapsed = time.perf_counter() - start
    ndcg = [[result[f"m{n}q{q}"]["ndcg_cut_10"] for q in range(queries)] for n in range(members)]
    return elapsed, torch.tensor(ndcg, dtype=torch.float64)


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg() + f" on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=512)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--pool", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    scores, grades, extra, ideal = make_workload(args.members, args.queries, args.pool)
    n_rankings = args.members * args.queries
    per_query = (grades > 0).sum(-1).float()
    print(f"workload: {args.members} members x {args.queries} queries x pool {args.pool} = {n_rankings:,} rankings, "
          f"torch {torch.__version__}, device {args.device}")
    print(f"relevant candidates per query in the pool: mean {per_query.mean():.2f}, min {per_query.min():.0f}, "
          f"max {per_query.max():.0f}; positives outside the pool per query: "
          f"mean {(extra > 0).sum(-1).float().mean():.2f}")
    print(f"before: {load()}")

    t_trec_before, theirs = time_pytrec_eval(scores, grades, extra)  # timed before and after the torch runs
    device = torch.device(args.device)
    s, g, i = scores.to(device), grades.to(device), ideal.to(device)
    slots = relevant_slots(s, g, None, torch.float32)
    print(f"method='auto' picks {choose_method(slots, args.pool, device)!r} here (R = {slots.count} relevant slots "
          f"per pool); compiled rank kernel usable: {rank_count.compiled_kernel_usable(device)}")
    default_threads = torch.get_num_threads()
    timings: dict[tuple[str, int], float] = {}
    values: dict[str, torch.Tensor] = {}
    for threads in THREADS:
        torch.set_num_threads(threads)
        for method in METHODS:
            first, timings[method, threads], values[method] = time_torch(s, g, i, method, args.repeats)
            _, t_bf16, _ = time_torch(s.to(torch.bfloat16), g, i, method, args.repeats)
            print(f"ranking_metrics NDCG@10 method={method!r:6}, {threads} thread(s): float32 "
                  f"{timings[method, threads] * 1e3:7.1f} ms, bfloat16 {t_bf16 * 1e3:7.1f} ms "
                  f"(medians of {args.repeats}; first call {first:.2f} s)")
        print(f"reference: torch.topk(11) alone, {threads} thread(s): {time_topk(s, 11, args.repeats) * 1e3:7.1f} ms")
    torch.set_num_threads(default_threads)
    if device.type == "cpu":
        print(f"rank kernel: {'compiled (torch.compile, inductor C++)' if rank_count._COMPILED.keys else 'plain torch'}"
              + (f"; compile failed: {rank_count._COMPILED.failed}" if rank_count._COMPILED.failed else ""))

    t_trec_after, _ = time_pytrec_eval(scores, grades, extra)
    t_trec = min(t_trec_before, t_trec_after)  # the faster of the two favours pytrec_eval on a loaded machine
    print(f"pytrec_eval ndcg_cut_10 (1 thread): {t_trec_before * 1e3:8.1f} ms before, {t_trec_after * 1e3:8.1f} ms "
          f"after the torch runs; speed-ups use the faster, {t_trec * 1e3:.1f} ms")
    for (method, threads), t_torch in timings.items():
        print(f"speed-up over pytrec_eval, method={method!r:6} with {threads} thread(s): {t_trec / t_torch:7.1f}x")
    for method in METHODS:
        t1, t2 = timings[method, 1], timings[method, 2]
        verdict = "no slowdown" if t2 <= t1 * 1.05 else "SLOWER"
        print(f"method={method!r:6}: 2 threads / 1 thread time ratio {t2 / t1:.2f} ({verdict})")

    failed = False
    for method in METHODS:
        diff = (values[method].double() - theirs).abs().max().item()
        exact = ndcg10(scores.double(), grades, ideal, method)[..., 0]
        diff64 = (exact - theirs).abs().max().item()
        print(f"method={method!r:6}: max |torch - pytrec_eval| float32 {diff:.2e} (target <= 1e-6), "
              f"float64 {diff64:.2e} (target <= 1e-12)")
        failed |= diff > 1e-6 or diff64 > 1e-12
    print(f"mean NDCG@10 {theirs.mean():.4f}; after: {load()}")
    if failed:
        raise SystemExit("values differ from pytrec_eval beyond the targets")


if __name__ == "__main__":
    main()
