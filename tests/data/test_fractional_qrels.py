"""Fractional grades: accepted only where allowed (train_qrels), a clear error elsewhere; NDCG with fractional
gains equals trec_eval's on the grades scaled to integers (linear-gain NDCG is scale-invariant)."""

from __future__ import annotations

import json

import pytest
import pytrec_eval
import torch

from eggroll_ndcg.data.beir import load_beir
from eggroll_ndcg.data.qrels import parse_fractional_grade, parse_grade, read_qrels_file
from eggroll_ndcg.data.soft_labels import write_soft_labels
from eggroll_ndcg.data.textfiles import DataError
from eggroll_ndcg.metrics.ranking import ranking_metrics
from eggroll_ndcg.train.config import ConfigError, TrainConfig


def _beir(folder, qrels_text: str):
    folder.mkdir()
    (folder / "qrels").mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"t {i}"}) + "\n"
                                                 for i in range(4)))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "q"}) + "\n")
    (folder / "qrels" / "train.tsv").write_text(qrels_text)
    return folder


def test_fractional_grade_in_a_beir_folder_is_rejected_naming_file_line_and_where_it_is_allowed(tmp_path):
    folder = _beir(tmp_path / "c", "query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\td1\t0.5\n")
    with pytest.raises(DataError) as error:
        load_beir(folder)
    message = str(error.value)
    assert "c/qrels/train.tsv, line 3" in message and "'0.5'" in message and "train_qrels" in message
    assert "\n" not in message


def test_parse_fractional_grade_accepts_plain_decimals_only():
    assert parse_fractional_grade("0.5") == 0.5 and parse_fractional_grade(" .25 ") == 0.25
    assert parse_fractional_grade("2") == 2 and isinstance(parse_fractional_grade("2"), int)
    for bad in ("1e-1", "nan", "inf", "0,5", "1_0.5", "half", ""):
        assert parse_fractional_grade(bad) is None, bad
    assert parse_grade("0.5") is None  # the strict parser stays strict


def test_soft_qrels_round_trip_through_the_qrels_reader(tmp_path):
    qrels = {"q1": {"d0": 1, "d1": 0.5, "d2": 0}, "q2": {"d3": 2, "d0": 0.25}}
    tsv, meta = write_soft_labels(tmp_path / "soft", qrels, {"rule": "votes"}, name="train")
    assert read_qrels_file(tsv) == qrels
    assert json.loads(meta.read_text())["rule"] == "votes"
    assert not list((tmp_path / "soft").glob("*.tmp*"))  # atomic writes leave no temporary file
    with pytest.raises(DataError, match=r"train\.tsv, line 3: grade '0\.5' is not an integer"):
        read_qrels_file(tsv, fractional=False)


def test_conflicting_fractional_grades_name_both_lines(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("q1\td0\t0.5\nq1\td0\t0.25\n")
    with pytest.raises(DataError, match="line 2: .* conflicts with grade 0.5 on line 1"):
        read_qrels_file(path)


def test_pool_denoise_without_train_qrels_is_a_config_error():
    with pytest.raises(ConfigError, match="'pool_denoise'"):
        TrainConfig(pool_denoise=True).validate()


@pytest.mark.parametrize("method", ["topk", "rank"])
@pytest.mark.parametrize("scale", [4, 8])  # grades are multiples of 1/4
def test_ndcg_with_fractional_gains_equals_pytrec_eval_on_scaled_integer_grades(method, scale):
    generator = torch.Generator().manual_seed(3)
    queries, pool = 6, 20
    grade_values = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.5])
    grades = grade_values[torch.randint(0, 5, (queries, pool), generator=generator)]
    grades[:, 0] = 1.0                                       # every query has a relevant candidate
    scores = torch.randn(queries, pool, generator=generator, dtype=torch.float64)
    extra = torch.tensor([0.5, 0.0, 1.0, 0.25, 0.0, 0.5])    # a judged document outside the pool
    ideal = torch.cat([grades, extra[:, None]], dim=1).sort(dim=1, descending=True).values
    ours = ranking_metrics(scores, grades, ks=[5, 10], ideal_grades=ideal, method=method)["ndcg"]

    doc_ids = [f"d{99 - i:02d}" for i in range(pool)]       # pool order = doc id descending
    run = {f"q{q}": {doc_ids[i]: float(scores[q, i]) for i in range(pool)} for q in range(queries)}
    qrels = {f"q{q}": {doc_ids[i]: int(round(float(grades[q, i]) * scale)) for i in range(pool)}
             for q in range(queries)}
    for q in range(queries):
        qrels[f"q{q}"]["outside"] = int(round(float(extra[q]) * scale))
    assert all(float(g) * scale == round(float(g) * scale) for g in grades.flatten())  # exactly integral
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5,10"})
    theirs = evaluator.evaluate(run)
    for q in range(queries):
        assert float(ours[q, 0]) == pytest.approx(theirs[f"q{q}"]["ndcg_cut_5"], abs=1e-9)
        assert float(ours[q, 1]) == pytest.approx(theirs[f"q{q}"]["ndcg_cut_10"], abs=1e-9)


def test_losses_take_fractional_gains_and_a_soft_grade_moves_the_target():
    from eggroll_ndcg.train.losses import LOSSES

    scores = torch.tensor([[2.0, 1.0, 0.5, 0.0]], requires_grad=True)
    mask = torch.ones(1, 4, dtype=torch.bool)
    hard = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    soft = torch.tensor([[1.0, 0.0, 0.5, 0.0]])
    for name in ("listnet", "lambdaloss", "approx_ndcg"):
        loss = LOSSES[name]
        options = {"temperature": 1.0}
        values = [float(loss(scores, g, mask, g[g > 0].sort(descending=True).values[None], **options))
                  for g in (hard, soft)]
        assert all(torch.isfinite(torch.tensor(values))), name
        assert values[0] != values[1], name
