"""Learning-curve plots: every seed's run is drawn (the first seed's lives in the chosen sweep folder), and
curves that coincide (infonce, listnet on single-positive collections) are told apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eggroll_ndcg.experiments import plots
from eggroll_ndcg.experiments.plots import (
    chosen_sweep_indices, discover_runs, infer_chosen_sweep, line_styles, plot_learning_curves,
)


def _run(folder: Path, *, seed: int, learning_rate: float, fold: int | None = None) -> None:
    """A run folder as the trainer writes it: config.json and a log.jsonl of step and eval records."""
    folder.mkdir(parents=True)
    config = {"method": folder.parent.name, "seed": seed, "fold": fold, "learning_rate": learning_rate,
              "output_dir": str(folder), "task": "t"}
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    records = [{"event": "eval", "step": 0, "elapsed": 0.0, "val/ndcg@10": 0.3, "train/ndcg@10": 0.3},
               {"event": "step", "step": 1, "elapsed": 0.5, "loss": 1.0},
               {"event": "eval", "step": 1, "elapsed": 0.5, "val/ndcg@10": 0.4 + seed / 100,
                "train/ndcg@10": 0.5}]
    (folder / "log.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _compare_tree(root: Path, methods=("eggroll", "infonce"), seeds=(0, 1, 2), chosen=1) -> Path:
    """runs/ as compare writes it: sweep-<i> with the first seed, seed-<s> for the other seeds only (the
    first seed's run is the chosen sweep folder, reused)."""
    runs = root / "runs"
    for method in methods:
        for index, rate in enumerate((0.01, 0.05)):
            _run(runs / method / f"sweep-{index}", seed=seeds[0], learning_rate=rate)
        for seed in seeds[1:]:
            _run(runs / method / f"seed-{seed}", seed=seed, learning_rate=(0.01, 0.05)[chosen])
    return runs


def _read(runs: dict) -> dict[str, list[tuple[str, str]]]:
    return {m: [(r.label, r.log.parent.name) for r in rs] for m, rs in runs.items()}


def test_the_first_seed_is_found_in_the_chosen_sweep_folder(tmp_path):
    runs = _compare_tree(tmp_path)
    expected = [("seed-0", "sweep-1"), ("seed-1", "seed-1"), ("seed-2", "seed-2")]
    assert _read(discover_runs(runs, ("eggroll", "infonce"), {"eggroll": 1, "infonce": 1})) == {
        "eggroll": expected, "infonce": expected}
    assert _read(discover_runs(runs, ("eggroll",))) == {"eggroll": expected}, "inferred from config.json"
    assert infer_chosen_sweep(runs / "eggroll") == 1


def test_the_given_chosen_index_wins_and_a_seed_folder_is_not_drawn_twice(tmp_path):
    runs = _compare_tree(tmp_path, methods=("eggroll",))
    assert [r.log.parent.name for r in discover_runs(runs, ("eggroll",), {"eggroll": 0})["eggroll"]] == [
        "sweep-0", "seed-1", "seed-2"]
    _run(runs / "eggroll" / "seed-0", seed=0, learning_rate=0.05)  # a compare that writes every seed folder
    assert [r.log.parent.name for r in discover_runs(runs, ("eggroll",), {"eggroll": 1})["eggroll"]] == [
        "seed-0", "seed-1", "seed-2"]


def test_single_seed_and_k_fold_runs(tmp_path):
    runs = tmp_path / "runs"
    _run(runs / "eggroll" / "sweep-0", seed=3, learning_rate=0.01, fold=0)
    _run(runs / "eggroll" / "sweep-1", seed=3, learning_rate=0.05, fold=0)
    _run(runs / "eggroll" / "seed-3-fold-1", seed=3, learning_rate=0.05, fold=1)
    _run(runs / "eggroll" / "seed-10-fold-0", seed=10, learning_rate=0.05, fold=0)
    labels = [(r.label, r.log.parent.name) for r in discover_runs(runs, ("eggroll",))["eggroll"]]
    assert labels == [("seed-3-fold-0", "sweep-1"), ("seed-3-fold-1", "seed-3-fold-1"),
                      ("seed-10-fold-0", "seed-10-fold-0")], "numeric seed order"
    one = tmp_path / "one" / "runs"
    _run(one / "infonce" / "sweep-0", seed=0, learning_rate=0.01)  # one seed, no sweep grid
    assert [r.label for r in discover_runs(one, ("infonce",))["infonce"]] == ["seed-0"]


def test_plot_reads_every_seeds_log(tmp_path, monkeypatch):
    runs = _compare_tree(tmp_path)
    read = []
    original = plots.read_evals
    monkeypatch.setattr(plots, "read_evals", lambda path: read.append(path.relative_to(runs).as_posix())
                        or original(path))
    paths = plot_learning_curves(runs, tmp_path / "plots", ("eggroll", "infonce"), "ndcg@10",
                                 chosen_sweep={"eggroll": 1, "infonce": 1})
    assert sorted(read) == sorted(f"{m}/{f}/log.jsonl" for m in ("eggroll", "infonce")
                                  for f in ("sweep-1", "seed-1", "seed-2"))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_chosen_sweep_indices_from_results():
    results = {"methods": {"zero-shot": {"runs": {}},
                           "eggroll": {"sweep": [{"values": {"learning_rate": 0.01}}, {"values": {"learning_rate": 0.05}}],
                                       "chosen": {"learning_rate": 0.05}},
                           "infonce": {"sweep": [{"values": {}}], "chosen": {}}}}
    assert chosen_sweep_indices(results) == {"eggroll": 1, "infonce": 0}


@pytest.mark.parametrize("methods", [("eggroll", "infonce", "listnet"), ("listnet", "eggroll", "infonce")])
def test_listnet_is_dashed_and_labelled_when_drawn_with_infonce(methods):
    styles = line_styles(methods, ["c0", "c1", "c2"])
    assert (styles["infonce"].val, styles["infonce"].label) == ("-", "infonce")
    assert styles["listnet"].val == "--" and styles["listnet"].train not in (":", "-")
    assert "infonce" in styles["listnet"].label and "dashed" in styles["listnet"].label
    assert len({s.colour for s in styles.values()}) == 3


def test_listnet_alone_is_drawn_plainly():
    styles = line_styles(("eggroll", "listnet"), ["c0", "c1"])
    assert styles["listnet"] == plots.LineStyle("c1", "-", ":", "listnet")
