"""Population sharding on torch.distributed (train/distributed.py): gloo, 2 processes on CPU.

Workers are spawned (torch.multiprocessing's spawn context) with the variables torchrun would set, rebuild the
synthetic data from its folder, and train through the normal `Trainer`; every wait has a timeout and every
process left over is killed, so a failure cannot hang the suite.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from eggroll_ndcg.train import distributed
from eggroll_ndcg.train.config import ConfigError, TrainConfig
from eggroll_ndcg.train.run_folder import RunFolder
from eggroll_ndcg.train.trainer import Trainer

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

GROUP_TIMEOUT_S = 15  # the process group's timeout in the workers
JOIN_TIMEOUT_S = 120  # the most a test waits for its workers (each takes a few seconds)


def _configs(base: TrainConfig, root: Path) -> dict[str, TrainConfig]:
    """The runs each test compares: a linear head with uneven chunks (padding), the MLP head with the default
    one-chunk pair_chunk (ceil(J/W) per rank), and a linear run that stops at step 2 (for the resume)."""
    common = dict(num_steps=4, eval_every=2, **{"es.population_size": 32})
    return {
        "linear": base.replace(output_dir=str(root / "linear"), **common, **{"es.pair_chunk": 3}),
        "mlp": base.replace(output_dir=str(root / "mlp"), head="mlp", head_hidden_size=8, **common),
        "resume": base.replace(output_dir=str(root / "resume"), **common, **{"es.pair_chunk": 3}),
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, folder: str, base: dict, root: str, out: str, kill_at: int | None) -> None:
    """One rank: train the `_configs` runs (or, with `kill_at`, the linear run where rank 1 dies at that step)
    and write its weights or its error to `out/rank{rank}.*`."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                      **{distributed.TIMEOUT_ENV: str(GROUP_TIMEOUT_S)})
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    result: dict = {"rank": rank}
    try:
        from synthetic_collection import synthetic_encoded

        from eggroll_ndcg.train import es_method
        from eggroll_ndcg.train.prepare import prepare_data

        configs = _configs(TrainConfig.from_dict(base), Path(root))
        if rank == 1:  # rank 1 writes into a folder of its own (output_dir is no result field): it must stay absent
            configs = {name: c.replace(output_dir=str(Path(root) / f"rank1-{name}")) for name, c in configs.items()}
        data = prepare_data(configs["linear"], encoded=synthetic_encoded(Path(folder)), progress=False)
        if kill_at is not None:
            step = es_method.EggrollMethod.step

            def dying_step(self, batch, at):
                if rank == 1 and at == kill_at:
                    os._exit(1)
                return step(self, batch, at)

            es_method.EggrollMethod.step = dying_step
            configs = {"linear": configs["linear"]}
        started = time.monotonic()
        tensors = {}
        for name, config in configs.items():
            trainer = Trainer(config, data=data, progress=False)
            trainer.train(stop_after=2 if name == "resume" else None)
            tensors.update({f"{name}.{k}": v.detach().clone() for k, v in trainer.head.state_dict().items()})
        save_file(tensors, str(Path(out) / f"rank{rank}.safetensors"))
        result["ok"] = True
    except BaseException as error:  # noqa: BLE001 - reported to the test
        result.update(ok=False, type=type(error).__name__, message=str(error), traceback=traceback.format_exc(),
                      elapsed=time.monotonic() - started if "started" in locals() else None)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result), encoding="utf-8")
    os._exit(0)  # no atexit teardown of a group whose peer may be gone


def _spawn(tmp_path: Path, synthetic_folder: Path, base: TrainConfig, *, kill_at: int | None = None) -> dict:
    out, root = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, 2, port, str(synthetic_folder), base.to_dict(),
                                                        str(root), str(out), kill_at), daemon=True)
                 for rank in range(2)]
    started = time.monotonic()
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(max(1.0, JOIN_TIMEOUT_S - (time.monotonic() - started)))
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        assert not hung, f"ranks {hung} still running after {JOIN_TIMEOUT_S} s"
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    results = {}
    for rank in range(2):
        path = out / f"rank{rank}.json"
        results[rank] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return {"results": results, "out": out, "root": root, "elapsed": time.monotonic() - started}


def _single_process(base: TrainConfig, root: Path, data) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, config in _configs(base, root).items():
        if name == "resume":
            continue
        trainer = Trainer(config, data=data, progress=False)
        trainer.train()
        tensors.update({f"{name}.{k}": v.detach().clone() for k, v in trainer.head.state_dict().items()})
    return tensors


def _without_times(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "elapsed"} for r in records]


