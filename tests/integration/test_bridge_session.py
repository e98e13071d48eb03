"""The bridge against mjsim and real Redis: sessions, forwarding, claiming exactly once, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from bridge_support import (
    bridge_settings,
    read_events,
    running_bridge,
    submit,
    wait_online,
    wait_status,
    wait_until,
)
from mjsim_support import RunningSim, start_mjsim
from workers_support import running_worker

from broker import keys
from broker.config import TaskSettings
from broker.models import TaskStatus
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from discord_bridge.consumer import Consumer
from discord_bridge.main import Bridge

MJ = "936929561302675456"


@pytest.fixture
async def sim() -> AsyncIterator[RunningSim]:
    running = await start_mjsim(accounts=2, speed=0, job_seconds=0.2, progress_steps=2)
    yield running
    await running.close()


@pytest.fixture
async def bridge(
    sim: RunningSim, redis: aioredis.Redis, redis_server: EmbeddedRedis
) -> AsyncIterator[Bridge]:
    settings = bridge_settings(sim, redis_server.url)
    async with running_bridge(settings, redis) as running:
        await wait_online(running, ["a0", "a1"])
        yield running


async def _counters(sim: RunningSim) -> dict[str, Any]:
    return (await sim.counters())["interactions"]


async def test_session_reaches_ready_and_forwards_bot_events_with_seq(
    bridge: Bridge, sim: RunningSim, redis: aioredis.Redis, store: TaskStore
) -> None:
    status = await redis.hgetall(keys.account_status("a0"))
    assert status[b"state"] == b"ONLINE"
    assert status[b"bridge"].decode() == bridge.bridge_id
    task, code = await submit(store, "a0", prompt="a red fox in snow")
    assert code == 1
    done = await wait_status(store, task.id, [TaskStatus.SUBMITTED])
    assert done.properties.nonce

    async def final_seen() -> bool:
        events = await read_events(redis)
        return any(e.t == "MESSAGE_CREATE" and b"fast)" in e.d and b"red fox" in e.d for e in events)

    await wait_until(final_seen, what="final message forwarded")
    events = [e for e in await read_events(redis) if e.account == "a0"]
    kinds = {e.t for e in events}
    assert {"INTERACTION_CREATE", "INTERACTION_SUCCESS", "MESSAGE_CREATE", "MESSAGE_UPDATE"} <= kinds
    assert "READY" not in kinds
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > 1
    first = msgspec.json.decode(next(e.d for e in events if e.t == "MESSAGE_CREATE"))
    assert first["author"]["id"] == MJ and first["nonce"] == done.properties.nonce
    counters = await _counters(sim)
    assert counters["by_nonce"][done.properties.nonce] == 1
    assert not counters["duplicate_keys"]


async def test_racing_consumers_send_a_task_once(
    bridge: Bridge, sim: RunningSim, redis: aioredis.Redis, store: TaskStore
) -> None:
    runner = bridge.runners["a1"]

    def rival() -> Consumer:
        """Another consumer of the account (as a second bridge would run), on the same session."""
        return Consumer(
            "a1",
            store=store,
            queues=bridge.queues,
            session=runner.session,
            interactions=runner.interactions,
            health=runner.health,
        )

    rivals = [rival(), rival()]
    tasks, results = [], []
    for i in range(3):
        task, _ = await submit(store, "a1", prompt=f"race number {i} --v 6")
        tasks.append(task)
        # Both rivals read the task before either claims it (their reads go out together), while
        # the bridge's own consumer, woken by the admission, goes for it too: the claim alone
        # decides who sends.
        results.append(await asyncio.gather(*(r.start_task(task.id) for r in rivals)))
    assert all(sent.count(True) <= 1 for sent in results), results

    def decided() -> bool:  # the bridge's own consumer claimed each task or saw it claimed
        own = runner.consumer
        return all(t.id in own._claimed or t.id in own._settled for t in tasks)

    def sent() -> int:
        return sum(r.sent for r in rivals) + runner.consumer.sent

    await wait_until(decided, what="the bridge's own consumer's decision on every task")
    # A consumer counts a send once its interaction has gone out, a moment after its claim.
    await wait_until(lambda: sent() >= len(tasks), what="the claimed tasks' interactions sent")
    senders = sent()
    assert senders == len(tasks), (senders, results)
    counters = await _counters(sim)
    for task in tasks:
        stored = await store.get(task.id)
        assert stored is not None and stored.properties.nonce
        assert counters["by_nonce"].get(stored.properties.nonce) == 1
    assert not counters["duplicate_keys"]
    assert counters["total"] == len(tasks)


async def test_task_marked_submitted_before_a_restart_is_not_sent_again(
    sim: RunningSim, redis: aioredis.Redis, redis_server: EmbeddedRedis, store: TaskStore
) -> None:
    task, _ = await submit(store, "a0", prompt="claimed before the crash")
    # What a bridge that crashed right after its claim leaves behind.
    await store.transition(task.id, TaskStatus.SUBMITTED, progress="0%")
    settings = bridge_settings(sim, redis_server.url)
    async with running_bridge(settings, redis) as bridge:
        await wait_online(bridge, ["a0"])
        # The consumer's reconcile found the task holding its slot and decided not to send it.
        await wait_until(
            lambda: task.id in bridge.runners["a0"].consumer._settled, what="the task seen as claimed"
        )
    counters = await _counters(sim)
    assert counters["total"] == 0
    stored = await store.get(task.id)
    assert stored is not None and stored.status == TaskStatus.SUBMITTED


async def test_rate_limit_waits_retry_after_then_sends_once(
    bridge: Bridge, sim: RunningSim, store: TaskStore
) -> None:
    account = sim.accounts[0]
    await sim.fault(account["token"], "rate_limit", count=2, retry_after=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    task, _ = await submit(store, "a0", prompt="slow down please")
    done = await wait_status(
        store, task.id, [TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS, TaskStatus.SUCCESS]
    )
    nonce = done.properties.nonce or ""

    async def received() -> bool:
        return nonce in (await _counters(sim))["by_nonce"]

    await wait_until(received, what="interaction received after the 429s")
    # mjsim answers 429 to the next two requests of the account, whichever they are: each waits 0.3 s.
    assert loop.time() - started >= 0.3
    assert bridge.runners["a0"].rest.rate_limited >= 1
    # The consumer counts a send once the POST returned: no retry of it can come after that.
    await wait_until(lambda: bridge.runners["a0"].consumer.sent == 1, what="the send finished")
    assert (await _counters(sim))["by_nonce"][nonce] == 1


async def test_discord_4xx_fails_the_task_with_its_message(
    bridge: Bridge, sim: RunningSim, store: TaskStore
) -> None:
    from broker.models import TaskAction, TaskProperties

    task, _ = await submit(
        store,
        "a0",
        action=TaskAction.UPSCALE,
        custom_id="MJ::JOB::upsample::1::00000000-0000-4000-8000-000000000000",
        properties=TaskProperties(referenced_message_id="1234567890123456789", flags=0),
    )
    failed = await wait_status(store, task.id, [TaskStatus.FAILURE])
    assert failed.fail_reason is not None and failed.fail_reason.startswith("[Discord 4")


async def test_rejected_token_disables_the_account_and_fails_its_tasks(
    sim: RunningSim, redis: aioredis.Redis, redis_server: EmbeddedRedis, store: TaskStore
) -> None:
    accounts = [{**sim.accounts[0], "token": "not-a-valid-token"}]
    settings = bridge_settings(sim, redis_server.url, accounts=accounts)
    queued, _ = await submit(store, "a0", prompt="never sent")
    async with running_bridge(settings, redis):

        async def disabled() -> bool:
            return (await redis.hget(keys.account_status("a0"), "state")) == b"DISABLED"

        await wait_until(disabled, within=15, what="account disabled")
        reason = (await redis.hget(keys.account_status("a0"), "reason")).decode()
        assert "token" in reason and "401" in reason
        failed = await wait_status(store, queued.id, [TaskStatus.FAILURE])
        assert failed.fail_reason is not None and "disabled" in failed.fail_reason


async def test_close_4004_mid_session_disables_the_account(
    bridge: Bridge, sim: RunningSim, redis: aioredis.Redis, store: TaskStore
) -> None:
    await sim.fault(sim.accounts[1]["token"], "ban")

    async def disabled() -> bool:
        return (await redis.hget(keys.account_status("a1"), "state")) == b"DISABLED"

    await wait_until(disabled, within=15, what="account disabled after 4004")
    reason = (await redis.hget(keys.account_status("a1"), "reason")).decode()
    assert "4004" in reason


async def test_a_redis_error_while_an_account_comes_online_is_retried(
    sim: RunningSim,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The account's status key holds a string: the runner's first write fails (WRONGTYPE), as
    # any Redis error would (the chaos test met a restarting Redis there). The runner used to
    # die of it, holding the lease and leaving the account's tasks unsent for good.
    await redis.set(keys.account_status("a0"), "not a hash")
    store = TaskStore(redis, retention_seconds=3600)
    settings = bridge_settings(sim, redis_server.url)
    async with running_bridge(settings, redis) as running:
        await wait_until(lambda: "coming online failed" in caplog.text, what="the failed first write")
        await redis.delete(keys.account_status("a0"))
        await wait_online(running, ["a0", "a1"])
        task, _ = await submit(store, "a0", prompt="a cat after a hiccup")
        await wait_status(store, task.id, [TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS, TaskStatus.SUCCESS])


async def test_a_pause_reported_by_the_worker_survives_the_bridges_next_status_write(
    bridge: Bridge, sim: RunningSim, redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # The worker parses the bot's captcha and reports it; the bridge's health module, the only
    # writer of the status, pauses the account and keeps it paused through its periodic rewrites
    # (it used to overwrite the worker's own PAUSED within seconds).
    store = TaskStore(redis, retention_seconds=3600)
    await sim.fault(sim.accounts[1]["token"], "captcha", on=True)
    async with running_worker(msgspec.structs.replace(bridge.settings, tasks=_ledger_in(tmp_path))):
        task, _ = await submit(store, "a1", prompt="a captcha on the way")
        failed = await wait_status(store, task.id, [TaskStatus.FAILURE])
        assert failed.fail_reason is not None and "captcha" in failed.fail_reason.lower()

        async def status() -> dict[bytes, bytes]:
            return await redis.hgetall(keys.account_status("a1"))  # type: ignore[no-any-return]

        paused = await wait_until(
            lambda: _paused(status()), within=10, what="the account paused by its bridge"
        )
        assert b"captcha" in paused[b"reason"].lower() and paused[b"bridge"].decode() == bridge.bridge_id

        async def rewritten() -> dict[bytes, bytes] | None:
            now = await status()
            return now if int(now[b"updated_ms"]) > int(paused[b"updated_ms"]) else None

        after = await wait_until(rewritten, within=5, what="the bridge's next status write")
        assert after[b"state"] == b"PAUSED"
        assert not bridge.runners["a1"].health.sending


async def _paused(status: Awaitable[dict[bytes, bytes]]) -> dict[bytes, bytes] | None:
    found = await status
    return found if found.get(b"state") == b"PAUSED" else None


def _ledger_in(tmp_path: Path) -> TaskSettings:
    return TaskSettings(retention_days=1, ledger_path=str(tmp_path / "ledger.db"))
