"""The worker's own runner: one sweep per tick across worker processes, and a stop that ends
everything even while a sweep runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis
from workers_support import make_settings

from broker.redis_server import EmbeddedRedis
from broker.shutdown import cancel_and_wait
from workers.main import Worker, WorkerRuntime
from workers.sweeper import SweepReport


class CountingRuntime(WorkerRuntime):
    """A real runtime that counts its sweeps and can hold one open until told to go on."""

    def __init__(
        self,
        *args: object,
        hold: asyncio.Event | None = None,
        tally: list[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sweeping = asyncio.Event()
        self.hold = hold
        #: the name of the runtime of every sweep, shared by the runtimes of a test
        self.tally = tally if tally is not None else []

    async def sweep(self) -> SweepReport:
        self.tally.append(self.name)
        self.sweeping.set()
        if self.hold is not None:
            await self.hold.wait()
        return await super().sweep()


async def test_one_sweep_per_tick_across_workers(
    redis_server: EmbeddedRedis, redis: aioredis.Redis, tmp_path: Path
) -> None:
    """(`redis` flushes what earlier tests left, a tick held by their workers among it.)"""
    tally: list[str] = []
    runtimes = []
    for n in range(2):
        (tmp_path / f"w{n}").mkdir()
        settings = make_settings(redis_server.url, tmp_path / f"w{n}", sweep_seconds=0.1)
        runtimes.append(CountingRuntime(settings, name=f"w{n}", tally=tally))
    workers = [Worker(runtime, handle_signals=False) for runtime in runtimes]
    loop = asyncio.get_running_loop()
    began = loop.time()
    runs = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        await asyncio.sleep(1.0)  # ten ticks of each worker
    finally:
        for worker in workers:
            worker.stop()
        async with asyncio.timeout(20):
            await asyncio.gather(*runs)
    elapsed = loop.time() - began
    # Both workers tick every 0.1 s; without the shared tick each would sweep on each of its own.
    assert 3 <= len(tally) <= elapsed / 0.1 + 2, tally


async def test_stop_while_a_sweep_runs_stops_the_loops(
    redis_server: EmbeddedRedis, redis: aioredis.Redis, tmp_path: Path
) -> None:
    runtime = CountingRuntime(
        make_settings(redis_server.url, tmp_path, sweep_seconds=0.1), hold=asyncio.Event()
    )
    worker = Worker(runtime, handle_signals=False)
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            await runtime.sweeping.wait()
        loops = list(runtime._tasks)
        assert loops
        worker.stop()
        async with asyncio.timeout(20):
            await run
    finally:
        await cancel_and_wait(run)
    assert all(loop.done() for loop in loops)
    assert runtime._tasks == []
