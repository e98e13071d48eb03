"""Notify hooks: ordered, signed, retried with a bound, isolated per receiver, guarded addresses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import redis.asyncio as aioredis
from workers_support import (
    FixedDns,
    HookReceiver,
    imagine_events,
    make_settings,
    push,
    running_worker,
    snowflake,
    submitted_task,
    wait_final,
    wait_task,
)

from broker import hook_receivers, keys
from broker.config import HookSettings
from broker.hook_receivers import ReceiverFailure
from broker.models import Task, TaskStatus
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from broker.url_guard import UrlGuard
from workers.delivery import HookDeliverer
from workers.outbox import HookOutbox

JOB = "9e107d9d-372b-4b3a-9b8e-3a1c2b3d4e5f"


async def _run_imagine(store: TaskStore, redis: aioredis.Redis, hook: str, prompt: str) -> str:
    task, nonce = await submitted_task(store, prompt=prompt, hook=hook)
    for t, d in imagine_events(prompt, nonce, JOB, start_id=snowflake(), final_id=snowflake()):
        await push(redis, t, d)
    return task.id


async def _failing_receivers(
    redis: aioredis.Redis, until: Callable[[list[ReceiverFailure]], bool]
) -> list[ReceiverFailure]:
    async with asyncio.timeout(10):
        while not until(found := await hook_receivers.failing(redis, since=0)):  # noqa: ASYNC110 - polls Redis, bounded
            await asyncio.sleep(0.02)
    return found


async def test_hook_signature_verifies_with_the_configured_secret(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    secret = "s3cret-hook-key"
    settings = make_settings(
        redis_server.url,
        tmp_path,
        hooks=HookSettings(secret=secret, default_url=receiver.url("d")),
        allow=(receiver.address,),
    )
    async with running_worker(settings):
        task_id = await _run_imagine(store, redis, receiver.url("signed"), "a signed fox")
        final = await wait_final(store, task_id)
        await receiver.wait_for(lambda: any(r.version == final.revision for r in receiver.for_path("signed")))
    for r in receiver.for_path("signed"):
        assert r.headers["content-type"] == "application/json"
        timestamp = r.headers["x-mjbroker-timestamp"]
        assert abs(int(timestamp) - time.time()) < 60
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + r.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r.headers["x-mjbroker-signature"], f"sha256={expected}")
        assert r.task["id"] == task_id and r.task["revision"] == r.version
    assert receiver.for_path("d") == []  # the task's own hook wins over the default


async def test_receiver_failing_for_a_while_gets_the_current_state_then_each_change_in_order(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    receiver.modes["flaky"] = "fail"
    settings = make_settings(
        redis_server.url, tmp_path, hooks=HookSettings(request_timeout_seconds=2.0), allow=(receiver.address,)
    )
    async with running_worker(settings):
        prompt = "a flaky fox"
        task, nonce = await submitted_task(store, prompt=prompt, hook=receiver.url("flaky"))
        events = imagine_events(prompt, nonce, JOB, start_id=snowflake(), final_id=snowflake())
        for t, d in events[:2]:  # the start and the first progress, while the receiver fails
            await push(redis, t, d)
        await wait_task(store, task.id, lambda t: t.progress == "15%")
        await receiver.wait_for(lambda: receiver.attempts.get("flaky", 0) >= 3)
        assert receiver.for_path("flaky") == []
        # the status page lists the receiver as failing (host:port only), with its error
        failing = await _failing_receivers(redis, lambda found: bool(found) and found[0].failures >= 2)
        assert [f.receiver for f in failing] == [receiver.address]
        assert (
            failing[0].last_error.startswith("HTTP 5")
            and failing[0].first_failure_ms <= failing[0].last_failure_ms
        )
        receiver.modes["flaky"] = "ok"
        missed = await store.get(task.id)
        assert missed is not None

        def delivered(revision: int) -> bool:
            return any(r.version >= revision for r in receiver.for_path("flaky"))

        # What it missed comes as one delivery of the state it is in now, not as a backlog; each
        # later change is waited for, so that several deliveries follow and their order shows.
        await receiver.wait_for(lambda: delivered(missed.revision))
        for t, d in events[2:]:
            await push(redis, t, d)
            if t == "MESSAGE_DELETE":
                continue  # the deletion of the progress message is recorded quietly: no hook of its own
            now = await wait_task(store, task.id, lambda _: True)
            await receiver.wait_for(lambda rev=now.revision: delivered(rev))  # type: ignore[misc]
        final = await wait_final(store, task.id)
        await receiver.wait_for(lambda: delivered(final.revision))
        versions = [r.version for r in receiver.for_path("flaky")]
        assert versions[0] == missed.revision, versions
        assert versions == sorted(set(versions)) and versions[-1] == final.revision, versions
        assert len(versions) >= 3, versions  # the order of several deliveries was checked
        assert receiver.for_path("flaky")[-1].task["status"] == "SUCCESS"
        outbox = HookOutbox(redis, ttl_ms=60_000)
        async with asyncio.timeout(5):
            while int((state := await outbox.state(task.id)).get("delivered", 0)) < final.revision:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.02)
        assert "gave_up" not in state and "attempts" not in state
        assert await _failing_receivers(redis, lambda found: not found) == []  # a success clears it


async def test_receiver_that_never_answers_is_given_up_without_delaying_others(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    receiver.modes["hang"] = "hang"
    hooks = HookSettings(request_timeout_seconds=0.3, give_up_minutes=1.5 / 60)
    settings = make_settings(redis_server.url, tmp_path, hooks=hooks, allow=(receiver.address,))
    async with running_worker(settings):
        stuck, _ = await submitted_task(store, prompt="stuck", hook=receiver.url("hang"))
        await receiver.wait_for(lambda: receiver.attempts.get("hang", 0) >= 1)
        started = time.monotonic()
        task_id = await _run_imagine(store, redis, receiver.url("fast"), "a fast fox")
        final = await wait_final(store, task_id)
        await receiver.wait_for(lambda: any(r.version == final.revision for r in receiver.for_path("fast")))
        assert time.monotonic() - started < 1.0  # not stuck behind the hanging receiver
        outbox = HookOutbox(redis, ttl_ms=60_000)
        async with asyncio.timeout(10):
            while "gave_up" not in (state := await outbox.state(stuck.id)):  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.05)
        assert int(state["gave_up"]) == stuck.revision and state["gave_up_reason"] == "timed out"
        assert int(state["attempts"]) >= 2
        # given up for good: recorded on the task, by a quiet write that sends no hook itself
        recorded = await _hook_error(store, stuck.id)
        assert recorded.properties.notify_hook_error == "gave up after retrying for 0.025 min: timed out"
        assert recorded.status == stuck.status and recorded.progress == stuck.progress


async def test_a_dead_receiver_with_many_tasks_does_not_take_every_delivery_slot(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    """More hanging deliveries than the worker's slots: another receiver's hook still goes out."""
    receiver.modes["hang"] = "hang"
    other = HookReceiver()
    await other.start()
    hooks = HookSettings(concurrency=4, per_host_concurrency=2, request_timeout_seconds=30, give_up_minutes=1)
    try:
        allow = (receiver.address, other.address)
        async with running_worker(make_settings(redis_server.url, tmp_path, hooks=hooks, allow=allow)):
            for i in range(10):
                await submitted_task(store, prompt=f"stuck {i}", hook=receiver.url("hang"))
            await receiver.wait_for(lambda: receiver.attempts.get("hang", 0) >= 2)
            started = time.monotonic()
            task_id = await _run_imagine(store, redis, other.url("fast"), "a fast fox")
            final = await wait_final(store, task_id)
            await other.wait_for(lambda: any(r.version == final.revision for r in other.for_path("fast")))
            assert time.monotonic() - started < 1.5  # the hanging host holds at most its own share
            assert receiver.attempts.get("hang", 0) <= 2  # never more than its cap at once
    finally:
        await other.stop()


async def test_hook_to_the_cloud_metadata_address_is_refused(
    store: TaskStore, redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    async with running_worker(make_settings(redis_server.url, tmp_path)):
        task, _ = await submitted_task(store, prompt="x", hook="http://169.254.169.254/latest/meta-data/")
        outbox = HookOutbox(redis, ttl_ms=60_000)
        async with asyncio.timeout(5):
            while "gave_up" not in (state := await outbox.state(task.id)):  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.02)
    assert "refused" in state["gave_up_reason"] and "cloud metadata" in state["gave_up_reason"]
    assert "latest/meta-data" not in state["gave_up_reason"]


async def _hook_error(store: TaskStore, task_id: str) -> Task:
    """The task once its notifyHookError is recorded (written just after the outbox gives up)."""
    async with asyncio.timeout(5):
        while not (task := await store.get(task_id)) or not task.properties.notify_hook_error:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
            await asyncio.sleep(0.02)
    return task


async def test_hook_names_are_checked_on_the_address_connected_to(
    store: TaskStore, redis: aioredis.Redis, receiver: HookReceiver
) -> None:
    # The name passes the URL check (no DNS there); what it resolves to when the client connects
    # is what counts: a rebinding name that answers with the metadata address is refused.
    dns = FixedDns({"rebind.test": ["169.254.169.254"], "receiver.test": ["127.0.0.1"]})
    outbox = HookOutbox(redis, ttl_ms=60_000)
    guard = UrlGuard([receiver.address])
    deliverer = HookDeliverer(redis, outbox, settings=HookSettings(), guard=guard, store=store, resolver=dns)
    try:
        refused, _ = await submitted_task(store, prompt="x", hook="http://rebind.test/hook")
        allowed, _ = await submitted_task(store, prompt="y", hook=f"http://receiver.test:{receiver.port}/ok")
        await deliverer.schedule(refused.id, refused.revision)
        await deliverer.schedule(allowed.id, allowed.revision)
        await receiver.wait_for(lambda: len(receiver.for_path("ok")) == 1, within=5)
        async with asyncio.timeout(5):
            while "gave_up" not in (state := await outbox.state(refused.id)):  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.02)
        recorded = await _hook_error(store, refused.id)
    finally:
        await deliverer.close()
    assert state["gave_up_reason"] == (
        "refused: host rebind.test resolves to 169.254.169.254 (cloud metadata, not in url_guard.allow)"
    )
    assert receiver.for_path("ok")[0].task["id"] == allowed.id
    assert recorded.properties.notify_hook_error == state["gave_up_reason"]
    assert recorded.revision > refused.revision
    assert (await store.get(allowed.id)).properties.notify_hook_error is None  # type: ignore[union-attr]


async def test_no_hook_before_the_task_is_submitted(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    async with running_worker(make_settings(redis_server.url, tmp_path, allow=(receiver.address,))):
        waiting, _ = await submitted_task(store, prompt="queued", hook=receiver.url("early"), submit=False)
        sent, _ = await submitted_task(store, prompt="sent", hook=receiver.url("early"))
        await receiver.wait_for(lambda: len(receiver.for_path("early")) >= 1)
        # Once the workers handled every change (both creations included), a delivery the NOT_START
        # one asked for would be in the outbox, sent or not.
        await _changes_handled(redis)
        outbox = HookOutbox(redis, ttl_ms=60_000)
        assert await outbox.state(waiting.id) == {}
        assert (await store.get(waiting.id)).status == TaskStatus.NOT_START  # type: ignore[union-attr]
    assert {r.task["id"] for r in receiver.for_path("early")} == {sent.id}
    assert all(r.task["status"] == TaskStatus.SUBMITTED for r in receiver.for_path("early"))


async def _changes_handled(redis: aioredis.Redis) -> None:
    """Wait until the workers' change group has read and acknowledged every change so far."""
    async with asyncio.timeout(5):
        for stream in keys.CHANGES_STREAMS:
            last = await redis.xrevrange(stream, count=1)
            if not last:
                continue
            last_id = last[0][0]
            while True:
                group = next(
                    g for g in await redis.xinfo_groups(stream) if g["name"] == keys.CHANGES_GROUP.encode()
                )
                done = group["last-delivered-id"].split(b"-")
                if group["pending"] == 0 and tuple(map(int, done)) >= tuple(map(int, last_id.split(b"-"))):
                    break
                await asyncio.sleep(0.01)


async def test_a_revision_that_only_binds_discord_ids_sends_no_hook_of_its_own(
    store: TaskStore,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    async with running_worker(make_settings(redis_server.url, tmp_path, allow=(receiver.address,))):
        task, _ = await submitted_task(store, prompt="quiet", hook=receiver.url("quiet"))
        await receiver.wait_for(lambda: len(receiver.for_path("quiet")) == 1)

        def bind(t: Task) -> Task:
            return msgspec.structs.replace(
                t, properties=msgspec.structs.replace(t.properties, progress_message_id="42")
            )

        quiet = await store.update(task.id, bind)
        await _changes_handled(redis)
        moved = await store.transition(task.id, TaskStatus.IN_PROGRESS, progress="10%")
        assert quiet.task is not None and moved.task is not None
        await receiver.wait_for(lambda: len(receiver.for_path("quiet")) == 2)
    sent = receiver.for_path("quiet")
    assert [r.version for r in sent] == [task.revision, moved.task.revision]
    # the quiet change reaches the receiver with the next notable one
    assert sent[-1].task["properties"]["progressMessageId"] == "42"
