"""Hand-off study for the hybrids (docs/hybrids.md): test NDCG@10 (all / seen- / unseen-document queries)
against the hand-off step, for es_then_gradient and gradient_then_es, over seeds, plus rows for EGGROLL,
the gradient head, guided ES and es_targets on the same budget.

    OMP_NUM_THREADS=1 python benchmarks/handoff_study.py --config scifact-hybrid --steps 120 --population 512 \
        --handoffs 20 40 80 --seeds 0 1 2 --out runs/handoff-scifact --plot docs/hybrids/scifact-handoff.png

Every run is the shared trainer on one PreparedData; its best-validation head is tested once. The gradient
head is the config's `handoff.gradient` (ListNet on SciFact/SQuAD/AutoRAG, LambdaLoss on TREC DL 2019).
Hand-off step 0 of es_then_gradient and `steps` of gradient_then_es are that gradient head; the other ends
are plain EGGROLL (tests/train/test_two_phase.py checks that the phases are the registered methods), so
those are run once as `<gradient>` / `eggroll`. A k-fold config (`n_folds`) runs every fold for every seed:
each query is tested once per seed, and a seed's test figures are over the union of the folds' test queries
(its validation figure is the mean over folds). Results go to OUT/results.json (a finished run is not run
again), the table to stdout (markdown) and the plot to --plot. Paired randomization tests use the per-query
test NDCG@10 averaged over seeds; methods are chosen among hand-off steps on validation NDCG@10 only. The
"half the gap" column is the paired test of a method against the per-query midpoint (eggroll + gradient)/2.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from eggroll_ndcg.cli.train_cmd import config_path
from eggroll_ndcg.metrics.stats import randomization_test
from eggroll_ndcg.train import TrainConfig, Trainer
from eggroll_ndcg.train.evaluate import final_evaluation
from eggroll_ndcg.train.prepare import prepare_data

GROUPS = (("test/ndcg@10", "all"), ("test_seen/ndcg@10", "seen-document"), ("test_unseen/ndcg@10", "unseen-document"))


def run_one(base: TrainConfig, data, name: str, changes: dict, out: Path, results: dict) -> dict:
    if name in results:
        return results[name]
    started = time.perf_counter()
    config = base.replace(output_dir=str(out / name.replace("/", "_")), **changes)
    trainer = Trainer(config, data=data, progress=False)
    metrics = trainer.train()
    metrics["per_query"] = {q: v["ndcg@10"] for q, v in trainer.test_per_query.items()}
    metrics["wall_s"] = time.perf_counter() - started
    results[name] = metrics
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    print(f"{name}: test {metrics['test/ndcg@10']:.4f} unseen {metrics['test_unseen/ndcg@10']} "
          f"val {metrics['val/ndcg@10']:.4f} ({metrics['wall_s']:.0f} s)", flush=True)
    return metrics


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def group_means(per_query: dict[str, float], seen: set[str]) -> dict[str, float | None]:
    """test / test_seen / test_unseen NDCG@10 of one head: means of its per-query values (None: empty group),
    as final_evaluation computes them."""
    groups = {"test/ndcg@10": list(per_query), "test_seen/ndcg@10": [q for q in per_query if q in seen],
              "test_unseen/ndcg@10": [q for q in per_query if q not in seen]}
    return {key: sum(per_query[q] for q in ids) / len(ids) if ids else None for key, ids in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="scifact-hybrid")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--population", type=int, default=512)
    parser.add_argument("--max-val-queries", type=int, default=300)
    parser.add_argument("--handoffs", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", nargs="*", default=["guided_es", "es_targets"])
    parser.add_argument("--guided-rank", type=int, default=2)
    parser.add_argument("--out", default="runs/handoff-study")
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    shared = {"num_steps": args.steps, "eval_every": args.eval_every, "max_val_queries": args.max_val_queries,
              "es.population_size": args.population, "guided.grad_rank": args.guided_rank}
    path = config_path(args.config)
    gradient = TrainConfig.from_yaml(path, method="es_then_gradient").to_dict()["handoff"]["gradient"]
    methods = ("eggroll", gradient, "es_then_gradient", "gradient_then_es", *args.extra)
    bases = {m: TrainConfig.from_yaml(path, method=m).replace(**shared) for m in methods}
    n_folds = bases["eggroll"].n_folds
    folds = list(range(n_folds)) if n_folds else [None]
    zero_pq: dict[str, float] = {}
    seen: set[str] = set()
    for fold in folds:
        suffix = "" if fold is None else f"/fold{fold}"
        data = prepare_data(bases["eggroll"].replace(fold=fold), progress=False)
        _, per_query, _ = final_evaluation(None, data, normalize=bases["eggroll"].normalize)
        zero_pq.update({q: v["ndcg@10"] for q, v in per_query.items()})
        seen.update(data.seen_document_queries(tuple(per_query)))
        for seed in args.seeds:
            for m in ("eggroll", gradient, *args.extra):
                run_one(bases[m], data, f"{m}/seed{seed}{suffix}", {"seed": seed, "fold": fold}, out, results)
            for h in args.handoffs:
                for m in ("es_then_gradient", "gradient_then_es"):
                    run_one(bases[m], data, f"{m}@{h}/seed{seed}{suffix}", {"seed": seed, "fold": fold,
                            "handoff.step": h}, out, results)
    del data
    zero = group_means(zero_pq, seen)

    def seed_runs(name: str, seed: int) -> list[dict]:
        return [results[f"{name}/seed{seed}" + ("" if f is None else f"/fold{f}")] for f in folds]

    def seed_per_query(name: str, seed: int) -> dict[str, float]:
        return {q: v for run in seed_runs(name, seed) for q, v in run["per_query"].items()}

    def group(name: str, key: str) -> list[float | None]:
        """One value per seed: validation NDCG@10 (mean over folds) or a test group's NDCG@10."""
        if key == "val/ndcg@10":
            return [sum(r[key] for r in seed_runs(name, s)) / len(folds) for s in args.seeds]
        return [group_means(seed_per_query(name, s), seen)[key] for s in args.seeds]

    def per_query(name: str) -> dict[str, float]:
        runs = [seed_per_query(name, s) for s in args.seeds]
        return {q: sum(r[q] for r in runs) / len(runs) for q in zero_pq}

    def curve(order: str) -> dict[int, str]:
        ends = {0: gradient, args.steps: "eggroll"} if order == "es_then_gradient" else {0: "eggroll", args.steps: gradient}
        return {**ends, **{h: f"{order}@{h}" for h in args.handoffs}}

    rows = {"eggroll": "eggroll", gradient: gradient, **{m: m for m in args.extra}}
    for order in ("es_then_gradient", "gradient_then_es"):  # hand-off chosen on validation NDCG@10 (seed mean)
        chosen = max(args.handoffs, key=lambda h: mean_std(group(f"{order}@{h}", "val/ndcg@10"))[0])
        rows[f"{order} (hand-off {chosen}" + (", chosen on val)" if len(args.handoffs) > 1 else ")")] = f"{order}@{chosen}"
    shown = {key: "n/a (no such query)" if zero[key] is None else f"{zero[key]:.3f}" for key, _ in GROUPS}
    print(f"\nzero-shot: test {shown['test/ndcg@10']}, seen {shown['test_seen/ndcg@10']}, unseen "
          f"{shown['test_unseen/ndcg@10']}, test queries {len(seen)} seen / {len(zero_pq) - len(seen)} unseen"
          + (f" (union of {n_folds} folds)" if n_folds else ""))
    print(f"| method | val NDCG@10 | test NDCG@10 | seen-document | unseen-document | vs zero-shot (all / unseen): diff, p "
          f"| vs eggroll (all / unseen): diff, p | gap closed; vs midpoint(eggroll, {gradient}): diff, p "
          "| runs whose best head is step 0 |\n|---|---|---|---|---|---|---|---|---|")
    unseen_ids = [q for q in zero_pq if q not in seen]
    egg, grad = per_query("eggroll"), per_query(gradient)
    midpoint = {q: (egg[q] + grad[q]) / 2 for q in zero_pq}
    gap = sum(grad[q] - egg[q] for q in zero_pq) / len(zero_pq)

    def paired(mine: dict[str, float], ref: dict[str, float], ids: list[str]) -> str:
        if not ids:
            return "n/a"
        a, b = [mine[q] for q in ids], [ref[q] for q in ids]
        return f"{(sum(a) - sum(b)) / len(ids):+.3f}, p={randomization_test(a, b):.3g}"

    for label, name in rows.items():
        cells = [f"{mean_std(group(name, 'val/ndcg@10'))[0]:.3f}"]
        for key, _ in GROUPS:
            values = group(name, key)
            cells.append("n/a" if values[0] is None else "%.3f ± %.3f" % mean_std(values))
        mine = per_query(name)
        for ref in (zero_pq, egg):
            cells.append(" / ".join(paired(mine, ref, ids) for ids in (list(zero_pq), unseen_ids)))
        closed = (f"{sum(mine[q] - egg[q] for q in zero_pq) / len(zero_pq) / gap:.0%}" if gap > 0
                  else f"n/a ({gradient} not above eggroll)")
        cells.append("" if name in ("eggroll", gradient) else f"{closed}; {paired(mine, midpoint, list(zero_pq))}")
        runs = [r for s in args.seeds for r in seed_runs(name, s)]
        cells.append(f"{sum(r['best_step'] == 0 for r in runs)}/{len(runs)}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if len(args.handoffs) > 1:
        print("\n| method | " + " | ".join(f"hand-off {h}" for h in args.handoffs) + " |\n|---|"
              + "---|" * len(args.handoffs))
        for order in ("es_then_gradient", "gradient_then_es"):
            print(f"| {order} | " + " | ".join(
                " / ".join("n/a" if v[0] is None else f"{mean_std(v)[0]:.3f}" for v in
                           (group(f"{order}@{h}", "test/ndcg@10"), group(f"{order}@{h}", "test_unseen/ndcg@10")))
                for h in args.handoffs) + " |")
    if args.plot:
        plot(args, curve, group, zero)


def plot(args, curve, group, zero) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    for ax, (key, title) in zip(axes, GROUPS):
        if zero[key] is None:
            ax.set_title(f"{title}: no such test query")
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            continue
        for order, colour in (("es_then_gradient", "tab:blue"), ("gradient_then_es", "tab:orange")):
            points = sorted(curve(order).items())
            stats = [mean_std(group(name, key)) for _, name in points]
            xs = [h for h, _ in points]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, color=colour,
                        label=order)
        ax.axhline(zero[key], color="grey", linestyle="--", label="zero-shot")
        ax.set_title(f"test NDCG@10, {title} queries")
        ax.set_xlabel("hand-off step")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{args.config}: {args.steps} steps, N = {args.population}, seeds {args.seeds} (mean ± std)")
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
