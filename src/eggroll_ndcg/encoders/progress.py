"""Labels of the encoding progress bars ("scifact: documents"), shared by every backend.

`Encoder.encode(..., progress=)` takes `True` (a bar labelled by the kind: "documents" / "queries"), a string
(the bar's label) or `False` (no bar). `encode_collection` passes "<collection name>: <kind>" strings.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .base import Progress, l2_normalize

KIND_PLURALS = {"query": "queries", "document": "documents"}


def kind_label(kind: str) -> str:
    """"documents" or "queries" for a kind (other strings are returned unchanged)."""
    return KIND_PLURALS.get(kind, kind)


def collection_label(collection_name: str | None, kind: str) -> str:
    """The bar label for one kind of a collection: "scifact: documents" ("documents" without a name)."""
    return f"{collection_name}: {kind_label(kind)}" if collection_name else kind_label(kind)


def progress_label(progress: Progress, kind: str) -> str | None:
    """The label a bar should show, or None when there is no bar (`progress` false or an empty string)."""
    if isinstance(progress, str):
        return progress or None
    return kind_label(kind) if progress else None


def progress_bar(total: int, progress: Progress, kind: str):
    """A tqdm bar over `total` texts labelled by `progress_label` (disabled when that is None)."""
    label = progress_label(progress, kind)
    return tqdm(total=total, desc=label or "", unit="text", disable=label is None)


def encode_in_batches(texts: Sequence[str], embed: Callable[[list[str]], np.ndarray], *, dim: int, batch_size: int,
                      progress: Progress, kind: str) -> np.ndarray:
    """`embed` over `texts` in batches of `batch_size` under a labelled bar -> float32 [len(texts), dim], rows
    L2-normalized (the loop of the backends whose library has no bar of its own)."""
    texts = list(texts)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    with progress_bar(len(texts), progress, kind) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            out[start : start + len(chunk)] = np.asarray(embed(chunk), dtype=np.float32).reshape(len(chunk), dim)
            bar.update(len(chunk))
    return l2_normalize(out)
