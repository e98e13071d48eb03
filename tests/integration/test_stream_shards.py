"""A consumer reads every shard of a stream: in one call on one server, one call per shard as on a
cluster; it acknowledges per stream and takes over what a dead consumer left on any shard."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis

from broker import keys
from broker.shutdown import cancel_and_wait
from workers.consumer import Entry, StreamConsumer

GROUP = "test-shards"
STREAMS = keys.CHANGES_STREAMS


class Handled:
    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.changed = asyncio.Event()

    async def __call__(self, entries: Sequence[Entry]) -> None:
        self.values.extend(fields[b"n"] for _, fields in entries)
        self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.values) < count:
                self.changed.clear()
                await self.changed.wait()


async def _pending(redis: aioredis.Redis) -> int:
    return sum([(await redis.xpending(stream, GROUP))["pending"] for stream in STREAMS])


@pytest.mark.parametrize("mode", ["single", "cluster"])
async def test_a_consumer_handles_and_acknowledges_the_entries_of_every_shard_once(
    redis: aioredis.Redis, mode: str
) -> None:
    handled = Handled()
    consumer = StreamConsumer(
        redis, reads=keys.read_groups(STREAMS, mode=mode), group=GROUP, name="w1", handle=handled, block_ms=50
    )
    await consumer.ensure_group()
    running = asyncio.create_task(consumer.run())
    try:
        for n in range(40):
            await redis.xadd(STREAMS[n % keys.SHARDS], {"n": str(n)})
        await handled.until(40)
        await redis.xadd(STREAMS[0], {"n": "last"})  # the acks go out with the next read
        await handled.until(41)
    finally:
        await cancel_and_wait(running)
    assert sorted(handled.values) == sorted([str(n).encode() for n in range(40)] + [b"last"])
    assert await _pending(redis) == 0


@pytest.mark.parametrize("mode", ["single", "cluster"])
async def test_entries_a_dead_consumer_left_on_any_shard_are_taken_over(
    redis: aioredis.Redis, mode: str
) -> None:
    for stream in STREAMS:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for shard in (2, 11):
        await redis.xadd(STREAMS[shard], {"n": str(shard)})
        # a worker read it and died before acknowledging it
        assert await redis.xreadgroup(GROUP, "dead", {STREAMS[shard]: ">"}, count=10)
    handled = Handled()
    consumer = StreamConsumer(
        redis,
        reads=keys.read_groups(STREAMS, mode=mode),
        group=GROUP,
        name="w2",
        handle=handled,
        block_ms=50,
        claim_idle_ms=100,
    )
    running = asyncio.create_task(consumer.run())
    try:
        await handled.until(2)
    finally:
        await cancel_and_wait(running)  # its finished entries are acknowledged as it stops
    assert sorted(handled.values) == [b"11", b"2"]
    assert await _pending(redis) == 0
