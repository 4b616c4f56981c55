"""Atomic file writes: write a temporary sibling, flush it to disk, rename it over the target.

A reader (or a resumed run after a kill) sees either the old file or the complete new one, never a part.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary_path)`, then rename the temporary file onto `path`; returns `path`."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, value: Any) -> Path:
    """`value` as indented, key-sorted JSON (deterministic bytes for a given value)."""
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True))
