"""Test support for the bridge: settings pointing at an in-process mjsim, a running Bridge, tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from workers_support import new_task_id, task_stacks

from broker import keys
from broker.account_status import AccountState
from broker.admission import create_and_admit
from broker.config import Settings, parse_settings
from broker.events import decode_event
from broker.models import BotType, Task, TaskAction, TaskProperties, TaskStatus
from broker.queues import AccountQueues
from broker.store import TaskStore
from discord_bridge.main import Bridge


def bridge_settings(
    sim: Any,
    redis_url: str,
    *,
    accounts: Sequence[dict[str, Any]] | None = None,
    core_size: int = 3,
    lease_seconds: float = 3.0,
    **account_extra: Any,
) -> Settings:
    """Settings with one config account per mjsim account (ids a0, a1, ...)."""
    summaries = accounts if accounts is not None else sim.accounts
    doc: dict[str, Any] = {
        "redis": {"url": redis_url},
        "discord": {
            "rest_url": sim.rest_base,
            "gateway_url": sim.gateway_url,
            "cdn_url": sim.base_url,
            "inpaint_url": sim.base_url,
        },
        "bridge": {
            "lease_seconds": lease_seconds,
            "acquire_seconds": 0.3,
            "reconcile_seconds": 0.5,
            "status_seconds": 0.3,
            "step_timeout_seconds": 8,
            "request_timeout_seconds": 5,
        },
        "tasks": {"retention_days": 1},
        "accounts": [
            {
                "id": f"a{i}",
                "guild_id": a["guildId"],
                "channel_id": a["channelId"],
                "token": a["token"],
                "core_size": core_size,
                **account_extra,
            }
            for i, a in enumerate(summaries)
        ],
    }
    return parse_settings(doc, {})


@contextlib.asynccontextmanager
async def running_bridge(
    settings: Settings, redis: aioredis.Redis, *, bridge_id: str | None = None
) -> AsyncIterator[Bridge]:
    bridge = Bridge(settings, redis, bridge_id=bridge_id)
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        await stop_bridge(bridge, task)


async def stop_bridge(bridge: Bridge, task: asyncio.Task[None], within: float = 10.0) -> None:
    """Stop `bridge`, whose `run()` is `task`; fail with every task's stack if it does not end in
    time, or with its error if it crashed (a bridge cancelled on purpose is fine)."""
    bridge.stop()
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        stacks = task_stacks()
        # Cancelled rather than left running into the tests that follow.
        task.cancel()
        await asyncio.wait({task}, timeout=within)
        raise AssertionError(f"the bridge did not stop within {within} s:\n{stacks}")
    if not task.cancelled():
        task.result()


async def wait_until(
    check: Callable[[], Any], *, within: float = 10.0, every: float = 0.05, what: str = "condition"
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)


async def wait_online(bridge: Bridge, account_ids: Sequence[str], within: float = 15.0) -> None:
    """Wait until the bridge's sessions are ready and the accounts' statuses in Redis say ONLINE (the
    health module sets its state before it writes it: the other processes see only the write)."""

    async def ready() -> bool:
        for account_id in account_ids:
            runner = bridge.runners.get(account_id)
            if runner is None or not runner.session.ready.is_set():
                return False
            if runner.health.state != AccountState.ONLINE:
                return False
            state = await bridge.redis.hget(keys.account_status(account_id), "state")
            if state != AccountState.ONLINE.encode():
                return False
        return True

    await wait_until(ready, within=within, what=f"accounts {list(account_ids)} online")


async def submit(
    store: TaskStore,
    account_id: str,
    *,
    action: TaskAction = TaskAction.IMAGINE,
    prompt: str | None = None,
    core_size: int = 3,
    queue_size: int = 50,
    bot_type: BotType = BotType.MID_JOURNEY,
    properties: TaskProperties | None = None,
    blobs: dict[str, bytes] | None = None,
    custom_id: str | None = None,
) -> tuple[Task, int]:
    """Create and admit a task as web would."""
    task_id = new_task_id()
    props = properties or TaskProperties()
    if blobs:
        await store.put_blobs(task_id, blobs)
        props = TaskProperties(**{**_props_dict(props), "attachments": list(blobs)})
    task = Task(
        id=task_id,
        action=action,
        prompt=prompt,
        prompt_en=prompt,
        submit_time=int(time.time() * 1000),
        properties=props,
        bot_type=bot_type,
        instance_id=account_id,
        custom_id=custom_id,
    )
    task, admission = await create_and_admit(
        store, AccountQueues(store.redis), task, account_id, core_size=core_size, queue_size=queue_size
    )
    return task, admission.code


def _props_dict(props: TaskProperties) -> dict[str, Any]:
    return {f: getattr(props, f) for f in props.__struct_fields__}


async def wait_status(
    store: TaskStore, task_id: str, statuses: Sequence[TaskStatus], *, within: float = 10.0
) -> Task:
    async def check() -> Task | None:
        task = await store.get(task_id)
        return task if task is not None and task.status in statuses else None

    result: Task = await wait_until(check, within=within, what=f"task {task_id} in {list(statuses)}")
    return result


async def read_events(redis: aioredis.Redis) -> list[Any]:
    """Every event on the shards' streams, in the order they were appended."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in keys.EVENTS_STREAMS:
            pipe.xrange(stream)
        shards = await pipe.execute()
    rows = sorted((row for rows in shards for row in rows), key=lambda row: _entry_order(row[0]))
    return [decode_event(fields) for _, fields in rows]


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)
