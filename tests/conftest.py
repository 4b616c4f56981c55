"""Shared fixtures: the real collections in $EGGROLL_NDCG_DATA (CI sets it to ../shared/datasets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path:
    """The folder of real BEIR collections: $EGGROLL_NDCG_DATA, else ../shared/datasets beside the repo."""
    configured = os.environ.get("EGGROLL_NDCG_DATA")
    path = Path(configured) if configured else REPO.parent / "shared" / "datasets"
    if not path.is_dir():
        raise RuntimeError(
            f"real collections not found at {path}: set EGGROLL_NDCG_DATA to the folder that holds scifact/ etc."
        )
    return path


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    return shared_datasets_dir()


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> Path:
    """The small synthetic BEIR folder of `synthetic_collection` (tests/ is on sys.path)."""
    from synthetic_collection import write_synthetic_beir

    folder = tmp_path_factory.mktemp("synthetic") / "synthetic"
    write_synthetic_beir(folder)
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes embeddings to a per-session temp cache, never to the user's cache."""
    monkeypatch.setenv("EGGROLL_NDCG_CACHE", str(tmp_path_factory.getbasetemp() / "embedding-cache"))
