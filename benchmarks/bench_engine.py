"""EGGROLL engine benchmark: closed-form population scoring vs one unperturbed pass vs naive ES.

Linear head W [m, n] (384->256 and 768->256), N = 256 members (128 antithetic pairs), Q = 32 queries,
pool P = 256. All three costs are measured in the same run, on the same inputs:

* unperturbed pass: q = W h_q, d = W h_d for the Q + Q·P embeddings, then the Q·P dot products;
* closed-form population: ``bilinear_population_scores`` for all N members, including the counter-based
  generation of their factors (reported separately too);
* naive ES: materialize W_i = W ± sigma·E_j for each member, then an unperturbed pass with it. This is
  slow, so a subset of members is timed and the cost is extrapolated linearly to N (printed as such).

Peak memory: torch's CPU allocator bypasses Python's, so tracemalloc cannot see tensors; each operation
is run once in a fresh subprocess, whose peak RSS (Linux ``VmHWM``) is reset just before it (write "5" to
``/proc/self/clear_refs``); the peak minus the RSS at that moment is printed, next to the analytic size of
the largest intermediate. The closed form's extra memory grows with
J·Q·P·r (scores and [Q, P, J, r] projections) plus J·r·(m + n) for the factors, never with J·m·n.

    python benchmarks/bench_engine.py [--threads 1] [--repeats 5] [--naive-members 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from eggroll_ndcg.es import bilinear_population_scores, bilinear_scores, lowrank_factors, materialize, param_id

N_MEMBERS, N_QUERIES, POOL, OUT_DIM = 256, 32, 256, 256
SIGMA = 0.02


def _inputs(n: int, m: int = OUT_DIM, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(m, n, generator=g) / n**0.5
    h_q = torch.nn.functional.normalize(torch.randn(N_QUERIES, n, generator=g), dim=-1)
    h_d = torch.nn.functional.normalize(torch.randn(N_QUERIES, POOL, n, generator=g), dim=-1)
    return weight, h_q, h_d


def _factors(m: int, n: int, rank: int):
    return lowrank_factors(0, 0, param_id("head.weight"), torch.arange(N_MEMBERS // 2), m, n, rank)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _paired(base, other, repeats: int) -> tuple[float, float, float]:
    """Median times of ``base`` and ``other``, timed alternately, and the median of their per-round
    ratios (robust to a shared CPU whose load drifts during the run)."""
    base(), other()
    t_base, t_other = [], []
    for _ in range(repeats):
        for fn, out in ((base, t_base), (other, t_other)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    ratios = [o / b for b, o in zip(t_base, t_other)]
    return statistics.median(t_base), statistics.median(t_other), statistics.median(ratios)


def _naive(weight, h_q, h_d, A, B, members: int, normalize: bool) -> torch.Tensor:
    out = []
    for i in range(members):
        j, sign = i // 2, (1.0, -1.0)[i % 2]
        w_i = weight + sign * SIGMA * (A[j] @ B[j].T) / A.shape[-1] ** 0.5
        out.append(bilinear_scores(w_i, h_q, h_d, normalize=normalize))
    return torch.stack(out)


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(kind: str, n: int, rank: int, threads: int) -> None:
    """Run one operation once and print the growth of peak RSS in bytes (called in a subprocess)."""
    torch.set_num_threads(threads)
    weight, h_q, h_d = _inputs(n)
    m = weight.shape[0]
    # Touch the kernels on tiny inputs so library workspaces do not count as the operation's memory.
    tiny = lowrank_factors(0, 0, 1, torch.arange(2), m, n, rank)
    bilinear_population_scores(weight, h_q[:1], h_d[:1, :2], *tiny, SIGMA)
    torch.matmul(torch.randn(4, n), weight.T)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    if kind == "population":
        A, B = _factors(m, n, rank)
        result = bilinear_population_scores(weight, h_q, h_d, A, B, SIGMA)
    elif kind == "unperturbed":
        result = bilinear_scores(weight, h_q, h_d)
    elif kind == "materialized":  # what a vectorized naive ES would hold: every member's W
        A, B = _factors(m, n, rank)
        result = materialize(weight, A, B, SIGMA)
    else:
        raise ValueError(kind)
    after = _status("VmHWM")
    print(json.dumps({"peak_growth": after - before, "result_bytes": result.numel() * result.element_size()}))


def _memory(kind: str, n: int, rank: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", kind, str(n), str(rank), str(threads)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a shared CPU)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--naive-members", type=int, default=16, help="members timed for naive ES, then extrapolated")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        kind, n, rank, threads = args.memory_child
        _memory_child(kind, int(n), int(rank), int(threads))
        return

    torch.set_num_threads(args.threads)
    mb = 1 / 2**20
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); N={N_MEMBERS} members, "
          f"Q={N_QUERIES} queries, pool P={POOL}, float32, medians of {args.repeats} "
          "(population/one-pass ratio: median of alternately timed rounds)")
    for n in (384, 768):
        weight, h_q, h_d = _inputs(n)
        m = weight.shape[0]
        print(f"\n== head {n} -> {m} ==")
        for normalize in (False, True):
            A, B = _factors(m, n, 1)
            t_gen = _time(lambda: _factors(m, n, 1), args.repeats)
            t_base, t_pop, ratio = _paired(
                lambda: bilinear_scores(weight, h_q, h_d, normalize=normalize),
                lambda: bilinear_population_scores(weight, h_q, h_d, *_factors(m, n, 1), SIGMA, normalize=normalize),
                args.repeats,
            )
            k = args.naive_members
            t_naive_k = _time(lambda: _naive(weight, h_q, h_d, A, B, k, normalize), max(1, args.repeats // 2))
            t_naive = t_naive_k * N_MEMBERS / k
            print(f"normalize={normalize!s:5}  unperturbed pass {t_base * 1e3:6.1f} ms | population (N={N_MEMBERS}, r=1, "
                  f"incl. factor generation {t_gen * 1e3:.1f} ms) {t_pop * 1e3:6.1f} ms = {ratio:4.2f}x one pass | "
                  f"naive ES {t_naive:6.2f} s (timed {k} members, extrapolated x{N_MEMBERS // k}) = "
                  f"{t_naive / t_pop:4.0f}x slower than closed form")
        for rank in (1, 4):
            A, B = _factors(m, n, rank)
            t_pop = _time(lambda: bilinear_population_scores(weight, h_q, h_d, A, B, SIGMA), args.repeats)
            print(f"rank {rank}: population scoring (factors given) {t_pop * 1e3:7.1f} ms")
        print("peak memory growth (fresh subprocess, VmHWM reset just before the operation):")
        base = _memory("unperturbed", n, 1, args.threads)
        print(f"  unperturbed pass          {base['peak_growth'] * mb:7.1f} MiB (output {base['result_bytes'] * mb:.1f} MiB)")
        for rank in (1, 4):
            pop = _memory("population", n, rank, args.threads)
            largest = N_QUERIES * POOL * (N_MEMBERS // 2) * rank * 4
            factors = (N_MEMBERS // 2) * rank * (m + n) * 4
            print(f"  closed form, r={rank}         {pop['peak_growth'] * mb:7.1f} MiB (output {pop['result_bytes'] * mb:.1f} MiB; "
                  f"largest intermediate [Q,P,J,r] {largest * mb:.1f} MiB; factors J·r·(m+n) {factors * mb:.2f} MiB "
                  f"= {rank * (m + n) * 4 / 2:.0f} B/member)")
        mat = _memory("materialized", n, 1, args.threads)
        print(f"  materialized W_i (naive)  {mat['peak_growth'] * mb:7.1f} MiB (J·m·n: {m * n * 4:.0f} B/member)")


if __name__ == "__main__":
    main()
