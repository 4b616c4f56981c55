"""`eval --run-out` writes the run file to a temporary name and renames it: a failure (or a kill) while
writing never leaves a partial file where a complete one is expected."""

from __future__ import annotations

import json

import eggroll_ndcg.metrics.trec as trec
from eggroll_ndcg.cli import main


def _argv(tiny_beir, run_out):
    return ["eval", "--dataset", str(tiny_beir), "--encoder", "minilm", "--quiet", "--run-out", str(run_out)]


def test_eval_writes_the_run_file_and_prints_the_metrics(tiny_beir, tmp_path, capsys, fake_encoder):
    run_out = tmp_path / "new" / "folder" / "zero_shot.trec"  # its folder is created
    assert main(_argv(tiny_beir, run_out)) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["queries"] == 2
    assert set(trec.read_run(run_out)) == {"q0", "q2"}
    assert [p.name for p in run_out.parent.iterdir()] == ["zero_shot.trec"]


def test_a_failure_while_writing_the_run_file_leaves_the_old_file_and_no_partial_one(tiny_beir, tmp_path, capsys,
                                                                                      fake_encoder, monkeypatch):
    run_out = tmp_path / "zero_shot.trec"
    run_out.write_text("the previous complete run\n")
    real_write_run = trec.write_run

    def dies_halfway(run, path, **kwargs):
        real_write_run(dict(list(run.items())[:1]), path, **kwargs)  # part of the file is on disk ...
        raise OSError(28, "No space left on device", str(path))      # ... then the disk fills

    monkeypatch.setattr(trec, "write_run", dies_halfway)
    assert main(_argv(tiny_beir, run_out)) == 2
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and len(err.splitlines()) == 1
    assert run_out.read_text() == "the previous complete run\n"
    assert [p.name for p in tmp_path.iterdir() if "trec" in p.name] == ["zero_shot.trec"]
