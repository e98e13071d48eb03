"""Timeouts: no task stays non-terminal forever, and stale slots are freed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
from workers_support import CHANNEL, make_settings, running_worker, submitted_task, wait_final

from broker import keys
from broker.clock import Clock
from broker.config import Account, Settings
from broker.models import Task, TaskStatus
from broker.queues import AccountQueues
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from discord_bridge.consumer import park, unpark
from workers.changes import ChangeHandler
from workers.delivery import HookDeliverer
from workers.outbox import HookOutbox
from workers.sweeper import Sweeper


def _account(**kw: float) -> Account:
    return Account(id="a1", guild_id="g", channel_id=CHANNEL, token="t", core_size=1, **kw)  # type: ignore[arg-type]


async def test_timed_out_task_fails_and_its_slot_goes_to_the_next_queued_task(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
    queues: AccountQueues,
) -> None:
    account = _account(timeout_minutes=0.6 / 60)
    settings = make_settings(redis_server.url, tmp_path, accounts=(account,), sweep_seconds=1)
    async with running_worker(settings):
        running, _ = await submitted_task(store, prompt="slow", core_size=1)
        queued, _ = await submitted_task(store, prompt="next", core_size=1, submit=False)
        assert await queues.waiting("a1") == [queued.id]
        failed = await wait_final(store, running.id, within=8)
        assert failed.status == TaskStatus.FAILURE
        # sent, and the bot never said a word about it
        assert failed.fail_reason == (
            "the bot never acknowledged the job: no message from it within 0.01 minutes of sending"
        )
        assert failed.progress == "" and failed.finish_time is not None
        async with asyncio.timeout(5):
            while [tid for tid, _ in await queues.running("a1")] != [queued.id]:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.02)


async def test_sweep_frees_slots_of_finished_tasks_and_ends_overdue_modal_and_queued_tasks(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
    queues: AccountQueues,
) -> None:
    now = [10_000_000]
    settings = make_settings(
        redis_server.url, tmp_path, accounts=(_account(timeout_minutes=1, queue_timeout_minutes=2),)
    )
    sweeper = Sweeper(store, queues=queues, settings=lambda: settings, clock=lambda: now[0])
    finished, _ = await submitted_task(store, prompt="done", core_size=1)
    queued, _ = await submitted_task(store, prompt="waits", core_size=1, submit=False)
    modal, _ = await submitted_task(store, prompt="modal", core_size=1, submit=False)
    # a crash left `finished` terminal but still holding its slot
    await store.transition(finished.id, TaskStatus.SUCCESS, progress="100%")
    await queues.release("a1", modal.id, core_size=1)
    await store.transition(modal.id, TaskStatus.MODAL)
    # The workers' change handler puts new and MODAL tasks in the live set; it runs here on the
    # changes of those two only (on `finished` it would free the slot the crash left held).
    await _handle_changes(store, queues, settings, [queued.id, modal.id], clock=lambda: now[0])
    now[0] = (queued.submit_time or 0) + 30_000

    report = await sweeper.sweep()
    assert finished.id in report.released and report.timed_out == []
    assert [tid for tid, _ in await queues.running("a1")] == [queued.id]  # promoted, still young

    now[0] += 120_000
    report = await sweeper.sweep()
    assert set(report.timed_out) == {queued.id, modal.id}
    q = await store.get(queued.id)
    m = await store.get(modal.id)
    assert q is not None and q.status == TaskStatus.FAILURE and q.fail_reason is not None
    assert m is not None and m.status == TaskStatus.FAILURE
    assert m.fail_reason == "Modal not submitted within 1 minute"
    assert await queues.running("a1") == []
    await sweeper.sweep()
    assert [await redis.zcard(live) for live in keys.LIVE_TASKS] == [0] * keys.SHARDS


async def _handle_changes(
    store: TaskStore, queues: AccountQueues, settings: Settings, task_ids: list[str], *, clock: Clock
) -> None:
    """Run the workers' `ChangeHandler` on the change-stream entries of `task_ids`."""
    entries = [
        (entry_id, fields)
        for stream in dict.fromkeys(keys.changes_stream(task_id) for task_id in task_ids)
        for entry_id, fields in await store.redis.xrange(stream)
        if fields[b"id"].decode() in task_ids
    ]
    outbox = HookOutbox(store.redis, ttl_ms=60_000)
    deliverer = HookDeliverer(store.redis, outbox, settings=settings.hooks, clock=clock)
    handler = ChangeHandler(
        store, queues=queues, deliverer=deliverer, ledger=None, settings=lambda: settings, clock=clock
    )
    try:
        await handler(entries)
    finally:
        await deliverer.close()


async def test_a_task_holding_a_slot_but_never_sent_fails_naming_its_account(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
    queues: AccountQueues,
) -> None:
    now = [10_000_000]
    settings = make_settings(redis_server.url, tmp_path, accounts=(_account(timeout_minutes=1),))
    sweeper = Sweeper(store, queues=queues, settings=lambda: settings, clock=lambda: now[0])
    unsent, _ = await submitted_task(store, prompt="never sent", core_size=1, submit=False)
    assert [tid for tid, _ in await queues.running("a1")] == [unsent.id]  # it has the slot
    now[0] = (unsent.submit_time or 0) + 61_000
    report = await sweeper.sweep()
    assert report.timed_out == [unsent.id]
    failed = await store.get(unsent.id)
    assert failed is not None and failed.status == TaskStatus.FAILURE
    assert failed.fail_reason == (
        "Task was not sent to Discord within 1 minute: account a1 is not taking work "
        "(see /mj/account/a1/fetch)"
    )


class _RacingStore(TaskStore):
    """A store whose next read is followed by a write of another process before the caller goes on:
    the bridge unparking (sending) a task between the sweeper's read and its write."""

    race: Callable[[str], Awaitable[object]] | None = None

    async def get(self, task_id: str) -> Task | None:
        task = await super().get(task_id)
        race, self.race = self.race, None
        if race is not None:
            await race(task_id)
        return task


async def test_a_task_sent_after_the_sweeper_read_it_is_not_failed_on_that_stale_read(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path, queues: AccountQueues
) -> None:
    store = _RacingStore(redis, retention_seconds=3600)
    settings = make_settings(redis_server.url, tmp_path, accounts=(_account(timeout_minutes=1),))
    task, _ = await submitted_task(store, prompt="parked", core_size=1)
    until = (task.start_time or 0) + 5_000
    parked = await park(store, task, until=until)  # a 429 asked for 5 s
    assert parked is not None
    now = [until + 60_000]  # the bridge never came back... until the very moment the sweeper reads
    sweeper = Sweeper(store, queues=queues, settings=lambda: settings, clock=lambda: now[0])
    store.race = lambda task_id: unpark(store, parked, now=now[0])
    report = await sweeper.sweep()
    assert report.timed_out == []
    sent = await store.get(task.id)
    assert sent is not None and sent.status == TaskStatus.SUBMITTED and sent.start_time == now[0]
    assert [tid for tid, _ in await queues.running("a1")] == [task.id]  # it keeps its slot
    now[0] += 60_000
    assert (await sweeper.sweep()).timed_out == [task.id]  # judged again, on its send time
