"""`eggroll-ndcg pareto`: fronts of relevance against diversity / exposure (see `experiments.pareto`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..train.config import ConfigError
from .errors import guarded
from .train_cmd import _common, _config_from, preflight


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _read_front(path: str) -> dict:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"--merge: cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}: not JSON ({error.msg})") from None
    missing = [key for key in ("methods", "objectives", "grouping", "reference", "spec", "config") if key not in report]
    bad = [method for method, entry in (report.get("methods") or {}).items()
           if not isinstance(entry, dict) or not isinstance(entry.get("seeds"), dict)
           or any(not isinstance(s, dict) or "front" not in s or "hypervolume" not in s for s in entry["seeds"].values())]
    if missing or bad:
        what = f"no {', '.join(missing)}" if missing else f"method {bad[0]} has no per-seed fronts"
        raise ConfigError(f"{path}: not a front.json written by `eggroll-ndcg pareto` ({what})")
    return report


def _pareto(args: argparse.Namespace) -> int:
    if args.merge:
        from ..experiments.front_merge import merge_reports

        out = Path(args.output_dir or "runs/pareto-merged")
        preflight(device="cpu", output_dir=str(out))
        return _write(merge_reports([_read_front(p) for p in args.merge], list(args.merge)), out)
    if not args.objectives:
        raise ConfigError("--objectives is required (e.g. ndcg@10,diversity@10), unless --merge is given")
    from ..experiments.pareto import run_pareto
    from ..train.prepare import prepare_data

    spec = _spec(args)
    config = _config_from(args)
    out = Path(args.output_dir or f"runs/pareto-{Path(config.task).name}")
    preflight(device=config.device, output_dir=str(out))
    data = prepare_data(config, progress=not args.quiet)
    return _write(run_pareto(config, data, spec), out)


def _spec(args: argparse.Namespace):
    """The ParetoSpec of the command line, every value checked (ConfigError naming the flag)."""
    from ..data.groups import GROUPINGS
    from ..experiments.pareto import ParetoSpec
    from ..train.set_objectives import parse_objective

    objectives = tuple(name.strip() for name in args.objectives.split(",") if name.strip())
    if len(objectives) < 2:
        raise ConfigError(f"--objectives: expected at least two, e.g. ndcg@10,diversity@10, got {args.objectives!r}")
    for name in objectives:
        try:
            parse_objective(name)
        except ValueError as error:
            raise ConfigError(f"--objectives: {error}") from None
    GROUPINGS.get(args.groups)
    spec = ParetoSpec(objectives=objectives, grouping=args.groups,
                      seeds=tuple(int(s) for s in _floats(args.seeds, "--seeds")))
    for name in ("weights", "surrogate_weights", "mmr_lambdas", "exposure_betas", "reference"):
        value = getattr(args, name)
        if value is not None:
            setattr(spec, name, _floats(value, f"--{name.replace('_', '-')}"))
    if args.methods:
        spec.methods = tuple(m.strip() for m in args.methods.split(","))
        unknown = [m for m in spec.methods if m not in ParetoSpec.methods]
        if unknown:
            raise ConfigError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(ParetoSpec.methods)}")
    if args.gradient_lr is not None:
        spec.gradient_learning_rate = args.gradient_lr
    try:
        spec.reference_point()
    except (ValueError, KeyError) as error:
        raise ConfigError(f"--reference: {error}") from None
    return spec


def _write(report: dict, out: Path) -> int:
    """front.json and front.png of `report` into `out` (atomically), and the summary lines."""
    from ..atomic import write_atomic
    from ..experiments.pareto import plot_fronts

    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, sort_keys=True)
    write_atomic(out / "front.json", lambda path: path.write_text(text, encoding="utf-8"))
    write_atomic(out / "front.png", lambda path: plot_fronts(report, str(path)))
    for method, entry in report["methods"].items():
        print(f"{method:20s} hypervolume {entry['hypervolume_mean']:.5f} +- {entry['hypervolume_std']:.5f} "
              f"over {len(entry['seeds'])} seed(s)")
    for name, cmp in report["comparisons"].items():
        print(f"{name:40s} paired HV difference {cmp['mean']:+.5f} (wins {cmp['wins']}/{cmp['seeds']})")
    for note in report.get("notes", []):
        print(f"note: {note}")
    print(f"front: {out / 'front.json'}, plot: {out / 'front.png'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pareto", help="fronts of relevance vs diversity / exposure fairness",
                                   description=__doc__)
    _common(parser)
    parser.add_argument("--objectives", help="comma-separated, relevance first: ndcg@10,diversity@10 (required "
                        "unless --merge)")
    parser.add_argument("--groups", default="train_positive", help="document grouping: article, package, "
                        "train_positive, kmeans")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--weights", help="EGGROLL weighted-sum weights of the extra objectives (default 0,0.3,1,3)")
    parser.add_argument("--surrogate-weights", help="gradient surrogate weights (default 0,0.3,1,3)")
    parser.add_argument("--mmr-lambdas", help="MMR lambda sweep")
    parser.add_argument("--exposure-betas", help="exposure re-ranking beta sweep")
    parser.add_argument("--reference", help="hypervolume reference point, one value per objective")

    parser.add_argument("--methods", help="subset of eggroll-weighted,eggroll-pareto,genetic-weighted,"
                        "genetic-pareto,gradient-surrogate,mmr-zero-shot,mmr-gradient,exposure-rerank,zero-shot")
    parser.add_argument("--gradient-lr", type=float, help="learning rate of the gradient baseline (default 1e-3)")
    parser.add_argument("--output-dir", help="where front.json and front.png go (default runs/pareto-TASK, "
                        "with --merge runs/pareto-merged)")
    parser.add_argument("--merge", nargs="+", metavar="FRONT_JSON", help="train nothing: merge the front.json files "
                        "of runs of distinct methods under one protocol into one front (experiments.front_merge)")
    parser.set_defaults(func=guarded(_pareto))
