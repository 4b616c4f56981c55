"""The tiny training config of the analysis tests (imported by conftest.py and the tests)."""

from __future__ import annotations

from eggroll_ndcg.train.config import TrainConfig


def tiny_config(folder, out, method: str, seed: int, **extra) -> TrainConfig:
    return TrainConfig(task=str(folder), encoder="minilm", method=method, seed=seed, pool_size=32,
                       batch_queries=16, num_steps=8, eval_every=4, population_size=32, sigma=0.05,
                       learning_rate=0.002 if method == "eggroll" else 0.01, output_dir=str(out),
                       keep_checkpoints=True, **extra)
