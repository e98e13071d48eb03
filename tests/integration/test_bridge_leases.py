"""Two bridges share the accounts through Redis leases; a killed bridge's accounts move over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis
from bridge_support import (
    bridge_settings,
    read_events,
    stop_bridge,
    submit,
    wait_online,
    wait_status,
    wait_until,
)
from mjsim_support import RunningSim, start_mjsim

from broker import keys
from broker.models import TaskStatus
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from discord_bridge.main import Bridge

LEASE = 2.0


@pytest.fixture
async def sim() -> AsyncIterator[RunningSim]:
    running = await start_mjsim(accounts=4, speed=1.0, job_seconds=6.0, progress_steps=3)
    yield running
    await running.close()


async def _noop() -> None:
    return None


async def test_two_bridges_split_the_accounts_and_a_killed_ones_move_within_the_lease(
    sim: RunningSim, redis: aioredis.Redis, redis_server: EmbeddedRedis
) -> None:
    store = TaskStore(redis, retention_seconds=3600)
    settings = bridge_settings(sim, redis_server.url, lease_seconds=LEASE)
    first = Bridge(settings, redis, bridge_id="bridge-A")
    second = Bridge(settings, redis, bridge_id="bridge-B")
    first_task = asyncio.create_task(first.run())
    second_task: asyncio.Task[None] | None = None
    try:
        await wait_until(lambda: len(first.runners) == 4, what="first bridge holds every account")
        await wait_online(first, list(first.runners))
        second_task = asyncio.create_task(second.run())
        await wait_until(
            lambda: len(first.runners) == 2 and len(second.runners) == 2,
            within=10,
            what="accounts split 2/2",
        )
        assert set(first.runners).isdisjoint(second.runners)
        for account_id in first.runners:
            assert (await redis.get(keys.account_lease(account_id))) == b"bridge-A"
        await wait_online(first, list(first.runners))

        # A job in flight on one of A's accounts when A dies.
        moved = sorted(first.runners)
        task, _ = await submit(store, moved[0], prompt="a lighthouse at dusk")
        claimed = await wait_status(store, task.id, [TaskStatus.SUBMITTED])
        nonce = (claimed.properties.nonce or "").encode()

        async def job_started() -> bool:  # the bot's first message about it came through A
            return any(e.account == moved[0] and nonce in e.d for e in await read_events(redis))

        await wait_until(job_started, what="the job running at mjsim")

        # SIGKILL-like: sessions die with the process, the leases are not given back.
        first.leases.release_all = _noop  # type: ignore[method-assign]
        first.leases.withdraw = _noop  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        first_task.cancel()
        await asyncio.wait({first_task})

        await wait_until(lambda: len(second.runners) == 4, within=LEASE * 4, what="second bridge takes over")
        took = loop.time() - killed_at
        assert took <= LEASE + 2 * settings.bridge.acquire_seconds + 1.0, took
        await wait_online(second, moved)
        for account_id in moved:
            assert (await redis.get(keys.account_lease(account_id))) == b"bridge-B"

        # The running job's final message reaches the stream through the new holder's session.
        async def final_forwarded() -> bool:
            for event in await read_events(redis):
                if event.account == moved[0] and event.t == "MESSAGE_CREATE":
                    d = msgspec.json.decode(event.d)
                    if "lighthouse" in d.get("content", "") and d.get("attachments") and d.get("components"):
                        return True
            return False

        await wait_until(final_forwarded, within=15, what="final message of the moved job")
        counters = (await sim.counters())["interactions"]
        assert not counters["duplicate_keys"]
    finally:
        await stop_bridge(first, first_task)
        if second_task is not None:
            await stop_bridge(second, second_task)
