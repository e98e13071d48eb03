"""Acknowledged writes wait for the AOF's fsync (WAITAOF) in their own round trip; others do not."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from broker.models import Task, TaskAction, TaskStatus
from broker.queues import AccountQueues
from broker.redis_client import BoundedRedis
from broker.store import TaskStore
from discord_bridge.consumer import claim


async def _waits(redis: aioredis.Redis) -> tuple[int, int]:
    """(WAITAOF calls, server read events) since the last CONFIG RESETSTAT."""
    commands = await redis.info("commandstats")
    stats = await redis.info("stats")
    return int(commands.get("cmdstat_waitaof", {}).get("calls", 0)), int(stats["total_reads_processed"])


async def _reset(redis: aioredis.Redis) -> None:
    await redis.config_resetstat()


async def test_admission_waits_for_the_fsync_in_its_own_round_trip(
    redis: BoundedRedis, store: TaskStore, queues: AccountQueues
) -> None:
    await queues.admit("a0", "0", core_size=1, queue_size=1)  # the scripts are loaded once per client
    task = await store.create(Task(id="1", action=TaskAction.IMAGINE, prompt="p", instance_id="a1"))
    await _reset(redis)
    admitted = await queues.admit("a1", task.id, core_size=1, queue_size=1)
    waits, reads = await _waits(redis)
    assert admitted.code == 1
    assert waits == 1
    # the admission and its WAITAOF reached the server as one read, as did each INFO of `_waits`
    assert reads == 3


async def test_concurrent_admissions_share_one_wait(
    redis: BoundedRedis, store: TaskStore, queues: AccountQueues
) -> None:
    for n in range(5):
        await store.create(Task(id=str(n), action=TaskAction.IMAGINE, prompt="p", instance_id="a1"))
    await _reset(redis)
    await asyncio.gather(*(queues.admit("a1", str(n), core_size=5, queue_size=5) for n in range(5)))
    waits, _ = await _waits(redis)
    assert waits == 1


async def test_the_bridges_claim_waits_for_the_fsync_and_a_progress_write_does_not(
    redis: BoundedRedis, store: TaskStore
) -> None:
    task = await store.create(Task(id="1", action=TaskAction.IMAGINE, prompt="p", instance_id="a1"))
    await _reset(redis)
    claimed = await claim(store, task, nonce="123", account_id="a1", now=1)
    assert claimed is not None and claimed.status == TaskStatus.SUBMITTED
    assert (await _waits(redis))[0] == 1
    await store.transition("1", TaskStatus.IN_PROGRESS, progress="10%")
    assert (await _waits(redis))[0] == 1


async def test_no_wait_with_durability_none(redis: BoundedRedis, queues: AccountQueues) -> None:
    redis.durability = None
    try:
        await _reset(redis)
        await queues.admit("a1", "1", core_size=1, queue_size=1)
        assert (await _waits(redis))[0] == 0
    finally:
        redis.durability = (1, 0)
