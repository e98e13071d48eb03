"""SIGKILL of a worker process mid-run loses no change and no hook delivery."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import redis.asyncio as aioredis
from workers_support import (
    HookReceiver,
    imagine_events,
    make_settings,
    push,
    settings_yaml,
    snowflake,
    start_worker_process,
    submitted_task,
)

from broker.config import HookSettings
from broker.models import TaskStatus
from broker.queues import AccountQueues
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore

JOB = "0c4d6a8e-2b1f-4e3d-9a7b-5c6d7e8f9a0b"


async def test_sigkilled_worker_loses_no_change_and_no_hook(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path, queues: AccountQueues
) -> None:
    receiver = HookReceiver()
    await receiver.start()
    store = TaskStore(redis, retention_seconds=3600)
    hooks = HookSettings(default_url=receiver.url("crash"), request_timeout_seconds=1.0)
    config = tmp_path / "config.yaml"
    settings = make_settings(redis_server.url, tmp_path, hooks=hooks, allow=(receiver.address,))
    config.write_text(settings_yaml(settings))

    tasks = []
    for i in range(12):
        prompt = f"crash test prompt {i}"
        task, nonce = await submitted_task(store, prompt=prompt)
        tasks.append((task, imagine_events(prompt, nonce, JOB, start_id=snowflake(), final_id=snowflake())))
    first = await start_worker_process(config)
    second = None
    try:
        for _task, events in tasks:
            for t, d in events[:3]:
                await push(redis, t, d)
        await receiver.wait_for(lambda: any(r.task["status"] == "IN_PROGRESS" for r in receiver.received))

        async def rest() -> None:
            for _task, events in tasks:
                for t, d in events[3:]:
                    await push(redis, t, d)

        # The receiver fails from now on, so at the kill every final revision is still owed to it
        # (in the outbox, or in streams not yet read): the kill cannot come "too late".
        receiver.modes["crash"] = "fail"
        pushing = asyncio.create_task(rest())
        async with asyncio.timeout(20):
            while not any(t.status.is_terminal for t in await store.get_many([t.id for t, _ in tasks])):  # noqa: ASYNC110 - polls Redis, bounded
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await pushing
        receiver.modes["crash"] = "ok"

        second = await start_worker_process(config)
        async with asyncio.timeout(20):
            while True:
                finals = [await store.get(t.id) for t, _ in tasks]
                if all(f is not None and f.status == TaskStatus.SUCCESS for f in finals):
                    break
                await asyncio.sleep(0.05)
        for final in finals:
            assert final is not None
            await receiver.wait_for(
                lambda f=final: any(
                    r.task["id"] == f.id and r.version == f.revision for r in receiver.received
                ),
                within=20,
            )
            versions = [r.version for r in receiver.received if r.task["id"] == final.id]
            # at least once, never backwards
            assert versions == sorted(versions) and versions[-1] == final.revision
        assert await queues.running("a1") == []
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await receiver.stop()
