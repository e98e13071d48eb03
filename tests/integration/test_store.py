"""The task store against a real Redis: state machine, revisions, admission and release."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis

from broker import keys
from broker.clock import now_ms
from broker.models import Task, TaskAction, TaskProperties, TaskStatus
from broker.queues import AccountQueues
from broker.store import InvalidTransition, TaskStore


def _task(task_id: str) -> Task:
    return Task(id=task_id, action=TaskAction.IMAGINE, prompt="a cat", submit_time=1, instance_id="a1")


async def test_create_sets_a_revision_of_at_least_the_clock_and_announces_change(
    store: TaskStore, redis: aioredis.Redis
) -> None:
    before = now_ms()
    task = await store.create(_task("1"))
    assert task.revision >= before
    assert (await store.get("1")) == task
    entries = await redis.xrange(keys.changes_stream("1"))
    assert [e[1] for e in entries] == [{b"id": b"1", b"rev": str(task.revision).encode()}]


async def test_revisions_stay_higher_than_any_sent_after_redis_lost_writes(store: TaskStore) -> None:
    # A host crash that loses the AOF's unsynced tail puts a record back to an older revision; the
    # revisions (hook versions) written after it must not repeat the ones lost, which receivers saw.
    created = await store.create(_task("1"))
    raw_before = await store.get_raw("1")
    moved = await store.transition("1", TaskStatus.SUBMITTED, progress="0%")
    assert moved.task is not None
    sent = moved.task.revision
    await store.redis.hset(keys.task_record("1"), mapping={"v": created.revision, "d": raw_before})
    again = await store.transition("1", TaskStatus.SUBMITTED, progress="0%", prompt="other")
    assert again.task is not None and again.task.revision > sent


async def test_a_write_that_only_changes_properties_is_not_announced(
    store: TaskStore, redis: aioredis.Redis
) -> None:
    await store.create(_task("1"))
    await store.transition("1", TaskStatus.SUBMITTED, progress="0%")

    def bind(task: Task) -> Task:
        return msgspec.structs.replace(task, properties=TaskProperties(progress_message_id="9"))

    await store.update("1", bind)
    await store.transition("1", TaskStatus.IN_PROGRESS, progress="10%")
    entries = [e[1] for e in await redis.xrange(keys.changes_stream("1"))]
    revisions = [int(e[b"rev"]) for e in entries]
    assert len(revisions) == 3 and revisions == sorted(set(revisions))
    task = await store.get("1")
    assert task is not None and revisions[-1] == task.revision


async def test_transition_follows_state_machine_and_terminal_is_final(store: TaskStore) -> None:
    await store.create(_task("1"))
    created = await store.get("1")
    up = await store.transition("1", TaskStatus.SUBMITTED, progress="0%")
    assert created is not None
    assert up.changed and up.task is not None and up.task.revision > created.revision
    await store.transition("1", TaskStatus.IN_PROGRESS, progress="40%")
    await store.transition("1", TaskStatus.SUCCESS, progress="100%")
    with pytest.raises(InvalidTransition):
        await store.transition("1", TaskStatus.IN_PROGRESS, progress="50%")
    with pytest.raises(InvalidTransition):
        await store.transition("1", TaskStatus.SUCCESS, image_url="http://x")
    seeded = await store.transition("1", TaskStatus.SUCCESS, seed="123")
    assert seeded.changed and seeded.task is not None and seeded.task.seed == "123"


async def test_a_finished_task_still_records_its_hook_error_quietly(
    store: TaskStore, redis: aioredis.Redis
) -> None:
    await store.create(_task("1"))
    await store.transition("1", TaskStatus.SUBMITTED, progress="0%")
    await store.transition("1", TaskStatus.SUCCESS, progress="100%")

    def hook_error(task: Task) -> Task:
        props = msgspec.structs.replace(task.properties, notify_hook_error="refused: host x is loopback")
        return msgspec.structs.replace(task, properties=props)

    finished = await store.get("1")
    recorded = await store.update("1", hook_error)
    assert finished is not None and recorded.changed and recorded.task is not None
    assert recorded.task.revision > finished.revision
    assert recorded.task.properties.notify_hook_error == "refused: host x is loopback"
    entries = [e[1] for e in await redis.xrange(keys.changes_stream("1"))]
    announced = [int(e[b"rev"]) for e in entries]
    assert len(announced) == 3 and announced[-1] == finished.revision  # quiet: no hook, no ledger row

    def other_property(task: Task) -> Task:
        return msgspec.structs.replace(task, properties=TaskProperties(progress_message_id="9"))

    with pytest.raises(InvalidTransition):  # anything else of a finished task stays frozen
        await store.update("1", other_property)


async def test_modal_only_goes_back_to_not_start(store: TaskStore) -> None:
    await store.create(_task("1"))
    await store.transition("1", TaskStatus.MODAL)
    with pytest.raises(InvalidTransition):
        await store.transition("1", TaskStatus.SUBMITTED)
    assert (await store.transition("1", TaskStatus.NOT_START)).changed


async def test_progress_never_goes_back(store: TaskStore) -> None:
    await store.create(_task("1"))
    await store.transition("1", TaskStatus.SUBMITTED)
    await store.transition("1", TaskStatus.IN_PROGRESS, progress="60%")
    late = await store.transition("1", TaskStatus.IN_PROGRESS, progress="20%")
    assert not late.changed
    assert late.task is not None and late.task.progress == "60%"


async def test_concurrent_updates_lose_nothing(store: TaskStore) -> None:
    created = await store.create(_task("1"))

    async def add_state(n: int) -> None:
        await store.update("1", lambda t: Task(**{**_fields(t), "state": (t.state or "") + f"{n},"}))

    await asyncio.gather(*(add_state(n) for n in range(30)))
    task = await store.get("1")
    assert task is not None
    assert sorted(int(x) for x in (task.state or "").split(",") if x) == list(range(30))
    assert task.revision >= created.revision + 30


def _fields(task: Task) -> dict[str, object]:
    return {f: getattr(task, f) for f in task.__struct_fields__}


async def test_admission_starts_queues_then_rejects(queues: AccountQueues) -> None:
    codes = [(await queues.admit("a1", str(i), core_size=3, queue_size=10)) for i in range(15)]
    assert [c.code for c in codes] == [1] * 3 + [22] * 10 + [23] * 2
    assert [c.position for c in codes[3:13]] == list(range(1, 11))
    # each step reports the account's load (running + waiting) right after it
    assert [c.load for c in codes] == [*range(1, 14), 13, 13]


async def test_release_promotes_the_oldest_queued_task_once(queues: AccountQueues) -> None:
    for i in range(5):
        await queues.admit("a1", str(i), core_size=2, queue_size=10)
    assert await queues.release("a1", "0", core_size=2) == ["2"]
    assert await queues.release("a1", "0", core_size=2) == []
    assert [t for t, _ in await queues.running("a1")] == ["1", "2"]
    assert await queues.waiting("a1") == ["3", "4"]
    assert await queues.position("a1", "4") == 2
    assert await queues.unfinished("a1") == ["1", "2", "3", "4"]


async def test_writes_survive_a_server_that_forgot_its_scripts(
    store: TaskStore, redis: aioredis.Redis
) -> None:
    # A restarted Redis has an empty script cache; writes send EVALSHA directly and must reload.
    await redis.script_flush()
    task = await store.create(_task("1"))
    await redis.script_flush()
    moved = await store.transition(task.id, TaskStatus.SUBMITTED)
    assert moved.changed and moved.task is not None and moved.task.revision > task.revision
