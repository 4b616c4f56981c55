"""Population sharding on `torch.distributed`: W processes score the antithetic pairs of one population
between them and exchange only the fitness matrix.

Launch with the standard launcher, no code change between one machine and several:

    torchrun --nproc_per_node=W -m eggroll_ndcg train --config ... [--device cuda]
    torchrun --nnodes=M --node_rank=I --nproc_per_node=G --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \
        -m eggroll_ndcg train --config ... --device cuda

`setup(config)` (called by `Trainer.__init__`) reads the variables torchrun sets (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). When WORLD_SIZE is unset or 1 and no process group exists, nothing is
created and every code path is the one-process one. Otherwise it starts the default process group with
`init_method="env://"`: backend gloo for `--device cpu`, nccl for `--device cuda`, where each rank uses
`cuda:LOCAL_RANK` (`torch.cuda.set_device`; an explicit `cuda:N` is refused with several processes, since all
ranks would share one GPU). A process group that already exists (made by the caller) is used as it is.

**Sharding rule.** The pairs are cut into the chunks of the one-process run, `population.chunks(pair_chunk)`
with the config's `es.pair_chunk`, and rank r scores the contiguous block of chunks
`[r*C//W, (r+1)*C//W)` (C chunks; a rank may get none when C < W). Every member's scores therefore come from
a forward pass of exactly the shapes the one-process run uses, and the gathered fitness is in the
one-process member order, so the weights are bit-identical to W = 1 (tested for the linear and the MLP head).
With `es.pair_chunk: null` (one chunk of all pairs at W = 1) the ranks would have nothing to share, so the
chunks are then `ceil(J/W)` pairs: the same numbers up to BLAS shape effects in the last float bit on large
inputs (see es/README.md, "Determinism"); set `es.pair_chunk` for runs bit-identical across every W.

**Gather.** `all_gather` needs equal sizes: each rank sends one flat float64 tensor of
`max_r(members of rank r) * Q` fitness values (its own rows, NaN-padded) plus a 3-value header
`(trainer step, engine step, weights fingerprint)`; every rank places each rank's rows at that rank's member
slice (all ranks compute the same sharding, so nothing else is sent). The header costs three floats and
catches ranks that are not at the same step or do not hold the same weights (e.g. a rank that resumed from
another run folder: on several machines `output_dir` must be one shared folder for a resume), raising
`DistributedError` instead of training on silently different heads. Then every rank runs the same `tell`.

**Timeout.** The process group has a timeout (`EGGROLL_NDCG_DIST_TIMEOUT` seconds, default 600): a worker that
died or stopped answering ends every other rank's run with a `DistributedError` naming the step (gloo
usually notices a dead peer at once from the closed connection; the timeout bounds the rest). Under
torchrun, the launcher then stops the remaining workers too.

**Writes.** Rank 0 alone writes the run folder, log and checkpoints; other ranks use `ReaderRunFolder`, which
reads the checkpoint to resume (every rank resumes from the same files) and skips every write. Every rank
runs the same loop, validation and early stopping on the same weights (deterministic, nothing is sent). A
checkpoint holds no per-rank state, so a run may resume with any W.

**Gradient baselines** run in one process: they do not shard a population, and with WORLD_SIZE > 1 `setup`
refuses them with a one-line `ConfigError`. A method opts in to sharding by a class (or factory) attribute
`population_sharding = True` on its `MethodSpec.build` (`EggrollMethod` has it).
"""

from __future__ import annotations

import atexit
import datetime
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist

from .config import ConfigError, TrainConfig
from .methods import METHODS
from .run_folder import RunFolder

log = logging.getLogger(__name__)

TIMEOUT_ENV = "EGGROLL_NDCG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
HEADER = 3  # trainer step, engine step, weights fingerprint


class DistributedError(RuntimeError):
    """A collective failed (a worker died or timed out) or the ranks disagree about the state of the run."""


@dataclass(frozen=True)
class World:
    """This process's place in the process group."""

    rank: int
    size: int
    local_rank: int
    backend: str
    timeout_s: float

    @property
    def writes(self) -> bool:
        """Rank 0 alone writes the run folder."""
        return self.rank == 0


