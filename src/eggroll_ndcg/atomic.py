"""Atomic file writes: write a temporary sibling, flush it to disk, rename it over the target; and the
content hashes (sha256) and sealed JSON that the run folder and checkpoints use to detect damaged files.

A reader (or a resumed run after a kill) sees either the old file or the complete new one, never a part.

Sealed JSON (`sealed_json_bytes`, `parse_sealed_json`): a JSON object written with `indent=2, sort_keys=True`
that carries, under "sha256", the sha256 of the canonical form of the rest of the object. The reader
re-serializes what it parsed and compares it with the file's bytes, so any change to the file (a flipped
digit, an edited value, even whitespace) is detected, not only changes to the content.

`fault_hook` is for tests only: when set, it is called as `fault_hook(event, path)` at every point where a
process kill could leave a partial state — "write" (a file is fully written under its temporary name, not
yet flushed or renamed; for checkpoint files the name inside the staging folder), "append" (a line was
appended to a log), "replace" (just before `os.replace(..., path)`) and "replaced" (just after). A test
raises from it to simulate a kill there (and may first truncate `path` to simulate a torn write).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

FaultHook = Callable[[str, Path], None]
fault_hook: FaultHook | None = None  # tests only: see the module docstring


def fault_point(event: str, path: str | Path) -> None:
    """Call the test hook (if any) for `event` at `path`."""
    if fault_hook is not None:
        fault_hook(event, Path(path))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary_path(path: str | Path) -> Path:
    """The temporary sibling a write of `path` goes to first (`.NAME.tmp`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


def write_temporary(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary)` for `path`'s temporary sibling and flush it to disk; returns the temporary path
    (rename it with `replace`). On an error the temporary file is removed."""
    temporary = temporary_path(path)
    try:
        write(temporary)
        fault_point("write", temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def replace(source: str | Path, target: str | Path) -> None:
    """`os.replace(source, target)` (a file or a folder), with the test hook around it."""
    fault_point("replace", target)
    os.replace(source, target)
    fault_point("replaced", target)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary_path)`, then rename the temporary file onto `path`; returns `path`."""
    path = Path(path)
    temporary = write_temporary(path, write)
    try:
        replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def json_bytes(value: Any) -> bytes:
    """`value` as indented, key-sorted JSON (deterministic bytes for a given value)."""
    return json.dumps(value, indent=2, sort_keys=True).encode("utf-8")


def write_json_atomic(path: str | Path, value: Any) -> Path:
    """`value` as indented, key-sorted JSON (deterministic bytes for a given value)."""
    return write_bytes_atomic(path, json_bytes(value))


def append_line(path: str | Path, line: str) -> None:
    """Append `line` and a newline to a text file (not atomic: a kill can leave a torn last line)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    fault_point("append", path)


# -- sealed JSON -------------------------------------------------------------------------------------------
SEAL = "sha256"


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sealed_json_bytes(value: dict[str, Any]) -> bytes:
    """`value` (a JSON object without a "sha256" key) with "sha256" added: the hash of its canonical form."""
    if SEAL in value:
        raise ValueError(f"a sealed JSON object carries its own {SEAL!r} key")
    return json_bytes({**value, SEAL: sha256_bytes(_canonical(value))}) + b"\n"


class SealError(ValueError):
    """A sealed JSON file that does not parse, or whose bytes differ from what was sealed."""


def parse_sealed_json(data: bytes, *, require: bool = True) -> tuple[dict[str, Any], bool]:
    """The object of a sealed JSON file's bytes (without its "sha256") and whether it was sealed.
    Raises `SealError` when the bytes do not parse, or are sealed but not exactly as written; an object
    without a seal raises too unless `require` is False (then it is returned with False)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SealError(f"corrupt JSON ({error})") from None
    if not isinstance(value, dict):
        raise SealError(f"expected a JSON object, got {type(value).__name__}")
    if SEAL not in value:
        if require:
            raise SealError(f"no {SEAL!r} seal")
        return value, False
    body = {key: item for key, item in value.items() if key != SEAL}
    if not isinstance(value[SEAL], str) or sealed_json_bytes(body) != data:
        raise SealError(f"its content does not match its {SEAL} seal (the file was changed or damaged)")
    return body, True
