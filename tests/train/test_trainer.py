"""The shared training loop: zero-shot start, resume, determinism, held-out reporting."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from eggroll_ndcg.train.config import ConfigError
from eggroll_ndcg.train.evaluate import evaluate_head
from eggroll_ndcg.train.trainer import EGGROLLTrainer, Trainer, make_head

ALL_METHODS = ("eggroll", "infonce", "listnet", "lambdaloss", "approx_ndcg", "pl_pg")


def _evals(run_dir):
    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["event"] == "eval"]


def test_step_zero_of_identity_linear_head_reproduces_zero_shot_metrics(small_config, small_data, tmp_path):
    Trainer(small_config.replace(num_steps=1, eval_every=1), data=small_data, progress=False).train()
    step0 = _evals(tmp_path / "run")[0]
    assert step0["step"] == 0
    zero_shot, _ = evaluate_head(None, small_data, small_data.queries("val"), normalize=True)
    for name, value in zero_shot.mean.items():
        assert step0[f"val/{name}"] == value


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_trains_and_reports_held_out_test_metrics(method, small_config, small_data):
    metrics = Trainer(small_config.replace(method=method), data=small_data, progress=False).train()
    assert metrics["steps"] == small_config.num_steps
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0
    assert metrics["test_seen/count"] + metrics["test_unseen/count"] == len(small_data.queries("test"))


@pytest.mark.parametrize("head", ["mlp", "subspace", "adapter"])
@pytest.mark.parametrize("method", ["eggroll", "infonce"])
def test_every_head_starts_at_zero_shot_and_trains_with_es_and_gradients(head, method, small_config, small_data,
                                                                          tmp_path):
    config = small_config.replace(method=method, head=head, subspace_dim=4, head_hidden_size=8)
    metrics = Trainer(config, data=small_data, progress=False).train()
    zero_shot, _ = evaluate_head(None, small_data, small_data.queries("test"), normalize=True)
    untrained, _ = evaluate_head(make_head(config, small_data.doc_emb), small_data, small_data.queries("test"),
                                 normalize=True)
    assert untrained.mean == zero_shot.mean
    steps = [r for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines()) if "update_norm" in r]
    assert len(steps) == config.num_steps and all(r["update_norm"] > 0 for r in steps)  # every step moved the head
    assert 0.0 <= metrics["test/ndcg@10"] <= 1.0


@pytest.mark.parametrize("method", ["eggroll", "lambdaloss"])
def test_resumed_run_ends_with_bit_identical_weights(method, small_config, small_data, tmp_path):
    uninterrupted = Trainer(small_config.replace(method=method, output_dir=str(tmp_path / "a")),
                            data=small_data, progress=False)
    uninterrupted.train()
    interrupted_config = small_config.replace(method=method, output_dir=str(tmp_path / "b"))
    killed = Trainer(interrupted_config, data=small_data, progress=False)
    assert killed.train(stop_after=7) == {"stopped_at": 7}  # checkpoint at step 4; steps 5-7 are lost
    resumed = Trainer(interrupted_config, data=small_data, progress=False)
    resumed.train()
    for name, tensor in uninterrupted.head.state_dict().items():
        assert torch.equal(tensor, resumed.head.state_dict()[name]), name
    assert torch.equal(
        load_file(str(tmp_path / "a" / "best_head.safetensors"))["linear.weight"],
        load_file(str(tmp_path / "b" / "best_head.safetensors"))["linear.weight"],
    )
    assert [r["step"] for r in _evals(tmp_path / "b")] == [r["step"] for r in _evals(tmp_path / "a")]


def test_eggroll_improves_the_training_fitness_on_a_learnable_problem(small_config, small_data):
    config = small_config.replace(num_steps=60, eval_every=20, population_size=128, batch_queries=32)
    trainer = EGGROLLTrainer(config, data=small_data, progress=False)
    trainer.train()
    records = [json.loads(line) for line in open(f"{config.output_dir}/log.jsonl", encoding="utf-8")]
    steps = [r for r in records if r["event"] == "step"]
    first = sum(r["train/batch_ndcg"] for r in steps[:10]) / 10
    last = sum(r["train/batch_ndcg"] for r in steps[-10:]) / 10
    assert last > first + 0.02


def test_model_selection_never_reads_test_queries(small_config, small_data, monkeypatch):
    """Every evaluation during training is on val or train queries; test queries are evaluated once."""
    import eggroll_ndcg.train.evaluate as evaluate_module

    test_ids = set(small_data.queries("test"))
    calls = []
    real = evaluate_module.evaluate_head

    def spy(head, data, query_ids, **kwargs):
        calls.append(bool(test_ids & set(query_ids)))
        return real(head, data, query_ids, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_head", spy)
    Trainer(small_config, data=small_data, progress=False).train()
    assert calls.count(True) == 1 and calls[-1] is True


def test_unseen_document_validation_selects_on_val_queries_without_a_training_positive(
    small_config, small_data, monkeypatch
):
    """`val_queries: unseen-documents`: every validation query read during training and in the report has no
    relevant document among the training positives; the seen-document validation queries are never read."""
    import eggroll_ndcg.train.evaluate as evaluate_module

    val_ids = small_data.queries("val")
    seen_val = set(small_data.seen_document_queries(val_ids))
    unseen_val = small_data.validation_queries("unseen-documents")
    assert seen_val and unseen_val and set(unseen_val) == set(val_ids) - seen_val  # both groups exist here
    read = set()
    real = evaluate_module.evaluate_head

    def spy(head, data, query_ids, **kwargs):
        read.update(query_ids)
        return real(head, data, query_ids, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_head", spy)
    config = small_config.replace(val_queries="unseen-documents", output_dir=None)
    metrics = Trainer(config, data=small_data, progress=False).train()
    assert not read & seen_val and set(unseen_val) <= read
    everything = Trainer(small_config.replace(output_dir=None), data=small_data, progress=False).train()
    assert metrics["val/ndcg@10"] != everything["val/ndcg@10"]  # the report's val is the subset's


def test_resuming_with_another_config_is_refused_and_leaves_the_run_folder_unchanged(small_config, small_data,
                                                                                    tmp_path):
    config = small_config.replace(method="eggroll", output_dir=str(tmp_path / "run"))
    Trainer(config, data=small_data, progress=False).train(stop_after=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"differs in es\.sigma;"):
        Trainer(config.replace(sigma=config.es.sigma * 2), data=small_data, progress=False).train()
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before


def test_an_early_stopped_run_stays_stopped_when_resumed(small_config, small_data):
    config = small_config.replace(method="infonce", learning_rate=1.0, num_steps=40, eval_every=2, patience=1)
    first = Trainer(config, data=small_data, progress=False).train()
    assert first["steps"] < config.num_steps  # stopped early
    again = Trainer(config, data=small_data, progress=False).train()
    assert again["steps"] == first["steps"] and again["test/ndcg@10"] == first["test/ndcg@10"]


def test_a_run_folder_moved_to_another_path_resumes_bit_identically(small_config, small_data, tmp_path):
    import shutil

    straight = Trainer(small_config.replace(output_dir=str(tmp_path / "straight")), data=small_data,
                       progress=False).train()
    config = small_config.replace(output_dir=str(tmp_path / "first"))
    Trainer(config, data=small_data, progress=False).train(stop_after=5)
    shutil.move(tmp_path / "first", tmp_path / "moved")
    moved = Trainer(config.replace(output_dir=str(tmp_path / "moved")), data=small_data, progress=False).train()
    assert moved["test/ndcg@10"] == straight["test/ndcg@10"]
    assert (tmp_path / "moved" / "best_head.safetensors").read_bytes() == (
        tmp_path / "straight" / "best_head.safetensors").read_bytes()


def test_a_run_whose_best_step_is_zero_says_so(small_config, small_data, caplog):
    """A learning rate of 1e-12 cannot change a ranking: validation never beats step 0, and the run says so."""
    config = small_config.replace(method="infonce", learning_rate=1e-12, num_steps=4, eval_every=2, output_dir=None)
    with caplog.at_level("INFO"):
        metrics = Trainer(config, data=small_data, progress=False).train()
    assert metrics["best_step"] == 0 and "no validation improvement over the starting head" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        metrics = Trainer(config.replace(learning_rate=0.05, num_steps=12), data=small_data, progress=False).train()
    assert metrics["best_step"] > 0 and f"at step {metrics['best_step']} of 12" in caplog.text
