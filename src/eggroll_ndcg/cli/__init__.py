"""The `eggroll-ndcg` command line. Each sub-command lives in its own module with a `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

_COMMAND_MODULES = ("data_cmd", "encode_cmd", "train_cmd", "analyze_cmd", "pareto_cmd", "soft_labels_cmd", "search_cmd",
                    "export_cmd", "lm_cmd")


def package_version() -> str:
    """The installed distribution's version ("unknown" when run from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eggroll-ndcg")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eggroll-ndcg",
        description="Train retrieval heads by optimizing NDCG@k with EGGROLL evolution strategies.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the installed version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and run. A command may let its last positional (a list) also follow its options by naming it in
    `set_defaults(trailing_positionals=NAME)` (`search MODEL --dataset NAME "a query"`); anything else left
    over is the usual "unrecognized arguments" error."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    trailing = getattr(args, "trailing_positionals", None)
    if extra and (trailing is None or any(item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, trailing, [*getattr(args, trailing), *extra])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
