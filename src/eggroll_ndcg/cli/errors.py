"""One-line errors for the command line: the project's own errors print `eggroll-ndcg: MESSAGE` and exit 2;
`--debug` shows the traceback instead."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from ..data.sources import OfflineError, UnknownSourceError
from ..data.textfiles import DataError
from ..registry import UnknownNameError
from ..train.checkpoint import CheckpointError
from ..train.config import ConfigError

USER_ERRORS = (ConfigError, DataError, UnknownSourceError, OfflineError, CheckpointError, UnknownNameError)

Handler = Callable[[argparse.Namespace], int]


def guarded(handler: Handler) -> Handler:
    """`handler` with logging set up and the user errors above turned into one line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return handler(args)
        except USER_ERRORS as error:
            if getattr(args, "debug", False):
                raise
            print(f"eggroll-ndcg: {error}", file=sys.stderr)
            return 2

    return run
