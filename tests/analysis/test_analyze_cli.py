"""`eggroll-ndcg analyze` end to end on tiny runs trained through `train --keep-checkpoints`, and its
one-line errors for bad run folders."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoders"))
from _fake_encoder import FakeEncoder  # noqa: E402

from eggroll_ndcg.cli import main  # noqa: E402

TINY = ["--set", "pool_size=16", "--set", "batch_queries=16", "--set", "num_steps=4", "--set", "eval_every=2",
        "--set", "es.population_size=16", "--set", "learning_rate=0.01", "--quiet"]


@pytest.fixture(scope="module")
def cli_runs(synthetic_folder, tmp_path_factory):
    """Two runs (eggroll and infonce, seed 0) written by the `train` command with --keep-checkpoints, under
    a fake encoder (the same one `analyze` then reads them with)."""
    import eggroll_ndcg.encoders as encoders
    import eggroll_ndcg.train.prepare as prepare

    root = tmp_path_factory.mktemp("cli-runs")
    fake = FakeEncoder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoders, "load_encoder", lambda name, device="cpu": fake)
        patch.setattr(prepare, "load_encoder", lambda name, device="cpu": fake)
        patch.setenv("EGGROLL_NDCG_CACHE", str(root / "cache"))
        for method in ("eggroll", "infonce"):
            assert main(["train", "--task", str(synthetic_folder), "--method", method, "--keep-checkpoints",
                         "--output-dir", str(root / method), *TINY]) == 0
        yield root, patch


def run_analyze(args, capsys):
    code = main(["analyze", *args])
    return code, capsys.readouterr().err


def test_train_keep_checkpoints_writes_hashed_heads_at_every_evaluation(cli_runs):
    root, _ = cli_runs
    manifest = json.loads((root / "eggroll" / "manifest.json").read_text())["files"]
    kept = sorted(p.name for p in (root / "eggroll" / "checkpoints").iterdir())
    assert kept == ["step-000000.safetensors", "step-000002.safetensors", "step-000004.safetensors"]
    assert all(f"checkpoints/{name}" in manifest for name in kept)


def test_analyze_writes_the_json_the_markdown_and_the_plots(cli_runs, tmp_path, capsys):
    root, _ = cli_runs
    out = tmp_path / "analysis"
    code, err = run_analyze([str(root / "eggroll"), str(root / "infonce"), "--out", str(out), "--points", "5",
                             "--draws", "2", "--noise-scales", "0", "0.05", "--kl-samples", "4", "--quiet"], capsys)
    assert code == 0, err
    analysis = json.loads((out / "analysis.json").read_text())
    assert [r["method"] for r in analysis["runs"]] == ["eggroll", "infonce"]
    assert len(analysis["pairs"]) == 1 and len(analysis["pairs"][0]["path"]["t"]) == 5
    for run in analysis["runs"]:
        assert run["base_path"]["val"][-1] == run["metrics"]["val/ndcg@10"]
        assert run["flatness"]["mean"][0] == run["metrics"]["val/ndcg@10"]
        assert run["judges"]["test/ndcg@10"] == run["metrics"]["test/ndcg@10"]  # the best head's, not W0's
        assert run["judges_base"]["test/ndcg@10"] == run["trajectory"][0]["test"]
        assert [p["step"] for p in run["trajectory"]] == [0, 2, 4]
    assert (out / "analysis.md").read_text().startswith("# Weight-space analysis")
    for name in ("spectra", "connectivity", "flatness", "reward_hacking", "divergence"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000


def one_line_error(code, err):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("eggroll-ndcg: "), err
    return lines[0]


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    line = one_line_error(*run_analyze([str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys))
    assert "nope" in line and "not a run folder" in line


def test_an_unfinished_run_is_a_one_line_error(cli_runs, tmp_path, capsys):
    root, _ = cli_runs
    copy = tmp_path / "unfinished"
    shutil.copytree(root / "infonce", copy)
    (copy / "metrics.json").unlink()
    line = one_line_error(*run_analyze([str(copy), "--out", str(tmp_path / "o")], capsys))
    assert "metrics.json" in line and "did not finish" in line


def test_a_damaged_kept_checkpoint_is_a_one_line_error_naming_it(cli_runs, tmp_path, capsys):
    root, _ = cli_runs
    copy = tmp_path / "damaged"
    shutil.copytree(root / "infonce", copy)
    kept = copy / "checkpoints" / "step-000002.safetensors"
    data = bytearray(kept.read_bytes())
    data[-1] ^= 0xFF
    kept.write_bytes(bytes(data))
    line = one_line_error(*run_analyze([str(copy), "--out", str(tmp_path / "o")], capsys))
    assert "step-000002.safetensors" in line and "sha256" in line


def test_a_folder_that_is_not_a_run_and_a_run_given_twice_are_one_line_errors(cli_runs, tmp_path, capsys):
    root, _ = cli_runs
    (tmp_path / "empty").mkdir()
    line = one_line_error(*run_analyze([str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys))
    assert "config.json" in line
    twice = [str(root / "infonce"), str(root / "infonce"), "--out", str(tmp_path / "o")]
    line = one_line_error(*run_analyze(twice, capsys))
    assert "twice" in line


def test_bad_options_are_one_line_errors(cli_runs, tmp_path, capsys):
    root, _ = cli_runs
    line = one_line_error(*run_analyze([str(root / "infonce"), "--out", str(tmp_path / "o"), "--points", "1"], capsys))
    assert "--points" in line


def test_a_run_whose_other_methods_section_changed_since_still_loads(cli_runs, tmp_path):
    """A field renamed in another method's section (not read by this run) does not lock the run out; a bad
    field in the run's own section still does."""
    from eggroll_ndcg.analysis.runs import read_run
    from eggroll_ndcg.train.config import ConfigError
    from eggroll_ndcg.train.run_folder import CONFIG, RunFolder

    root, _ = cli_runs
    for section, loads in (("es", True), ("loss", False)):  # infonce reads `loss`, not `es`
        copy = tmp_path / section
        shutil.copytree(root / "infonce", copy)
        values = json.loads((copy / CONFIG).read_text())
        values[section]["renamed_field"] = 1
        RunFolder(copy)._commit({CONFIG: lambda tmp, v=values: tmp.write_text(json.dumps(v))})  # re-hashed
        if loads:
            assert read_run(copy).config.method == "infonce"
        else:
            with pytest.raises(ConfigError, match="renamed_field"):
                read_run(copy)


def test_analyze_solution_last_reads_the_last_kept_head(cli_runs, tmp_path, capsys):
    root, _ = cli_runs
    out = tmp_path / "last"
    code, err = run_analyze([str(root / "eggroll"), "--out", str(out), "--points", "3", "--draws", "1",
                             "--noise-scales", "0", "--kl-samples", "2", "--pairs", "none", "--solution", "last",
                             "--quiet"], capsys)
    assert code == 0, err
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["options"]["solution"] == "last"
    run = analysis["runs"][0]
    assert run["judges"]["test/ndcg@10"] == run["trajectory"][-1]["test"]  # the step-4 head, not best_head
