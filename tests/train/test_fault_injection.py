"""Kill the trainer at every point where a kill can leave a partial state, resume, and check that the run ends
bit-identical to an uninterrupted one and that no half-written file was ever visible under its final name.

The kill is an exception raised from `atomic.fault_hook` (see eggroll_ndcg/atomic.py): at every file write
(the file is first truncated to half, a torn write), every log append (the line is torn in half), and just
before and just after every rename (files and checkpoint folders). A new `Trainer` with the same config then
resumes, as a restarted process would.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
import torch

from eggroll_ndcg import atomic
from eggroll_ndcg.train.checkpoint import load_checkpoint
from eggroll_ndcg.train.run_folder import ARTIFACTS, RunFolder, read_manifest, verify_run_folder
from eggroll_ndcg.train.trainer import Trainer

WALL_CLOCK = ("train_time", "time_to_best")


class InjectedKill(BaseException):
    """A simulated process kill (a BaseException, so no `except Exception` in the code under test stops it)."""


def _tear(event: str, path: Path) -> None:
    """Make the write that `event` reports a torn one: half of the temporary file, half of the last log line."""
    if event == "write":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif event == "append":
        data = path.read_bytes()
        start = data.rstrip(b"\n").rfind(b"\n") + 1
        path.write_bytes(data[: start + (len(data) - start) // 2])


class Faults:
    """The test hook: records every fault point, and raises `InjectedKill` at the `kill_at`-th (0-based)."""

    def __init__(self, kill_at: int | None = None):
        self.kill_at, self.events = kill_at, []

    def __call__(self, event: str, path: Path) -> None:
        self.events.append((event, path))
        if len(self.events) - 1 == self.kill_at:
            _tear(event, path)
            raise InjectedKill(f"{event} {path}")


def _train(config, data, monkeypatch, faults: Faults | None = None) -> Trainer:
    monkeypatch.setattr(atomic, "fault_hook", faults)
    try:
        trainer = Trainer(config, data=data, progress=False)
        trainer.train()
        return trainer
    finally:
        monkeypatch.setattr(atomic, "fault_hook", None)


def _killed(config, data, monkeypatch, kill_at: int) -> Faults:
    faults = Faults(kill_at)
    with pytest.raises(InjectedKill):
        _train(config, data, monkeypatch, faults)
    return faults


def _steps(run: Path) -> list[tuple[int, str]]:
    return [(r["step"], r["event"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]


def _outputs(run: Path) -> dict[str, object]:
    """What must be identical after any kill and resume: the bytes of every artifact but metrics.json and
    config.json, metrics.json without its wall-clock fields, config.json without output_dir (the folders
    differ); the log's (step, event) sequence."""
    outputs: dict[str, object] = {name: (run / name).read_bytes() for name in ARTIFACTS
                                  if name not in ("metrics.json", "config.json")}
    metrics = json.loads((run / "metrics.json").read_text())
    outputs["metrics.json"] = {k: v for k, v in metrics.items() if k not in WALL_CLOCK}
    outputs["config.json"] = {k: v for k, v in json.loads((run / "config.json").read_text()).items()
                              if k != "output_dir"}
    outputs["log"] = _steps(run)
    return outputs


