"""`--method genetic` and `--method genetic_es` through the shared trainer: the head is the elite, elitism,
budget accounting, bit-identical resume, every head, one-line config errors."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from eggroll_ndcg.cli import main
from eggroll_ndcg.es.genetic import materialize
from eggroll_ndcg.train.batches import batch_rows, gather_batch
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.objectives import parse_objective
from eggroll_ndcg.train.trainer import Trainer, make_head, make_method

GA = {"genetic.num_individuals": 24, "genetic.mutation_sigma": 0.05, "genetic.max_terms": 4}


def _steps(run_dir):
    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["event"] == "step"]


def _fixed_batch(config, data):
    trainer = Trainer(config, data=data, progress=False)
    trainer._setup_queries()
    rows = batch_rows(trainer.trainable, config.batch_queries, seed=0, step=0)
    return gather_batch(data.train_pools, rows, trainer.pool_query_emb, data.doc_emb)


@pytest.mark.parametrize("head", ["linear", "subspace", "adapter", "mlp"])
def test_genetic_trains_every_head_and_the_head_it_leaves_is_the_elite(head, small_config, small_data, tmp_path):
    config = small_config.replace(method="genetic", head=head, subspace_dim=8, head_hidden_size=16, num_steps=6,
                                  eval_every=3, output_dir=str(tmp_path / head), **GA)
    metrics = Trainer(config, data=small_data, progress=False).train()
    assert 0 <= metrics["test/ndcg@10"] <= 1
    for record in _steps(tmp_path / head):
        # the trainer scores its head on the batch with a plain forward: it must be the generation's best
        assert record["train/batch_ndcg"] == pytest.approx(record["fitness/best"], abs=1e-5)
        assert record["evaluations"] == 24 * config.batch_queries  # members x queries, as for eggroll
        assert record["fitness/best"] >= record["fitness/mean"]


@pytest.mark.parametrize("elites", [1, 3])
def test_elitism_never_lowers_the_best_training_fitness(elites, small_config, small_data):
    config = small_config.replace(method="genetic", **{**GA, "genetic.elites": elites, "genetic.max_terms": 3,
                                                       "genetic.crossover": "components"})
    batch = _fixed_batch(config, small_data)
    head = make_head(config, small_data.doc_emb)
    method = make_method(config, head, parse_objective(config.objective))
    best = [method.step(batch, t)["fitness/best"] for t in range(15)]
    assert method.folds > 0  # folds happened on the way and kept the elite
    assert all(later >= earlier for earlier, later in zip(best, best[1:])), best
    assert best[-1] > best[0]


def test_without_elites_the_best_training_fitness_can_fall(small_config, small_data):
    """The contrast that shows the elitism test can fail: same run, no elite kept, large mutations."""
    config = small_config.replace(method="genetic", **{**GA, "genetic.elites": 0, "genetic.mutation_sigma": 0.5})
    batch = _fixed_batch(config, small_data)
    method = make_method(config, make_head(config, small_data.doc_emb), parse_objective(config.objective))
    best = [method.step(batch, t)["fitness/best"] for t in range(10)]
    assert any(later < earlier for earlier, later in zip(best, best[1:])), best


@pytest.mark.parametrize("method", ["genetic", "genetic_es"])
def test_resumed_genetic_run_ends_with_bit_identical_weights(method, small_config, small_data, tmp_path):
    config = small_config.replace(method=method, **GA, **{"genetic.elites": 2, "genetic.crossover": "blend",
                                                         "genetic.blend_alpha": None})
    straight = Trainer(config.replace(output_dir=str(tmp_path / "a")), data=small_data, progress=False)
    straight.train()
    killed = Trainer(config.replace(output_dir=str(tmp_path / "b")), data=small_data, progress=False)
    assert killed.train(stop_after=7) == {"stopped_at": 7}  # checkpoint at step 4; steps 5-7 are lost
    resumed = Trainer(config.replace(output_dir=str(tmp_path / "b")), data=small_data, progress=False)
    resumed.train()
    for name, tensor in straight.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name
    best = [(tmp_path / run / "best_head.safetensors").read_bytes() for run in ("a", "b")]
    assert best[0] == best[1]
    def strip(records):
        return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "elapsed"} for r in records]

    assert strip(_steps(tmp_path / "a")) == strip(_steps(tmp_path / "b"))
    if method == "genetic":
        assert any(r["genetic/folds"] for r in _steps(tmp_path / "a")[:4])  # the checkpoint holds a folded base


def test_genetic_es_reports_its_archive_best_and_counts_the_archive_in_the_budget(small_config, small_data, tmp_path):
    config = small_config.replace(method="genetic_es", num_steps=4, eval_every=2, output_dir=str(tmp_path / "h"),
                                  **{"genetic.elites": 3})
    Trainer(config, data=small_data, progress=False).train()
    records = _steps(tmp_path / "h")
    assert records[0]["evaluations"] == (32 + 1) * config.batch_queries  # the archive starts as the zero-shot head
    assert records[-1]["evaluations"] == (32 + 3) * config.batch_queries  # ... and fills up to genetic.elites
    for record in records:
        assert record["train/batch_ndcg"] == pytest.approx(record["fitness/best"], abs=1e-5)


@pytest.mark.parametrize("changes, field", [
    ({"genetic.num_individuals": 1}, "genetic.num_individuals"),
    ({"genetic.elites": 24}, "genetic.elites"),
    ({"genetic.crossover": "uniform"}, "genetic.crossover"),
    ({"genetic.selection": "roulette"}, "genetic.selection"),
    ({"genetic.truncation": 0.0}, "genetic.truncation"),
    ({"genetic.blend_alpha": 1.5}, "genetic.blend_alpha"),
    ({"genetic.mutation_sigma": -1.0}, "genetic.mutation_sigma"),
    ({"genetic.max_terms": 0}, "genetic.max_terms"),
    ({"anchor_decay": 0.1}, "method"),
])
def test_bad_genetic_settings_are_one_line_errors_naming_the_field(changes, field, capsys):
    config = TrainConfig(method="genetic", **{"genetic.num_individuals": 24, **changes})
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert f"'{field}'" in str(error.value) and "\n" not in str(error.value)
    sets = [f"--set={k}={v}" for k, v in {"genetic.num_individuals": 24, **changes}.items()]
    assert main(["train", "--method", "genetic", *sets, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and len(err.splitlines()) == 1


def test_a_genetic_checkpoint_holds_the_whole_population(small_config, small_data, tmp_path):
    config = small_config.replace(method="genetic", num_steps=4, eval_every=4, output_dir=str(tmp_path / "c"), **GA)
    trainer = Trainer(config, data=small_data, progress=False)
    trainer.train()
    tensors = load_file(str(next((tmp_path / "c").rglob("tensors.safetensors"))))
    lengths = tensors["/method/population/lengths"]
    assert lengths.numel() == 24 and tensors["/method/population/keys"].shape == (int(lengths.sum()), 3)
    assert "/method/base/linear.weight" in tensors


def test_genetic_on_a_quantized_weight_head_writes_the_elite_quantized_back(small_config, small_data, tmp_path):
    """linear-int8 has no float parameter: individuals are float deltas around its dequantized W and the
    head the trainer evaluates is the elite quantized back onto the int8 grid."""
    config = small_config.replace(method="genetic", head="linear-int8", num_steps=4, eval_every=2,
                                  output_dir=str(tmp_path / "q"), **GA)
    batch = _fixed_batch(config, small_data)
    head = make_head(config, small_data.doc_emb)
    method = make_method(config, head, parse_objective(config.objective))
    method.step(batch, 0)
    assert method.folds == 0 and len(method.individuals[0]) <= 1  # slot 0 = the elite of step 0
    elite = materialize(dict(method.base_head.named_parameters()), method.individuals[0], method.factors)
    expected = copy.deepcopy(head)
    expected.requantize(elite["linear.weight"])
    assert all(torch.equal(v, dict(expected.named_buffers())[k]) for k, v in head.named_buffers())
    assert not torch.equal(expected.weight, elite["linear.weight"]) or len(method.individuals[0]) == 0
    assert 0 <= Trainer(config, data=small_data, progress=False).train()["test/ndcg@10"] <= 1


def test_a_vector_objective_makes_selection_pareto_and_the_elite_non_dominated(small_config, small_data):
    """With [K, B, O] fitness the generation is ordered by NSGA-II (rank, then crowding): the head left after
    a step is an individual that no other individual of that generation dominates on the batch means."""
    from eggroll_ndcg.es.genetic import population_scores
    from eggroll_ndcg.models.heads import score_pool
    from eggroll_ndcg.train.set_objectives import vector_objective

    config = small_config.replace(method="genetic", **GA)
    batch = _fixed_batch(config, small_data)
    head = make_head(config, small_data.doc_emb)
    objective = vector_objective(("ndcg@10", "diversity@10"))
    method = make_method(config, head, objective)
    for step in range(3):
        individuals = list(method.individuals)
        scores = population_scores(method.base_head, method.factors, individuals, batch.query_emb, batch.doc_emb,
                                   normalize=config.normalize)
        means = objective(scores, batch).double().mean(1)                       # [K, O]
        record = method.step(batch, step)
        with torch.no_grad():
            mine = objective(score_pool(head, batch.query_emb, batch.doc_emb, normalize=config.normalize)[None],
                             batch).double().mean(1)[0]                          # [O]
        assert not any(bool((m >= mine - 1e-6).all() and (m > mine + 1e-6).any()) for m in means), step
        assert record["evaluations"] == 24 * config.batch_queries
