"""`python -m eggroll_ndcg ...`: the `eggroll-ndcg` command line, also the entry point of the standard launcher
(`torchrun --nproc_per_node=W -m eggroll_ndcg train ...`; see `train.distributed`).

A failed collective (a worker died, or did not answer within the process-group timeout) ends the process
with one line on stderr and exit code 1 (`--debug`: the traceback)."""

from __future__ import annotations

import sys

from .cli import main


def run(argv: list[str] | None = None) -> int:
    from .train.distributed import DistributedError

    argv = sys.argv[1:] if argv is None else argv
    try:
        return main(argv)
    except DistributedError as error:
        if "--debug" in argv:
            raise
        print(f"eggroll-ndcg: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
