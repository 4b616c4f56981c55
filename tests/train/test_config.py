"""Bad configs fail with a message that names the field, before any data is loaded or encoded."""

from __future__ import annotations

import pytest
import torch

from eggroll_ndcg.cli import main
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.trainer import Trainer


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"population_size": 255}, "es.population_size"),
        ({"objective": "ndcg@0"}, "objective"),
        ({"method": "sgd-magic"}, "method"),
        ({"sigma": -0.1}, "es.sigma"),
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


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_steps": "abc"}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"population_size": "abc"}, "es.population_size"),
        ({"normalize": "yes"}, "normalize"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"pair_chunk": 0}, "es.pair_chunk"),
        ({"sigma": float("inf")}, "es.sigma"),
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"patience": 0}, "patience"),
        ({"momentum": 1.5}, "momentum"),
        ({"objective": "ndgc@10"}, "objective"),
    ],
)
def test_wrong_types_and_values_are_refused_with_the_field_named(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        TrainConfig(**changes).validate()


def test_a_near_miss_field_name_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'num_steps'"):
        TrainConfig(num_step=3)
    with pytest.raises(ConfigError, match="did you mean 'population_size'"):
        TrainConfig(**{"es.population_sise": 3})


def test_nested_dotted_and_old_flat_spellings_give_the_same_config():
    nested = TrainConfig(es={"population_size": 64, "sigma": 0.1}, loss={"temperature": 0.2}, objective="mrr@5")
    dotted = TrainConfig(**{"es.population_size": 64, "es.sigma": 0.1, "loss.temperature": 0.2, "objective": "mrr@5"})
    flat = TrainConfig(population_size=64, sigma=0.1, temperature=0.2, fitness_metric="mrr", fitness_k=5)
    assert nested == dotted == flat
    assert flat.to_dict()["es"]["population_size"] == 64 and "population_size" not in flat.to_dict()


def test_an_old_flat_yaml_config_loads(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("population_size: 64\nfitness_metric: recall\nfitness_k: 100\npl_samples: 8\n", encoding="utf-8")
    config = TrainConfig.from_yaml(path).validate()
    assert (config.es.population_size, config.objective, config.pl_pg.samples) == (64, "recall@100", 8)


def test_a_yaml_base_that_is_not_a_mapping_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("base: [1, 2]\n", encoding="utf-8")
    assert main(["train", "--config", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'base' must be a mapping" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["abc", "2.5"])
def test_cli_set_with_a_wrong_type_is_one_line_and_creates_nothing(value, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--set", f"num_steps={value}", "--output-dir", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'num_steps': expected int" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_set_accepts_the_dotted_section_form(capsys):
    from eggroll_ndcg.cli.train_cmd import _config_from
    from eggroll_ndcg.cli import build_parser

    args = build_parser().parse_args(["train", "--set", "es.population_size=2048", "--set", "loss.temperature=0.1"])
    config = _config_from(args)
    assert config.es.population_size == 2048 and config.loss.temperature == 0.1


def test_list_fields_prints_shared_and_section_fields(capsys):
    assert main(["train", "--list-fields"]) == 0
    out = capsys.readouterr().out
    assert "num_steps = 300" in out and "es.population_size = 256" in out and "pl_pg.samples = 16" in out


@pytest.mark.parametrize(("method", "objective"), [("lambdaloss", "mrr@10"), ("approx_ndcg", "recall@100")])
def test_a_loss_that_cannot_target_the_objective_refuses_the_config(method, objective):
    with pytest.raises(ConfigError, match="cannot target objective"):
        TrainConfig(method=method, objective=objective).validate()
    TrainConfig(method=method, objective="ndcg@5").validate()


@pytest.mark.parametrize("method", ["eggroll", "pl_pg", "infonce"])
def test_every_metric_the_metrics_support_is_an_objective_including_map(method):
    TrainConfig(method=method, objective="map@100").validate()


def test_clipup_momentum_zero_means_zero_and_unset_means_its_default():
    from eggroll_ndcg.train.optimizers import make_optimizer

    params = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer(TrainConfig(optimizer="clipup", momentum=0.0), params).param_groups[0]["momentum"] == 0.0
    assert make_optimizer(TrainConfig(optimizer="clipup"), params).param_groups[0]["momentum"] == 0.9
    assert make_optimizer(TrainConfig(optimizer="sgd"), params).param_groups[0]["momentum"] == 0.0


def test_a_packaged_config_trains_what_its_sweep_chose_for_the_method():
    from eggroll_ndcg.cli.train_cmd import PACKAGED_CONFIGS
    from eggroll_ndcg.experiments.compare import CompareConfig, grid

    config = TrainConfig.from_yaml(PACKAGED_CONFIGS / "scifact.yaml", method="eggroll")
    assert (config.es.population_size, config.optimizer, config.learning_rate) == (8192, "clipup", 0.05)
    for path in sorted(PACKAGED_CONFIGS.glob("*.yaml")):
        compare = CompareConfig.from_yaml(path)
        assert set(compare.tuned) == set(compare.methods), path.name
        for method, values in compare.tuned.items():
            assert values in grid(compare.sweep.get(method, {})), f"{path.name}: tuned {method} is not a grid point"
