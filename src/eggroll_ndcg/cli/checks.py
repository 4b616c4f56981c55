"""Pre-flight checks: everything a command can verify in milliseconds before it loads data or a model.

A command that would fail after minutes of loading or encoding (no CUDA, an output folder that cannot be
written, a read-only embedding cache) fails here instead, with one line that says what is wrong and what is
available. Each check raises `PreflightError`, which `cli.errors.guarded` prints as one line (exit 2).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


class PreflightError(ValueError):
    """A command cannot run as asked; the message says why and what to do instead."""


_DEVICE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def available_devices() -> str:
    """What this machine offers, e.g. "cpu, cuda:0, cuda:1" or "cpu only (this torch build has no CUDA)"."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        count = torch.cuda.device_count()
        return "cpu, " + ", ".join(f"cuda:{i}" for i in range(count)) + f" ({count} CUDA device{'s' * (count > 1)})"
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} is built without CUDA"
    else:
        why = "torch.cuda.is_available() is False: no CUDA device or driver found"
    return f"cpu only ({why}; torch.cuda.device_count() = 0)"


def check_device(device: str | None, *, flag: str = "--device") -> None:
    """Fail unless `device` (cpu, cuda, cuda:N or mps; None means cpu) exists on this machine."""
    if device is None:
        return
    match = _DEVICE.match(device.strip())
    if match is None:
        raise PreflightError(f"{flag} {device!r}: not a device name; use cpu or cuda[:N] (available here: "
                             f"{available_devices()})")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return
    import torch

    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PreflightError(f"{flag} {device}: Apple MPS is not available here; available: {available_devices()}")
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        raise PreflightError(f"{flag} {device}: CUDA is not available here; available: {available_devices()}; "
                             f"use --device cpu")
    if index is not None and int(index) >= torch.cuda.device_count():
        raise PreflightError(f"{flag} {device}: no such CUDA device; available: {available_devices()}")


def probe_write(directory: Path) -> str | None:
    """None if a file can be created in the existing folder `directory`, else the reason. Checks the mode
    bits (os.access) and then really creates and removes a temporary file, since root ignores the bits but
    not a read-only mount."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return "no write permission"
    try:
        fd, name = tempfile.mkstemp(prefix=".eggroll-ndcg-probe-", dir=directory)
    except OSError as error:
        return error.strerror or type(error).__name__
    os.close(fd)
    os.unlink(name)
    return None


def _nearest_existing(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _folder_problem(target: Path) -> str | None:
    """Why folder `target` (absolute) cannot be used for writing, or None."""
    if target.exists() and not target.is_dir():
        return "exists and is not a directory"
    ancestor = _nearest_existing(target)
    if not ancestor.is_dir():
        return f"cannot be created: {ancestor} is a file, not a directory"
    reason = probe_write(ancestor)
    if reason is not None:
        return f"not writable ({reason} in {ancestor})"
    return None


def check_writable_dir(path: str | os.PathLike, *, what: str) -> None:
    """Fail unless folder `path` exists and is writable, or can be created (its nearest existing ancestor is
    a writable folder). `what` names the folder in the message ("output directory", "embedding cache")."""
    problem = _folder_problem(Path(path).expanduser().absolute())
    if problem is not None:
        raise PreflightError(f"{what} {path}: {problem}")


def check_output_file(path: str | os.PathLike, *, what: str) -> None:
    """Fail unless file `path` can be written: it is not a folder and its folder is writable or creatable."""
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise PreflightError(f"{what} {path}: is a directory; give a file name")
    problem = _folder_problem(target.parent)
    if problem is not None:
        raise PreflightError(f"{what} {path}: its folder {target.parent} {problem}")


def check_cache() -> None:
    """Fail unless the embedding cache ($EGGROLL_NDCG_CACHE, else ~/.cache/eggroll-ndcg) can be written: a
    cache miss writes an entry only after the encoding, which can take minutes."""
    from ..encoders.cache import default_cache_dir

    where = "$EGGROLL_NDCG_CACHE" if os.environ.get("EGGROLL_NDCG_CACHE") else "the default location"
    try:
        check_writable_dir(default_cache_dir(), what=f"embedding cache ({where})")
    except PreflightError as error:
        raise PreflightError(f"{error}; set EGGROLL_NDCG_CACHE to a writable folder") from None