def _assert_nothing_half_written(run: Path) -> None:
    """After a kill: the manifest and every artifact under its final name are whole and recorded, a resumable
    checkpoint (if any) loads, and every log line but a torn last one is JSON."""
    verify_run_folder(run)  # raises CheckpointError for any file whose bytes are not a recorded write
    if (run / "config.json").exists():
        assert read_manifest(run) is not None, "an artifact is visible before the manifest recording it"
    for name in ("checkpoint", "checkpoint.old"):
        if (run / name).is_dir():
            load_checkpoint(run / name)
    if (run / "log.jsonl").exists():
        for line in (run / "log.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)


def _assert_same_run(run: Path, reference: Path) -> None:
    final, expected = load_checkpoint(run / "checkpoint")["head"], load_checkpoint(reference / "checkpoint")["head"]
    for name, tensor in expected.items():
        assert torch.equal(tensor, final[name]), name
    got, want = _outputs(run), _outputs(reference)
    for name in want:
        assert got[name] == want[name], f"{name} differs from the uninterrupted run's"
    assert all(len(digests) == 1 for digests in read_manifest(run).values())
    verify_run_folder(run)


CONFIGS = {
    # ES whose best validation step (4) is neither 0 nor the last step: best_head != the final head
    "eggroll": dict(method="eggroll", learning_rate=0.01, sigma=0.02, num_steps=8, eval_every=4),
    "lambdaloss": dict(method="lambdaloss", learning_rate=0.05, num_steps=8, eval_every=4),
}


@pytest.fixture(params=sorted(CONFIGS))
def reference(request, small_config, small_data, tmp_path, monkeypatch):
    """An uninterrupted run of the config, with every fault point it passes recorded."""
    config = small_config.replace(**CONFIGS[request.param], output_dir=str(tmp_path / "reference"))
    faults = Faults()
    trainer = _train(config, small_data, monkeypatch, faults)
    return config, trainer, faults.events


def test_a_kill_at_any_write_or_rename_resumes_to_identical_weights_and_outputs(reference, small_data, tmp_path,
                                                                                 monkeypatch):
    config, _, events = reference
    ref = Path(config.output_dir)
    if config.method == "eggroll":
        assert 0 < json.loads((ref / "metrics.json").read_text())["best_step"] < config.num_steps
    appends = [i for i, (event, _) in enumerate(events) if event == "append"]
    # every write and rename; a kill just after one rename is the same folder state as a kill just before
    # the rename that follows it, so those are run once
    points = [i for i, (event, _) in enumerate(events) if event not in ("append", "replaced")
              or event == "replaced" and (i + 1 == len(events) or events[i + 1][0] != "replace")]
    points += [appends[0], appends[len(appends) // 2], appends[-1]]  # the log: first, middle, last line
    kinds = {(events[i][0], events[i][1].name) for i in points}
    assert {("write", "tensors.safetensors"), ("write", "state.json"), ("replace", "checkpoint.old"),
            ("replaced", "checkpoint"), ("write", ".metrics.json.tmp"), ("replace", "manifest.json"),
            ("append", "log.jsonl")} <= kinds
    for point in sorted(points):
        run = tmp_path / f"killed-{point}"
        killed = config.replace(output_dir=str(run))
        _killed(killed, small_data, monkeypatch, point)
        _assert_nothing_half_written(run)
        _train(killed, small_data, monkeypatch)
        _assert_same_run(run, ref)


def test_repeated_kills_at_random_points_end_identical(reference, small_data, tmp_path, monkeypatch):
    config, _, events = reference
    run = tmp_path / "chain"
    chained = config.replace(output_dir=str(run))
    rng, kills = random.Random(2024), 0
    for _ in range(6):  # each attempt (a resume of the previous one) is killed at a random fault point
        faults = Faults(rng.randrange(len(events) // 3))  # early enough to hit a resumed attempt too
        try:
            _train(chained, small_data, monkeypatch, faults)
            break
        except InjectedKill:
            kills += 1
            _assert_nothing_half_written(run)
    else:
        _train(chained, small_data, monkeypatch)
    assert kills >= 3
    _assert_same_run(run, Path(config.output_dir))


def _gap(config, data, monkeypatch, events) -> None:
    """Kill the second checkpoint between its two renames: checkpoint/ gone, checkpoint.old/ complete."""
    second = [i for i, (e, p) in enumerate(events) if e == "replace" and p.name == "checkpoint"][1]
    _killed(config, data, monkeypatch, second)
    run = Path(config.output_dir)
    assert not (run / "checkpoint").exists() and (run / "checkpoint.old").is_dir()


def test_a_kill_between_the_checkpoint_renames_resumes_from_checkpoint_old(reference, small_data, tmp_path,
                                                                          monkeypatch, caplog):
    config, _, events = reference
    gapped = config.replace(output_dir=str(tmp_path / "gap"))
    _gap(gapped, small_data, monkeypatch, events)
    with caplog.at_level(logging.INFO):
        _train(gapped, small_data, monkeypatch)
    assert "resuming from the complete previous checkpoint" in caplog.text
    assert "at step 4" in caplog.text  # resumed, not restarted
    _assert_same_run(tmp_path / "gap", Path(config.output_dir))


def test_a_kill_while_replacing_a_checkpoint_resumed_from_checkpoint_old_keeps_it(reference, small_data, tmp_path,
                                                                                 monkeypatch):
    """After a gap, the next checkpoint must not delete checkpoint.old/ before its own folder is in place:
    a kill just before that rename still leaves the step-4 checkpoint to resume from."""
    config, _, events = reference
    run = tmp_path / "gap"
    gapped = config.replace(output_dir=str(run))
    _gap(gapped, small_data, monkeypatch, events)
    resuming = [None]

    def kill_before_checkpoint_rename(event, path):
        if event == "replace" and path.name == "checkpoint":
            resuming[0] = RunFolder(run).load_resumable(gapped)  # what a restart would find right now
            raise InjectedKill(path)

    monkeypatch.setattr(atomic, "fault_hook", kill_before_checkpoint_rename)
    with pytest.raises(InjectedKill):
        Trainer(gapped, data=small_data, progress=False).train()
    monkeypatch.setattr(atomic, "fault_hook", None)
    assert resuming[0] is not None and resuming[0]["trainer"]["step"] == 4
    _train(gapped, small_data, monkeypatch)
    _assert_same_run(run, Path(config.output_dir))


def test_a_torn_last_log_line_is_dropped_with_a_warning_and_the_run_resumes(small_config, small_data, tmp_path,
                                                                           monkeypatch, caplog):
    config = small_config.replace(**CONFIGS["eggroll"], output_dir=str(tmp_path / "straight"))
    _train(config, small_data, monkeypatch)
    torn = config.replace(output_dir=str(tmp_path / "torn"))
    assert Trainer(torn, data=small_data, progress=False).train(stop_after=6) == {"stopped_at": 6}
    with open(tmp_path / "torn" / "log.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"event": "step", "step": 7, "elapsed": 0.1')  # killed mid-line
    with caplog.at_level(logging.WARNING):
        _train(torn, small_data, monkeypatch)
    assert "dropped a torn last line" in caplog.text
    _assert_same_run(tmp_path / "torn", tmp_path / "straight")
