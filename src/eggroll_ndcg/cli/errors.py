"""One-line errors for the command line: the project's own errors print `eggroll-ndcg: MESSAGE` and exit 2;
`--debug` shows the traceback instead.

Besides the project's errors, an operating-system error (a file that cannot be written, a folder where a file
should be, a full disk) is printed as one line naming the path, and Ctrl-C as one line with exit 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Callable

from ..data.sources import OfflineError, UnknownSourceError
from ..data.textfiles import DataError
from ..encoders.base import EncoderError
from ..registry import UnknownNameError
from ..train.checkpoint import CheckpointError
from ..train.config import ConfigError
from .checks import PreflightError

USER_ERRORS = (EncoderError, ConfigError, DataError, UnknownSourceError, OfflineError, CheckpointError, UnknownNameError,
               PreflightError)

Handler = Callable[[argparse.Namespace], int]


def os_error_message(error: OSError) -> str:
    """`strerror: path` (and the second path of a rename), e.g. "Is a directory: /cache/ab/ab12.safetensors"."""
    if error.filename is None:
        return str(error)
    path = error.filename2 if error.filename2 is not None else error.filename
    via = f" (writing it from {error.filename})" if error.filename2 is not None else ""
    if isinstance(error, IsADirectoryError):
        return f"{path}: a directory where a file should be; remove or rename it{via}"
    return f"{path}: {error.strerror or type(error).__name__}{via}"


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """`warnings.formatwarning` for the command line: the message only, without the source line."""
    return f"eggroll-ndcg: warning: {message} ({category.__name__})\n"


def guarded(handler: Handler) -> Handler:
    """`handler` with logging set up and the user errors above turned into one line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        debug = getattr(args, "debug", False)
        formatwarning = warnings.formatwarning
        if not debug:
            warnings.formatwarning = one_line_warning
        try:
            return handler(args)
        except USER_ERRORS as error:
            if debug:
                raise
            print(f"eggroll-ndcg: {error}", file=sys.stderr)
            return 2
        except OSError as error:
            if debug:
                raise
            print(f"eggroll-ndcg: {os_error_message(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            if debug:
                raise
            print("eggroll-ndcg: interrupted (a `train` run resumes from its last checkpoint when rerun)",
                  file=sys.stderr)
            return 130
        finally:
            warnings.formatwarning = formatwarning

    run.__wrapped__ = handler  # type: ignore[attr-defined]
    return run
