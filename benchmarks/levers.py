"""Screen training levers one at a time against a base config: one seed, model selection on validation only.

    python benchmarks/levers.py --config scifact --out runs/levers-scifact
    python benchmarks/levers.py --config squad --levers base fitness_k_100 query_zscore --out runs/levers-squad
    python benchmarks/levers.py --config scifact --method infonce --set learning_rate=0.001 \
        --levers base anchor=anchor_decay:0.01 --out runs/levers-scifact-infonce

Each lever is a set of `TrainConfig` overrides applied to the `base` of a packaged (or YAML) compare config,
with `--method` (default eggroll, with the settings the comparisons chose: ClipUp, lr 0.05) and `--set`.
Every run selects its best step on validation queries, as `compare` does; the table also prints test NDCG@10
split into seen-document and unseen-document queries so the reader can see what each lever does out of
sample, but a lever is only *chosen* by its validation score (the `chosen` line). One run per lever is written under --out; finished
levers are read back from `levers.jsonl` (with their full config, so a lever name reused with other settings
is refused), and an interrupted screen resumes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eggroll_ndcg.cli.train_cmd import parse_overrides, config_path  # noqa: E402
from eggroll_ndcg.experiments.compare import CompareConfig  # noqa: E402
from eggroll_ndcg.train.prepare import data_key, prepare_data  # noqa: E402
from eggroll_ndcg.train.trainer import Trainer  # noqa: E402

ES_CHOSEN = {"optimizer": "clipup", "learning_rate": 0.05}
LEVERS: dict[str, dict[str, Any]] = {
    "base": {},
    "sigma_0.005": {"es.sigma": 0.005},
    "sigma_0.05": {"es.sigma": 0.05},
    "lr_0.2": {"learning_rate": 0.2},
    "fitness_k_100": {"objective": "ndcg@100"},
    "query_zscore": {"es.shaping": "query_zscore"},
    "rank_8": {"es.rank": 8},
    "population_2048": {"es.population_size": 2048},
    "population_8192": {"es.population_size": 8192},
    "bm25_negatives_32": {"bm25_negatives": 32},
    "anchor_decay_0.01": {"anchor_decay": 0.01},
    "subspace_head": {"head": "subspace"},
    "adapter_head": {"head": "adapter"},
}
COLUMNS = ("best_step", "train/ndcg@10", "val/ndcg@10", "test/ndcg@10", "test_seen/ndcg@10", "test_unseen/ndcg@10",
           "train_time")


def parse_lever(text: str) -> tuple[str, dict[str, Any]]:
    """A lever by name, or `name=field:value,field:value` for an ad-hoc one (values parsed as YAML, as --set)."""
    if text in LEVERS:
        return text, LEVERS[text]
    name, sep, spec = text.partition("=")
    if not sep:
        raise SystemExit(f"unknown lever {text!r}; known: {', '.join(LEVERS)} (or name=field:value,...)")
    overrides = {}
    for item in spec.split(","):
        field, _, value = item.partition(":")
        overrides[field.strip()] = yaml.safe_load(value)
    return name, overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="scifact", help="compare config whose `base` is screened")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS))
    parser.add_argument("--method", default="eggroll")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="base override (YAML value)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    compare = CompareConfig.from_yaml(config_path(args.config))
    base = compare.base.replace(seed=args.seed, fold=0 if compare.base.n_folds else None, method=args.method,
                                **(ES_CHOSEN if args.method == "eggroll" else {}))
    base = base.replace(**parse_overrides(args.set))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "levers.jsonl"
    done = {}
    if done_path.exists():
        done = {row["lever"]: row for row in map(json.loads, done_path.read_text(encoding="utf-8").splitlines())}

    data_cache, encoded = {}, None
    rows = []
    for name, overrides in map(parse_lever, args.levers):
        config = base.replace(output_dir=str(out / name), **overrides).validate()
        if name in done and done[name].get("config", json.loads(config.to_json())) != json.loads(config.to_json()):
            raise SystemExit(f"{done_path}: lever {name!r} was run with another config; use another --out")
        if name not in done:
            key = data_key(config)
            if key not in data_cache:
                data_cache[key] = prepare_data(config, encoded=encoded)
                encoded = encoded or data_cache[key]  # PreparedData is an EncodedCollection
            metrics = Trainer(config, data=data_cache[key]).train()
            done[name] = {"lever": name, "overrides": overrides, "config": json.loads(config.to_json()),
                          **{c: metrics.get(c) for c in COLUMNS}}
            with open(done_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(done[name], sort_keys=True) + "\n")
        rows.append(done[name])

    print(f"\n{args.config}: {args.method} levers, seed {args.seed}, {base.num_steps} steps, best step and "
          f"lever chosen on validation queries: {base.val_queries}\n")
    print("| lever | overrides | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for row in rows:
        cells = ["n/a" if row[c] is None else f"{row[c]:.0f} s" if c == "train_time" else
                 f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS]
        print(f"| {row['lever']} | {json.dumps(row['overrides'])} | " + " | ".join(cells) + " |")
    chosen = max(rows, key=lambda r: r["val/ndcg@10"])
    print(f"\nchosen on validation: {chosen['lever']} (val {chosen['val/ndcg@10']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
