"""A deterministic stand-in for a real encoder (fast tests)."""

from __future__ import annotations

import hashlib

import numpy as np


class FakeEncoder:
    """A deterministic encoder that counts its calls and records the `progress` argument of each."""

    def __init__(self, identity: str = "fake-v1", dim: int = 8) -> None:
        self.name, self.identity, self.dim = "fake", identity, dim
        self.calls = 0
        self.progress_seen: list = []

    def encode(self, texts, *, kind, batch_size=64, progress=True) -> np.ndarray:
        self.calls += 1
        self.progress_seen.append(progress)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.identity}|{kind}|{text}".encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
