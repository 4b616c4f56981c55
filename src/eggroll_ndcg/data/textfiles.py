"""Reading the text files of a collection: numbered lines, UTF-8 (BOM stripped), errors that name file and line.

`read_lines` is the one way the BEIR loader reads a corpus, queries or qrels file. It decodes line by line, so
a byte that is not UTF-8 is reported with its line number (a text-mode reader only knows a byte offset into
its buffer), and it splits lines as Python's universal-newline mode does (`\\n`, `\\r\\n` and a lone `\\r`).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["DataError", "file_label", "require_file", "read_lines"]

UTF8_BOM = b"\xef\xbb\xbf"


class DataError(ValueError):
    """A collection file is malformed. The message names the file and, where there is one, the line."""


def file_label(path: Path, root: Path) -> str:
    """The file name shown in messages: relative to the collection folder, with the folder for context."""
    try:
        return f"{root.name}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return str(path)


def require_file(path: Path, label: str) -> None:
    """Raise `DataError` unless `path` is a regular file (a folder in its place is named as such)."""
    if path.is_dir():
        raise DataError(f"{label}: is a folder, expected a file")
    if not path.is_file():
        raise DataError(f"{label}: no such file")


def _open_binary(path: Path) -> BinaryIO:
    """Open `path` for reading bytes, transparently decompressing `.gz`."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _split_universal(raw: bytes) -> list[bytes]:
    """The lines in one `\\n`-terminated chunk, split as universal-newline mode does (endings removed)."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.split(b"\r")


def _decode(raw: bytes, label: str, number: int) -> str:
    """`raw` as UTF-8, or `DataError` naming the file, the line and the offending byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start : error.start + 1].hex()
        raise DataError(
            f"{label}, line {number}: not UTF-8 (byte 0x{byte} at column {error.start + 1}); "
            f"re-encode the file as UTF-8"
        ) from None


def read_lines(path: Path, label: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, line without its ending) for each line of the UTF-8 text file `path`.

    A UTF-8 byte-order mark at the start of the file is dropped. `.gz` files are decompressed. Any failure to
    read (a folder in place of the file, a corrupt gzip stream, a non-UTF-8 byte) is a `DataError`.
    """
    require_file(path, label)
    number = 0
    try:
        with _open_binary(path) as handle:
            for chunk_index, raw in enumerate(handle):
                if chunk_index == 0 and raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM) :]
                for piece in _split_universal(raw):
                    number += 1
                    yield number, _decode(piece, label, number)
    except (EOFError, gzip.BadGzipFile, OSError) as error:
        raise DataError(f"{label}, line {number + 1}: cannot read ({error})") from None
