"""Bad configs fail with a message that names the field, before any data is loaded or encoded."""

from __future__ import annotations

import pytest

from eggroll_ndcg.cli import main
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.trainer import Trainer


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"population_size": 255}, "population_size"),
        ({"fitness_k": 0}, "fitness_k"),
        ({"method": "sgd-magic"}, "method"),
        ({"sigma": -0.1}, "sigma"),
        ({"n_folds": 5}, "fold"),
        ({"val_metric": "ndcg10"}, "val_metric"),
        ({"val_queries": "unseen"}, "val_queries"),
    ],
)
def test_invalid_field_is_named_in_the_error(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        TrainConfig(**changes).validate()


def test_unknown_dataset_fails_before_any_work(tmp_path):
    config = TrainConfig(task="no-such-collection", output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="unknown dataset 'no-such-collection'"):
        Trainer(config)
    assert not (tmp_path / "run").exists()


def test_unknown_encoder_fails_before_any_work(synthetic_folder):
    with pytest.raises(ConfigError, match="unknown encoder 'no-such-encoder'"):
        Trainer(TrainConfig(task=str(synthetic_folder), encoder="no-such-encoder"))


def test_unknown_yaml_field_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("population: 12\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_yaml(path)


def test_cli_train_reports_odd_population_and_exits_2(capsys):
    assert main(["train", "--set", "population_size=7", "--quiet"]) == 2
    assert "population_size" in capsys.readouterr().err
