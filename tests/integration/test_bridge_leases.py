"""Two bridges share the accounts through Redis leases; a killed bridge's accounts move over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

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
from workers_support import task_stacks

from broker import keys
from broker.models import TaskStatus
from broker.redis_server import EmbeddedRedis
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.main import Bridge
from discord_bridge.session import Session

#: long enough that a bridge renews in time on a loaded machine (renewal every third of it)
LEASE = 3.0


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

        async def split() -> bool:
            """Two accounts each, and each account's lease names the bridge running it."""
            held = {"bridge-A": set(first.runners), "bridge-B": set(second.runners)}
            if [len(ids) for ids in held.values()] != [2, 2] or held["bridge-A"] & held["bridge-B"]:
                return False
            holders = await first.leases.holders([*held["bridge-A"], *held["bridge-B"]])
            return all(holders[a] == bridge for bridge, ids in held.items() for a in ids)

        # A bridge starved of CPU may renew late and lose a lease for a moment (it stops that
        # session and takes the account again): the split is awaited until it is consistent.
        await wait_until(split, within=15, what="accounts split 2/2, each under its bridge's lease")
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
        await cancel_and_wait(first_task)

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


class _OnLog(logging.Handler):
    """Calls `action` when a record containing `text` is logged (at that very moment)."""

    def __init__(self, text: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.text = text
        self.action = action
        self.fired = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.fired += 1
            self.action()


async def test_a_bridge_told_to_stop_while_it_drops_an_account_whose_lease_expired_stops(
    sim: RunningSim, redis: aioredis.Redis, redis_server: EmbeddedRedis
) -> None:
    # Under CPU load a bridge renews late and loses leases; its renewal loop then stops those
    # accounts' sessions. A stop arriving meanwhile cancelled the loop inside that session stop,
    # which swallowed the CancelledError: the loop went on renewing and the bridge waited for it
    # forever (found as a hung teardown of the lease test under load).
    bridge = Bridge(bridge_settings(sim, redis_server.url, lease_seconds=LEASE), redis, bridge_id="bridge-A")
    task = asyncio.create_task(bridge.run())
    trigger = _OnLog("lost the lease of account a0", bridge.stop)
    logger = logging.getLogger("discord_bridge.main")
    logger.addHandler(trigger)
    session: Session | None = None
    try:
        await wait_until(lambda: len(bridge.runners) == 4, what="the bridge holds every account")
        await wait_online(bridge, list(bridge.runners))
        session = bridge.runners["a0"].session
        await redis.delete(keys.account_lease("a0"))  # the lease ran out under the bridge
        done, _ = await asyncio.wait({task}, timeout=10)
        assert trigger.fired == 1
        assert done, f"the bridge did not stop within 10 s:\n{task_stacks()}"
        task.result()
        assert session.closed, "the session of the account whose lease was lost is still open"
        assert bridge.runners == {}
    finally:
        logger.removeHandler(trigger)
        await stop_bridge(bridge, task)
        if session is not None:
            await session.close()  # a session the bridge left open would outlive the test
