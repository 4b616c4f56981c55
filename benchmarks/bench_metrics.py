"""Batched NDCG@10 vs pytrec_eval on the same rankings, measured in one run.

Workload: 512 members x 64 queries x pool 256 = 32,768 rankings; random float32 scores, graded relevance
(0-3) on a few pool candidates, and for each query extra positives outside the pool (they count in IDCG).

Timed: ``ranking_metrics(..., measures=("ndcg",), ks=[10])`` (median of repeats, after a warm-up) versus
pytrec_eval's ``RelevanceEvaluator(qrels, {"ndcg_cut.10"})`` construction plus ``evaluate(run)`` (building the
Python dicts from the tensors is *not* timed, which favours pytrec_eval). Checks that the values are equal.

Run: ``python benchmarks/bench_metrics.py [--members 512 --queries 64 --pool 256 --device cpu]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from eggroll_ndcg.metrics import ranking_metrics


def make_workload(members: int, queries: int, pool: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(members, queries, pool, generator=generator)
    judged = torch.rand(queries, pool, generator=generator) < 0.05
    grades = torch.where(judged, torch.randint(0, 4, (queries, pool), generator=generator), 0).float()
    extra = torch.randint(0, 4, (queries, 3), generator=generator).float()  # positives missing from the pool
    ideal = torch.sort(torch.cat([grades, extra], -1), -1, descending=True).values[:, :16]
    return scores, grades, extra, ideal


def time_torch(scores, grades, ideal, repeats: int) -> tuple[float, torch.Tensor]:
    sync = torch.cuda.synchronize if scores.is_cuda else (lambda: None)
    ndcg = ranking_metrics(scores, grades, ks=[10], ideal_grades=ideal, measures=("ndcg",))["ndcg"]  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        ndcg = ranking_metrics(scores, grades, ks=[10], ideal_grades=ideal, measures=("ndcg",))["ndcg"]
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), ndcg[..., 0].cpu()


def time_topk(scores, k: int, repeats: int) -> float:
    """The floor: one plain torch.topk over the scores, without tie handling or metric arithmetic."""
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
        judged.update({f"missing{j}": int(g) for j, g in enumerate(extra[q].tolist())})
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
    print(f"workload: {args.members} members x {args.queries} queries x pool {args.pool} = {n_rankings:,} rankings, "
          f"torch {torch.__version__}, device {args.device}")

    device = torch.device(args.device)
    s, g, i = scores.to(device), grades.to(device), ideal.to(device)
    default_threads = torch.get_num_threads()
    timings = {}
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        timings[threads], ours = time_torch(s, g, i, args.repeats)
        t_bf16, _ = time_torch(s.to(torch.bfloat16), g, i, args.repeats)
        t_topk = time_topk(s, 11, args.repeats)
        print(f"torch ranking_metrics NDCG@10, {threads} thread(s): float32 {timings[threads] * 1e3:7.1f} ms, "
              f"bfloat16 {t_bf16 * 1e3:7.1f} ms; floor torch.topk(11) alone {t_topk * 1e3:7.1f} ms "
              f"(medians of {args.repeats})")
    torch.set_num_threads(default_threads)

    t_trec, theirs = time_pytrec_eval(scores, grades, extra)
    print(f"pytrec_eval ndcg_cut_10 (1 thread):  {t_trec * 1e3:8.1f} ms")
    for threads, t_torch in timings.items():
        print(f"speed-up over pytrec_eval, torch with {threads} thread(s): {t_trec / t_torch:6.1f}x")

    diff = (ours.double() - theirs).abs().max().item()
    print(f"max |torch - pytrec_eval| = {diff:.2e} (float32 arithmetic); mean NDCG@10 {theirs.mean():.4f}")
    if diff > 1e-5:
        raise SystemExit("values differ from pytrec_eval")
    exact = ranking_metrics(scores.double(), grades, ks=[10], ideal_grades=ideal, measures=("ndcg",))["ndcg"][..., 0]
    diff64 = (exact - theirs).abs().max().item()
    print(f"max |torch float64 - pytrec_eval| = {diff64:.2e}")
    if diff64 > 1e-9:
        raise SystemExit("float64 values differ from pytrec_eval")


if __name__ == "__main__":
    main()
