"""`eggroll-ndcg analyze RUN_DIR [RUN_DIR ...] --out DIR`: weight-space analysis of finished runs."""

from __future__ import annotations

import argparse
import sys

from .errors import guarded


def _analyze(args: argparse.Namespace) -> int:
    from ..analysis import AnalysisOptions, analyze
    from . import checks

    checks.check_device(args.device)
    checks.check_writable_dir(args.out, what="--out")
    options = AnalysisOptions(points=args.points, pairs=args.pairs, noise_scales=tuple(args.noise_scales),
                              draws=args.draws, pca_k=args.pca_k, kl_samples=args.kl_samples,
                              kl_queries=args.kl_queries, trajectories=not args.no_trajectories,
                              solution=args.solution, device=args.device or "cpu", seed=args.seed)
    analysis = analyze(args.run_dirs, args.out, options, progress=not args.quiet)
    print(f"analysed {len(analysis['runs'])} runs and {len(analysis['pairs'])} pairs: "
          f"{args.out}/analysis.json, analysis.md, plots/", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..analysis.analyze import PAIRINGS, SOLUTIONS
    from ..analysis.flatness import DEFAULT_SCALES

    parser = subparsers.add_parser(
        "analyze", help="weight-space analysis of finished runs (spectra, connectivity, flatness, judges)",
        description="Read finished run folders (any method and head) and write analysis.json, analysis.md and "
        "plots/: per-parameter update spectra and alignment, update cosines and linear mode connectivity "
        "between runs and from the base, flatness under weight noise, held-out judges, and (from the "
        "checkpoints kept with --keep-checkpoints) reward hacking and distance from the base along training.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by `train`")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--points", type=int, default=21, help="points on each linear path (default 21)")
    parser.add_argument("--pairs", choices=PAIRINGS, default="matched",
                        help="which run pairs to connect: matched (same seed across methods, same method across "
                             "seeds; default), all, none")
    parser.add_argument("--noise-scales", type=float, nargs="+", default=list(DEFAULT_SCALES), metavar="EPS",
                        help="relative weight-noise sizes of the flatness curve")
    parser.add_argument("--draws", type=int, default=5, help="noise draws per scale (default 5)")
    parser.add_argument("--pca-k", type=int, default=16, help="principal directions for the alignment")
    parser.add_argument("--kl-samples", type=int, default=64, help="Monte-Carlo rankings for the PL KL")
    parser.add_argument("--kl-queries", type=int, default=256, help="training pools for the PL KL")
    parser.add_argument("--no-trajectories", action="store_true", help="skip the kept checkpoints")
    parser.add_argument("--solution", choices=SOLUTIONS, default="best",
                        help="the head analysed per run: best (best_head.safetensors, default) or last (the last "
                             "kept checkpoint, the trained weights even where validation chose step 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise draws and ranking samples")
    parser.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=guarded(_analyze))
