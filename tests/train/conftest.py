"""Fixtures over the synthetic collection of `synthetic_collection` (tests/ is on sys.path via tests/conftest.py)."""

from __future__ import annotations


import pytest
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.train.config import TrainConfig
from eggroll_ndcg.train.prepare import prepare_data


@pytest.fixture()
def small_config(synthetic_folder, tmp_path) -> TrainConfig:
    return TrainConfig(
        task=str(synthetic_folder), encoder="minilm", pool_size=32, batch_queries=16, num_steps=12,
        eval_every=4, population_size=32, sigma=0.05, learning_rate=0.05, output_dir=str(tmp_path / "run"),
    )


@pytest.fixture()
def small_data(small_config, synthetic_folder):
    return prepare_data(small_config, encoded=synthetic_encoded(synthetic_folder), progress=False)
