"""Model stages on a pool of Ray actors: one model per actor, shards of rows in, shards out.

`run_on_pool` is the Ray twin of `curate.models.shards.run_here`: the same shards (the same row
slices, seeded by their global row), each run by the same `shard_output` code, but in Ray Data
`map_batches` over an actor pool. Each actor loads the stage's model once (`Stage.build`) and is given
`cpus_per_worker` CPUs and `gpus_per_worker` GPUs (vLLM data parallelism: one engine per GPU actor;
tensor parallelism inside an actor with the engine's own option). Shards travel through Ray's object
store as Arrow IPC, so only the model folder needs to be visible to every node, at the same path. The
driver writes each finished shard as it arrives, so a crashed run resumed with `--resume` redoes only
the shards that had not come back; a killed actor is restarted by Ray and its shard retried.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.models.shards import Finished, shard_output
from curate.models.stages import Stage


@dataclass(frozen=True)
class Pool:
    """Where and how wide a model stage runs on Ray."""

    workers: int | None = None  # actors (default: as many as the cluster's GPUs, or CPUs, allow)
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # default: 1 where the cluster has GPUs, else 0
    address: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise CurateError(f"--workers must be at least 1 (got {self.workers}).")
        if self.cpus_per_worker <= 0:
            raise CurateError(f"--cpus-per-worker must be above 0 (got {self.cpus_per_worker}).")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise CurateError(f"--gpus-per-worker must be 0 or more (got {self.gpus_per_worker}).")

    def resolved(self, resources: dict[str, float], shards: int) -> tuple[int, float, float]:
        """(actors, CPUs each, GPUs each) on a cluster with `resources`, for `shards` shards to run."""
        gpus = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        if gpus > resources.get("GPU", 0):
            raise CurateError(f"--gpus-per-worker {gpus:g}: the Ray cluster has {resources.get('GPU', 0):g} GPU(s).")
        if self.cpus_per_worker > resources.get("CPU", 0):
            raise CurateError(f"--cpus-per-worker {self.cpus_per_worker:g}: the Ray cluster has {resources.get('CPU', 0):g} CPU(s).")
        fits = int(resources.get("GPU", 0) // gpus) if gpus else int(resources.get("CPU", 0) // self.cpus_per_worker)
        if self.workers is not None and self.workers > fits:  # Ray would wait for resources that never come
            raise CurateError(f"--workers {self.workers}: the Ray cluster has room for {fits} actor(s) of {self.cpus_per_worker:g} CPU and "
                              f"{gpus:g} GPU; lower --workers or the resources per worker.")  # fmt: skip
        workers = self.workers or max(1, min(fits, shards))
        return workers, self.cpus_per_worker, gpus


class _StageActor:
    """One Ray actor: the stage's model, loaded once, run over the shards Ray Data sends it."""

    def __init__(self, stage: Stage, name: str) -> None:
        self.fn, self.name = stage.build(), name

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"shard": [], "rows": [], "record": []}
        for k, payload in zip(batch["shard"], batch["rows"], strict=True):
            frame, record = shard_output(self.fn, pl.read_ipc(io.BytesIO(payload)), self.name)
            out["shard"].append(int(k))
            out["rows"].append(_ipc(frame))
            out["record"].append(json.dumps(record))
        return out


def _ipc(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc(buf)
    return buf.getvalue()


def run_on_pool(stage: Stage, rows: pl.DataFrame, todo: list[int], shard_size: int, name: str, pool: Pool,
                say: Callable[[str], None] | None = None) -> Finished:  # fmt: skip
    """The shards `todo` on a pool of Ray actors, yielded as they finish (not in order)."""
    from curate.distributed import _quiet_task_errors, connect, curate_errors

    try:
        import ray
    except ImportError as exc:
        raise CurateError("--engine ray needs Ray Data: pip install 'curate-prefs[ray]'.") from exc
    if not todo:
        return
    say = say or (lambda text: print(text, file=sys.stderr))
    connect(pool.address, say=say)
    workers, cpus, gpus = pool.resolved(ray.cluster_resources(), len(todo))
    say(f"{name}: {len(todo)} shard(s) on {workers} Ray actor(s), {cpus:g} CPU and {gpus:g} GPU each")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # curate's own bar counts the shards
    _quiet_task_errors()
    items = [{"shard": k, "rows": _ipc(rows.slice(k * shard_size, shard_size))} for k in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    done = ds.map_batches(_StageActor, fn_constructor_kwargs={"stage": stage, "name": name}, batch_size=1, batch_format="numpy",
                          compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus, num_gpus=gpus)  # fmt: skip
    with curate_errors():
        for row in done.iter_rows():
            yield int(row["shard"]), pl.read_ipc(io.BytesIO(row["rows"])), json.loads(row["record"])
