"""Closing the worker while a job (the cron sweep) is finishing still runs its shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import func

from broker.redis_server import EmbeddedRedis
from broker.shutdown import cancel_and_wait
from workers.main import ArqWorker


async def _worker_with_one_job(
    redis_server: EmbeddedRedis, job: Callable[[dict[str, Any]], Awaitable[None]], **options: Any
) -> ArqWorker:
    """Our arq worker with `job` enqueued once (named "job"); `options` go to the worker."""
    redis_settings = RedisSettings.from_dsn(redis_server.url)
    pool = await create_pool(redis_settings)
    try:
        await pool.enqueue_job("job")
    finally:
        await pool.aclose()
    return ArqWorker(
        functions=[func(job, name="job")],
        redis_settings=redis_settings,
        handle_signals=False,
        poll_delay=0.01,
        keep_result=0,
        **options,
    )


async def test_close_while_a_job_is_being_recorded_still_runs_on_shutdown(
    redis_server: EmbeddedRedis,
) -> None:
    job_returned = asyncio.Event()
    shut_down: list[bool] = []

    async def job(ctx: dict[str, Any]) -> None:
        # Hold Redis writes for a moment: arq is still recording the job's end when close() runs.
        await ctx["redis"].client_pause(800, all=False)
        job_returned.set()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        shut_down.append(True)

    worker = await _worker_with_one_job(redis_server, job, on_shutdown=on_shutdown)
    main = asyncio.create_task(worker.async_run())
    try:
        async with asyncio.timeout(10):
            await job_returned.wait()
            # The function has returned (its task is gone) but arq is still recording the end.
            while worker.job_tasks or not any(not t.done() for t in worker.tasks.values()):  # noqa: ASYNC110 - arq has no event for this
                await asyncio.sleep(0.005)
    finally:
        raised: BaseException | None = None
        try:
            async with asyncio.timeout(10):
                await worker.close()
        except BaseException as exc:  # arq's own close raised CancelledError here
            raised = exc
        main.cancel()
        await asyncio.gather(main, return_exceptions=True)
    assert raised is None
    assert shut_down == [True]


async def test_close_ends_a_job_whose_cancellation_was_lost(redis_server: EmbeddedRedis) -> None:
    """A job cancelled in the loop iteration in which its wait_for completes loses the CancelledError
    (Python 3.11's wait_for, through which redis-py sends every command) and goes on: arq's close
    waited for it forever (found as a worker fixture hanging in its teardown under load)."""
    operation: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    running = asyncio.Event()

    async def job(ctx: dict[str, Any]) -> None:
        running.set()
        await asyncio.wait_for(operation, 60)
        await asyncio.sleep(3600)

    worker = await _worker_with_one_job(redis_server, job)
    main = asyncio.create_task(worker.async_run())
    try:
        async with asyncio.timeout(10):
            await running.wait()  # the job waits inside wait_for now
        operation.set_result(None)  # its operation completes in the iteration close() cancels it
        async with asyncio.timeout(10):
            await worker.close()
        assert all(job.done() for job in worker.tasks.values())
    finally:
        await cancel_and_wait(main)
