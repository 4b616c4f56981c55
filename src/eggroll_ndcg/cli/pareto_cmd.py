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


def _pareto(args: argparse.Namespace) -> int:
    from ..atomic import write_atomic
    from ..data.groups import GROUPINGS
    from ..experiments.pareto import ParetoSpec, plot_fronts, run_pareto
    from ..train.prepare import prepare_data
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
    config = _config_from(args)
    out = Path(args.output_dir or f"runs/pareto-{Path(config.task).name}")
    preflight(device=config.device, output_dir=str(out))
    data = prepare_data(config, progress=not args.quiet)
    report = run_pareto(config, data, spec)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, sort_keys=True)
    write_atomic(out / "front.json", lambda path: path.write_text(text, encoding="utf-8"))
    write_atomic(out / "front.png", lambda path: plot_fronts(report, str(path)))
    for method, entry in report["methods"].items():
        print(f"{method:20s} hypervolume {entry['hypervolume_mean']:.5f} +- {entry['hypervolume_std']:.5f} "
              f"over {len(entry['seeds'])} seed(s)")
    for name, cmp in report["comparisons"].items():
        print(f"{name:40s} paired HV difference {cmp['mean']:+.5f} (wins {cmp['wins']}/{cmp['seeds']})")
    print(f"front: {out / 'front.json'}, plot: {out / 'front.png'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pareto", help="fronts of relevance vs diversity / exposure fairness",
                                   description=__doc__)
    _common(parser)
    parser.add_argument("--objectives", required=True, help="comma-separated, relevance first: ndcg@10,diversity@10")
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
    parser.add_argument("--output-dir", help="where front.json and front.png go (default runs/pareto-TASK)")
    parser.set_defaults(func=guarded(_pareto))