def test_two_ranks_are_bit_identical_to_one_and_only_rank0_writes(tmp_path, small_config, small_data,
                                                                   synthetic_folder):
    assert os.environ.get("WORLD_SIZE") in (None, "", "1")
    spawned = _spawn(tmp_path, synthetic_folder, small_config)
    for rank, result in spawned["results"].items():
        assert result is not None and result["ok"], f"rank {rank} failed: {result and result.get('traceback')}"
    single = _single_process(small_config, tmp_path / "single", small_data)
    ranks = [load_file(str(spawned["out"] / f"rank{rank}.safetensors")) for rank in range(2)]
    for name, expected in single.items():
        for rank, tensors in enumerate(ranks):
            assert torch.equal(tensors[name], expected), f"{name} on rank {rank} differs from one process"
    # rank 0 wrote complete run folders whose logs read like the one-process ones; rank 1 wrote nothing
    root = spawned["root"]
    for name in ("linear", "mlp"):
        assert (root / name / "metrics.json").is_file()
        assert _without_times(root / name / "log.jsonl") == _without_times(tmp_path / "single" / name / "log.jsonl")
        assert not (root / f"rank1-{name}").exists()
    assert not (root / "rank1-resume").exists()
    assert (root / "resume" / "checkpoint").is_dir() and not (root / "resume" / "metrics.json").exists()
    # a checkpoint written by 2 ranks resumes in one process to the uninterrupted run's weights
    resumed = small_config.replace(output_dir=str(root / "resume"), **{"es.pair_chunk": 3},
                                   num_steps=4, eval_every=2, **{"es.population_size": 32})
    trainer = Trainer(resumed, data=small_data, progress=False)
    trainer.train()
    for key, value in trainer.head.state_dict().items():
        assert torch.equal(value, single[f"linear.{key}"])
    assert _without_times(root / "resume" / "log.jsonl") == _without_times(tmp_path / "single" / "linear" / "log.jsonl")


def test_a_killed_worker_ends_rank0_with_a_clear_error(tmp_path, small_config, synthetic_folder):
    spawned = _spawn(tmp_path, synthetic_folder, small_config, kill_at=2)
    assert spawned["results"][1] is None  # died in step 2 without a word
    result = spawned["results"][0]
    assert result is not None and not result["ok"], result
    assert result["type"] == "DistributedError", result["traceback"]
    assert "all_gather of step 2 failed" in result["message"] and "worker died" in result["message"]
    assert result["elapsed"] < GROUP_TIMEOUT_S + 30
    assert not (spawned["root"] / "linear" / "metrics.json").exists()


def test_reader_run_folder_writes_nothing(tmp_path, small_config, small_data):
    """Every public method of RunFolder is either a read (`ReaderRunFolder.READS`) or overridden as a no-op,
    so a write method added to RunFolder later fails here until ReaderRunFolder covers it."""
    public = {name for name, _ in inspect.getmembers(RunFolder) if not name.startswith("_")}
    overridden = {name for name in public if name in vars(distributed.ReaderRunFolder)}
    assert public - overridden - distributed.ReaderRunFolder.READS == set()
    folder = distributed.ReaderRunFolder(tmp_path / "run")
    assert folder.load_resumable(small_config) is None
    folder.start(small_config, small_data.splits)
    folder.reset_log()
    folder.append_log({"step": 0})
    folder.truncate_log(0)
    folder.save_checkpoint({})
    folder.write_outputs(torch.nn.Linear(2, 2), {}, tag="x", per_query={}, metrics={})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("pairs, chunk, size", [(16, 3, 2), (16, None, 2), (5, 2, 3), (2, 1, 4), (128, 32, 3)])
def test_sharding_covers_the_chunks_in_member_order(pairs, chunk, size):
    shard = distributed.sharding(pairs, chunk, size)
    ranges = [shard.pair_range(rank) for rank in range(size)]
    assert [p for r in ranges for p in r] == list(range(pairs))  # contiguous, in order, each pair once
    step = chunk or -(-pairs // size)
    assert all(r.start % step == 0 for r in ranges if len(r))  # whole chunks of the one-process boundaries
    assert shard.max_members == max(2 * len(r) for r in ranges)


def test_gradient_methods_refuse_several_processes(small_config, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="runs in one process.*WORLD_SIZE=2.*eggroll"):
        distributed.setup(small_config.replace(method="infonce"))
    with pytest.raises(ConfigError, match="cuda:1.*--device cuda"):
        distributed.setup(small_config.replace(device="cuda:1"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup(small_config.replace(method="infonce")) is None
    assert isinstance(distributed.run_folder(None, None), RunFolder)
