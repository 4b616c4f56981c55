"""Tiny finished runs with kept checkpoints on the synthetic collection (real trainer, real run folders)."""

from __future__ import annotations

import pytest
from analysis_tiny import tiny_config
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.analysis.runs import attach_data, read_run
from eggroll_ndcg.train.trainer import Trainer


@pytest.fixture(scope="session")
def tiny_runs(synthetic_folder, tmp_path_factory):
    """{name: run folder} of eggroll seeds 0 and 1 and infonce seed 0, 8 steps each, heads kept every 4."""
    root = tmp_path_factory.mktemp("analysis-runs")
    encoded = synthetic_encoded(synthetic_folder)
    folders = {}
    for method, seed in (("eggroll", 0), ("eggroll", 1), ("infonce", 0)):
        out = root / f"{method}-seed{seed}"
        config = tiny_config(synthetic_folder, out, method, seed)
        from eggroll_ndcg.train.prepare import prepare_data
        Trainer(config, data=prepare_data(config, encoded=encoded, progress=False), progress=False).train()
        folders[f"{method}-seed{seed}"] = out
    return folders


@pytest.fixture(scope="session")
def loaded_runs(tiny_runs, synthetic_folder):
    """The tiny runs read back with their data attached."""
    runs = [read_run(path) for path in tiny_runs.values()]
    attach_data(runs, encoded=synthetic_encoded(synthetic_folder))
    return {run.label: run for run in runs}
