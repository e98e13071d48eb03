"""What `broker.batching.PipelineBatcher` is worth: the same `TaskStore` workload with and without it.

One embedded Valkey, one client (`broker.redis_client.connect`) and two stores on it: the product's
(``TaskStore(...)``, merging the pipelines its callers queue in one loop iteration) and one that
sends each caller's pipeline alone (``TaskStore(..., batch=False)``). `TASKS` tasks are stored and
indexed by a message id first. Two workloads, each at 1 and at `WIDE` concurrent callers (each
caller on its own tasks, so writes never conflict):

- ``fetch``: ``get_raw`` of a task, as the web's ``/fetch`` does;
- ``event``: ``find_first`` of the task by its message id (the index read, then the record read)
  and an ``update`` from that copy (compare-and-set + XADD on the changes stream), as the worker
  applies a gateway event.

Each (workload, callers) runs `SECONDS` per mode, batched and alone alternating (`ROUNDS` each).
Figures per case and mode: ops/s, this process's CPU per op (the client: redis-py, asyncio,
the batcher) and the server's CPU per op; then ratios batched/alone (ops/s > 1 and CPU < 1 mean
the batcher pays). Runs on uvloop, as the worker does.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import psutil
import uvloop

from broker.models import Task, TaskAction
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis, free_port
from broker.store import TaskStore

TASKS = 2000
WIDE = 32
SECONDS = 2.0
ROUNDS = 2

Op = Callable[[TaskStore, str, int], Awaitable[None]]


async def _fetch(store: TaskStore, task_id: str, n: int) -> None:
    await store.get_raw(task_id)


async def _event(store: TaskStore, task_id: str, n: int) -> None:
    found = await store.find_first([("message", f"m{task_id}")])
    assert found is not None
    _, task = found
    await store.update(task_id, lambda t: msgspec.structs.replace(t, state=str(n)), current=task)


WORKLOADS: dict[str, Op] = {"fetch": _fetch, "event": _event}


class Sample(msgspec.Struct):
    ops: int
    seconds: float
    client_cpu: float
    server_cpu: float


async def _drive(
    store: TaskStore, op: Op, ids: list[str], callers: int, server: psutil.Process, seconds: float = SECONDS
) -> Sample:
    """`callers` coroutines running `op` on their own share of `ids` for `seconds`."""
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(k: int) -> None:
        nonlocal done
        mine = ids[k::callers]
        n = 0
        while time.perf_counter() < stop:
            await op(store, mine[n % len(mine)], n)
            n += 1
        done += n

    cpu, server_cpu, started = time.process_time(), _cpu(server), time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return Sample(
        ops=done,
        seconds=time.perf_counter() - started,
        client_cpu=time.process_time() - cpu,
        server_cpu=_cpu(server) - server_cpu,
    )


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _main() -> dict[str, Any]:
    server = EmbeddedRedis(port=free_port(), data_dir=tempfile.mkdtemp(prefix="mjb-bench-batch-"))
    server.start()
    assert server.process is not None
    valkey = psutil.Process(server.process.pid)
    redis = connect(server.url)
    stores = {
        "batched": TaskStore(redis, retention_seconds=3600),
        "alone": TaskStore(redis, retention_seconds=3600, batch=False),
    }
    figures: dict[str, Any] = {"tasks": TASKS, "seconds_per_run": SECONDS}
    try:
        base = int(time.time() * 1000) * 1000
        ids = [str(base + i) for i in range(TASKS)]
        setup = stores["alone"]
        for task_id in ids:
            await setup.create(Task(id=task_id, action=TaskAction.IMAGINE, prompt="batching bench"))
            await setup.index("message", f"m{task_id}", task_id)
        for store in stores.values():  # warm both up (scripts loaded, connections open), unrecorded
            await _drive(store, _event, ids, WIDE, valkey, seconds=0.5)
        for workload, op in WORKLOADS.items():
            for callers in (1, WIDE):
                samples: dict[str, list[Sample]] = {"batched": [], "alone": []}
                for _ in range(ROUNDS):
                    for mode, store in stores.items():
                        samples[mode].append(await _drive(store, op, ids, callers, valkey))
                rate, client_us, server_us = {}, {}, {}
                for mode, runs in samples.items():
                    ops = sum(s.ops for s in runs)
                    rate[mode] = statistics.mean(s.ops / s.seconds for s in runs)
                    client_us[mode] = sum(s.client_cpu for s in runs) * 1e6 / ops
                    server_us[mode] = sum(s.server_cpu for s in runs) * 1e6 / ops
                    case = f"{workload}_x{callers}_{mode}"
                    figures[case] = (
                        f"{rate[mode]:.0f} ops/s, client {client_us[mode]:.1f} us/op, "
                        f"server {server_us[mode]:.1f} us/op"
                    )
                case = f"{workload}_x{callers}"
                figures[f"{case}_ops_ratio_batched_over_alone"] = rate["batched"] / rate["alone"]
                figures[f"{case}_client_cpu_ratio_batched_over_alone"] = (
                    client_us["batched"] / client_us["alone"]
                )
                figures[f"{case}_server_cpu_ratio_batched_over_alone"] = (
                    server_us["batched"] / server_us["alone"]
                )
    finally:
        await redis.aclose()
        server.stop()
    return figures


def run() -> dict[str, Any]:
    return uvloop.run(_main())


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
