"""`compare` reports overall progress: every planned run once, as "run i of n", with an estimate of the time
left, and none of it reaches results.json."""

from __future__ import annotations

import logging

import pytest
from synthetic_collection import synthetic_encoded

from eggroll_ndcg.experiments.compare import CompareConfig, Comparison, RunProgress, planned_runs
from eggroll_ndcg.train.config import TrainConfig


def _config(folder, out, *, seeds=(0, 1), n_folds=None) -> CompareConfig:
    base = TrainConfig(task=str(folder), encoder="minilm", pool_size=32, batch_queries=16, num_steps=2,
                       eval_every=2, population_size=32, sigma=0.05, n_folds=n_folds)
    return CompareConfig(base=base, methods=("eggroll", "infonce"), seeds=seeds,
                         sweep={"eggroll": {"learning_rate": [0.01, 0.05, 0.1]}}, output_dir=str(out))


def test_planned_runs_counts_sweep_points_and_seeds_times_folds(synthetic_folder, tmp_path):
    assert planned_runs(_config(synthetic_folder, tmp_path)) == (3 + 2) + (1 + 2)
    assert planned_runs(_config(synthetic_folder, tmp_path, seeds=(0, 1, 2), n_folds=2)) == (3 + 6) + (1 + 6)


@pytest.fixture(scope="module")
def reported(synthetic_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("progress") / "cmp"
    reports: list[RunProgress] = []
    handler = _Records()
    logger = logging.getLogger("eggroll_ndcg.experiments.compare")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        Comparison(_config(synthetic_folder, out), encoded=synthetic_encoded(synthetic_folder), progress=False,
                   on_run=reports.append).run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return out, reports, handler.messages


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_every_run_is_reported_once_with_the_right_total(reported):
    _, reports, _ = reported
    assert [r.index for r in reports] == list(range(1, 9))
    assert {r.total for r in reports} == {8}
    runs = [(r.method, r.stage, r.seed, r.point if r.stage == "sweep" else None) for r in reports]
    assert runs == [("eggroll", "sweep", 0, 0), ("eggroll", "sweep", 0, 1), ("eggroll", "sweep", 0, 2),
                    ("eggroll", "final", 0, None), ("eggroll", "final", 1, None),
                    ("infonce", "sweep", 0, 0), ("infonce", "final", 0, None), ("infonce", "final", 1, None)]
    # the first final run of each method is its chosen sweep run, reused (instant)
    assert [r.reused for r in reports] == [False, False, False, True, False, False, True, False]
    assert all(r.points == 3 for r in reports if r.method == "eggroll")


def test_the_estimate_of_the_time_left_appears_after_the_first_run(reported):
    _, reports, _ = reported
    assert reports[0].remaining is None
    assert all(r.remaining is not None and r.remaining >= 0 for r in reports[1:])
    assert reports[-1].elapsed >= reports[0].elapsed
    assert "time left unknown yet" in reports[0].describe()
    # the estimate is the mean time of the runs trained so far times the runs still to train (reused: instant)
    for i, r in enumerate(reports[1:], start=1):
        trained_before = sum(not q.reused for q in reports[:i])
        still_to_train = sum(not q.reused for q in reports[i:])
        assert r.remaining == pytest.approx(r.elapsed / trained_before * still_to_train)


def test_each_run_is_one_log_line(reported):
    _, _, messages = reported
    lines = [m for m in messages if m.startswith("compare: run ")]
    assert len(lines) == 8
    assert lines[0].startswith("compare: run 1 of 8: eggroll seed 0, sweep point 1 of 3 (learning_rate=0.01)")
    assert "about " in lines[1] and " left" in lines[1]
    assert lines[3].endswith("reused from the sweep")


def test_results_json_has_no_progress_or_wall_clock(reported, synthetic_folder, tmp_path):
    """Byte-identical to a run without a callback."""
    out, _, _ = reported
    Comparison(_config(synthetic_folder, tmp_path / "b"), encoded=synthetic_encoded(synthetic_folder),
               progress=False).run()
    assert (out / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