def timeout_seconds() -> float:
    """The process-group timeout: `EGGROLL_NDCG_DIST_TIMEOUT` seconds, default 600."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: must be > 0 seconds")
    return value


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer (torchrun sets it)") from None


def shards_population(method: str) -> bool:
    """Whether the registered method `method` scores a population that can be sharded across processes."""
    return method in METHODS and bool(getattr(METHODS.get(method).build, "population_sharding", False))


def current() -> World | None:
    """The world of the existing default process group, or None (no group, or a group of one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    timeout = _STATE.timeout_s or timeout_seconds()
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=_env_int("LOCAL_RANK", 0),
                 backend=str(dist.get_backend()), timeout_s=timeout)


class _State:
    """The timeout this module gave the process group (None: a group made by the caller)."""

    timeout_s: float | None = None


_STATE = _State()


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit, after a failed collective too
            pass


def setup(config: TrainConfig) -> World | None:
    """The process group of a run launched by torchrun (see the module docstring), or None for one process.
    Refuses, before any group is created, a method that does not shard a population and an explicit
    `cuda:N` device when WORLD_SIZE > 1."""
    existing = dist.is_available() and dist.is_initialized()
    size = dist.get_world_size() if existing else _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return None
    if not shards_population(config.method):
        sharded = ", ".join(name for name in METHODS.names() if shards_population(name))
        raise ConfigError(f"method {config.method!r} runs in one process (it has no population to shard), but "
                          f"WORLD_SIZE={size}: run it without torchrun (methods that shard across processes: "
                          f"{sharded})")
    cuda = config.device.startswith("cuda")
    if cuda and config.device != "cuda":
        raise ConfigError(f"config field 'device': {config.device!r} with WORLD_SIZE={size} would put every rank on "
                          "one GPU; use --device cuda (each rank uses cuda:LOCAL_RANK)")
    local_rank = _env_int("LOCAL_RANK", 0)
    if cuda:
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} needs cuda:{local_rank}, but this machine has "
                              f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} GPU(s)")
        torch.cuda.set_device(local_rank)
    if existing:
        return current()
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={size}, but this torch build has no torch.distributed")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ConfigError(f"WORLD_SIZE={size} but {name} is not set: launch several processes with torchrun")
    timeout = timeout_seconds()
    backend = "nccl" if cuda else "gloo"
    rank = _env_int("RANK", 0)
    try:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=size,
                                timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as error:
        raise DistributedError(f"rank {rank} of {size}: could not join the process group at "
                               f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({backend}, timeout "
                               f"{timeout:g} s): {_first_line(error)}") from error
    _STATE.timeout_s = timeout
    atexit.register(_destroy)
    world = current()
    if rank == 0:
        log.info("population sharded over %d processes (%s, timeout %g s)", size, backend, timeout)
        if config.es.pair_chunk is None:
            log.info("es.pair_chunk is null: each rank scores ceil(J/%d) pairs at once where one process scores all "
                     "J at once; set es.pair_chunk for weights bit-identical to any other number of processes", size)
    return world


def run_folder(path: str | Path | None, world: World | None) -> RunFolder:
    """The run folder of this rank: the writing `RunFolder` on rank 0 (and in one process), a
    `ReaderRunFolder` elsewhere."""
    return RunFolder(path) if world is None or world.writes else ReaderRunFolder(path)


class ReaderRunFolder(RunFolder):
    """A run folder that reads (the resume checkpoint) but never writes: the folder of ranks > 0. Every
    write method of `RunFolder` is a no-op here; `READS` lists the public members that only read (the test
    suite checks that every other public method of `RunFolder` is overridden)."""

    READS = frozenset({"checkpoint_dir", "load_resumable", "load_complete"})

    def start(self, config: Any, splits: Any) -> None:
        return None

    def append_log(self, record: dict[str, Any]) -> None:
        return None

    def reset_log(self) -> None:
        return None

    def truncate_log(self, last_step: int) -> None:
        return None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        return None

    def drop_checkpoint(self) -> None:
        return None

    def write_outputs(self, head: Any, run: Any, *, tag: str, per_query: Any, metrics: Any) -> None:
        return None

    # the private writers of RunFolder (the manifest), in case a later write path calls them directly
    def _commit(self, *args: Any, **kwargs: Any) -> None:
        return None

    def _write_manifest(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class PairSharding:
    """Which pairs each rank scores: `num_chunks` chunks of `chunk_pairs` pairs (the last one shorter), rank r
    the contiguous block `[r*C//W, (r+1)*C//W)` of them (see the module docstring)."""

    num_pairs: int
    chunk_pairs: int
    size: int

    @property
    def num_chunks(self) -> int:
        return -(-self.num_pairs // self.chunk_pairs)

    def pair_range(self, rank: int) -> range:
        first, stop = rank * self.num_chunks // self.size, (rank + 1) * self.num_chunks // self.size
        return range(min(first * self.chunk_pairs, self.num_pairs), min(stop * self.chunk_pairs, self.num_pairs))

    def members(self, rank: int) -> slice:
        pairs = self.pair_range(rank)
        return slice(2 * pairs.start, 2 * pairs.stop)

    @property
    def max_members(self) -> int:
        return max(2 * len(self.pair_range(r)) for r in range(self.size))


def sharding(num_pairs: int, pair_chunk: int | None, size: int) -> PairSharding:
    """The sharding of `num_pairs` pairs over `size` ranks for the config's `es.pair_chunk` (None: one chunk
    per rank, `ceil(J/W)` pairs)."""
    chunk = pair_chunk if pair_chunk is not None else max(1, math.ceil(num_pairs / size))
    return PairSharding(num_pairs, min(chunk, max(num_pairs, 1)), size)


def rank_chunks(population, pair_chunk: int | None, world: World | None) -> list:
    """The chunks this rank scores: all of `population.chunks(pair_chunk)` in one process, else this rank's
    block of the sharded chunks (same boundaries as one process when `pair_chunk` is set)."""
    if world is None:
        return list(population.chunks(pair_chunk))
    shard = sharding(population.num_pairs, pair_chunk, world.size)
    mine = shard.pair_range(world.rank)
    return [chunk for chunk in population.chunks(shard.chunk_pairs) if mine.start <= chunk.pair_start < mine.stop]


def fingerprint(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """A float64 scalar of the weights (their sum), equal on ranks that hold the same weights."""
    total = None
    for param in params:
        value = param.detach().double().sum()
        total = value if total is None else total + value
    return total if total is not None else torch.zeros((), dtype=torch.float64)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def gather_fitness(world: World, fitness: torch.Tensor, population, pair_chunk: int | None, *, step: int,
                   engine_step: int, weights: torch.Tensor) -> torch.Tensor:
    """The full [N, Q] fitness from every rank's rows of its own `fitness` [N, Q] (the other rows are
    ignored), in the one-process member order; checks that all ranks are at the same step with the same
    weights fingerprint `weights`. Raises `DistributedError` when the collective fails or the ranks disagree."""
    shard = sharding(population.num_pairs, pair_chunk, world.size)
    queries = fitness.shape[1]
    width = shard.max_members * queries
    send = torch.full((width + HEADER,), float("nan"), dtype=torch.float64, device=fitness.device)
    own = fitness[shard.members(world.rank)].reshape(-1)
    send[: own.numel()] = own
    send[width:] = torch.stack([torch.tensor(float(step), dtype=torch.float64, device=fitness.device),
                                torch.tensor(float(engine_step), dtype=torch.float64, device=fitness.device),
                                weights.to(device=fitness.device, dtype=torch.float64)])
    received = [torch.empty_like(send) for _ in range(world.size)]
    try:
        dist.all_gather(received, send)
    except RuntimeError as error:  # DistBackendError and the gloo / nccl errors are RuntimeErrors
        raise DistributedError(
            f"rank {world.rank} of {world.size}: the fitness all_gather of step {step} failed: another worker died "
            f"or did not answer within the {world.timeout_s:g} s timeout ({TIMEOUT_ENV}); {_first_line(error)}"
        ) from error
    headers = torch.stack([r[width:] for r in received]).cpu()
    same = (headers == headers[0]) | (headers.isnan() & headers[0].isnan())
    if not bool(same.all()):
        described = "; ".join(f"rank {r}: step {int(h[0])}, engine step {int(h[1])}, weights sum {h[2]!r}"
                              for r, h in enumerate(headers.tolist()))
        raise DistributedError(
            f"the ranks disagree at step {step} ({described}): every rank must start from the same state; on "
            "several machines output_dir must be one shared folder for a resume")
    out = torch.empty_like(fitness)
    for rank, values in enumerate(received):
        members = shard.members(rank)
        count = (members.stop - members.start) * queries
        out[members] = values[:count].reshape(-1, queries)
    return out

