"""`keep_checkpoints`: the heads kept at the evaluation steps survive a kill and resume unchanged."""

from __future__ import annotations

import json

from analysis_tiny import tiny_config
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.analysis.runs import kept_states
from eggroll_ndcg.train.prepare import prepare_data
from eggroll_ndcg.train.run_folder import verify_run_folder
from eggroll_ndcg.train.trainer import Trainer


def test_a_resumed_run_keeps_the_same_heads_as_an_uninterrupted_one(synthetic_folder, tmp_path):
    encoded = synthetic_encoded(synthetic_folder)
    kept = {}
    for name, stops in (("straight", None), ("resumed", 5)):
        config = tiny_config(synthetic_folder, tmp_path / name, "eggroll", 0)
        data = prepare_data(config, encoded=encoded, progress=False)
        if stops:
            assert Trainer(config, data=data, progress=False).train(stop_after=stops) == {"stopped_at": stops}
        Trainer(config, data=data, progress=False).train()
        verify_run_folder(tmp_path / name)
        kept[name] = kept_states(tmp_path / name)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())["files"]
        assert sorted(k for k in manifest if k.startswith("checkpoints/")) == [
            "checkpoints/step-000000.safetensors", "checkpoints/step-000004.safetensors",
            "checkpoints/step-000008.safetensors"]
    assert kept["straight"].keys() == kept["resumed"].keys()
    for step, state in kept["straight"].items():
        assert all(state[k].equal(kept["resumed"][step][k]) for k in state)


def test_without_the_flag_no_head_is_kept(synthetic_folder, tmp_path):
    config = tiny_config(synthetic_folder, tmp_path / "run", "infonce", 0).replace(keep_checkpoints=False)
    Trainer(config, data=prepare_data(config, encoded=synthetic_encoded(synthetic_folder), progress=False),
            progress=False).train()
    assert not (tmp_path / "run" / "checkpoints").exists()
