"""Lua scripts sent by EVALSHA, alone or several in one pipeline.

redis-py's own `Script` checks ``SCRIPT EXISTS`` before every pipeline that holds one: a second
round trip on the hot paths (every task write is a script). Here a client loads the scripts it
pipelines once, at first use, and then sends them by hash. A server that forgot them since (it
restarted, failed over, or was flushed) answers NOSCRIPT for those commands only, and they did not
run: the scripts are loaded again and just those commands are sent again.

A connection that fails after a pipeline was written leaves its caller unable to tell what ran:
Redis may have run every command, some, or none, and only the reply was lost. By default that
failure reaches the caller (redis-py's `ConnectionError`): nothing that may have run is sent twice,
so such a pipeline may hold any command. A caller whose pipeline is *idempotent*, one that returns
its first outcome and changes nothing more when it runs again, passes ``resend=True``: the
pipeline is then sent once more on a new connection and the caller gets the replies of that
second run (a cluster client sends it again until its `resend_window` has passed: a shard that
fails over is unreachable for a few seconds, and part of a pipeline may have run on other
shards). The calls sent that way, and why each is safe, are listed in README ("Redis"): admission
(`broker.queues`), the compare-and-set of a task record with its announcement (`broker.store`),
slot releases, and the hook outbox's scripts (`workers.outbox`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import AuthenticationError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["Fill", "Script", "execute"]

log = logging.getLogger(__name__)

#: queues commands on a pipeline; `execute` sends them
Fill = Callable[[Pipeline], None]


class Script:
    """One Lua script: its source and SHA1."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        #: clients that loaded it once (see `execute`)
        self.loaded: weakref.WeakSet[aioredis.Redis] = weakref.WeakSet()
        #: the calls queued on each pipeline not yet sent, by position: what a NOSCRIPT resends
        self._queued: weakref.WeakKeyDictionary[Pipeline, dict[int, tuple[Any, ...]]] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(
        self, redis: aioredis.Redis, keys: Sequence[str], args: Sequence[Any], *, resend: bool = False
    ) -> Any:
        """Run it alone (through `execute`, which loads it when the server lacks it).

        ``resend=True`` only for a script that is idempotent (see the module).
        """
        (reply,) = await execute(redis, lambda pipe: self.queue(pipe, keys, args), [self], resend=resend)
        return reply

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call to `pipe`; send it with `execute`."""
        command = (self.sha, len(keys), *keys, *args)
        self._queued.setdefault(pipe, {})[len(pipe)] = command
        pipe.evalsha(*command)

    def _take(self, pipe: Pipeline) -> dict[int, tuple[Any, ...]]:
        return self._queued.pop(pipe, {})


async def execute(
    redis: aioredis.Redis,
    fill: Fill,
    scripts: Sequence[Script],
    *,
    raise_on_error: bool = True,
    resend: bool = False,
    durable: bool = False,
) -> list[Any]:
    """Send what `fill` queues in one round trip (no MULTI) and return the replies, in order.

    `scripts` are those `fill` may queue: each is loaded on the client's first use. A command that
    failed raises its error, or with ``raise_on_error=False`` stands in the replies as an exception.
    With ``resend=True`` (only for idempotent pipelines: see the module) a connection that fails
    once is followed by one more send, `fill` queueing the same commands again.
    With `durable`, the round trip ends with the client's ``WAITAOF`` (see `broker.redis_client`):
    the replies come back once the writes are durable, else `NotDurable` is raised (whatever
    `raise_on_error` says: the writes may have run, so no caller may treat them as done).
    """
    for script in scripts:
        if redis not in script.loaded:
            await redis.script_load(script.source)
            script.loaded.add(redis)
    try:
        replies = await _send(redis, fill, scripts, durable)
    except AuthenticationError:
        raise
    except RedisConnectionError as exc:
        if not resend:
            raise
        log.info("Redis connection failed (%s); sending an idempotent pipeline once more", exc)
        replies = await _resend(redis, fill, scripts, durable)
    if raise_on_error:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    return replies


async def _resend(redis: aioredis.Redis, fill: Fill, scripts: Sequence[Script], durable: bool) -> list[Any]:
    """Send an idempotent pipeline again: once, or, with a client that has a `resend_window`
    (a cluster: a failover makes a shard unreachable for a few seconds), again and again with
    backoff until that many seconds have passed since the first resend."""
    window: float = getattr(redis, "resend_window", 0.0)
    deadline = time.monotonic() + window
    pause = 0.1
    while True:
        try:
            return await _send(redis, fill, scripts, durable)
        except AuthenticationError:
            raise
        except RedisConnectionError:
            if time.monotonic() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def _send(redis: aioredis.Redis, fill: Fill, scripts: Sequence[Script], durable: bool) -> list[Any]:
    """One round trip of what `fill` queues; the calls refused with NOSCRIPT are sent again."""
    # Only our `BoundedRedis` knows the configured durability; a plain redis-py client never waits.
    wait = getattr(redis, "queue_wait_durable", None) if durable else None
    async with redis.pipeline(transaction=False) as pipe:
        fill(pipe)
        waits = wait(pipe) if wait is not None else 0
        try:
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        finally:
            calls = {i: c for script in scripts for i, c in script._take(pipe).items()}
    waited = _split_waits(replies, waits)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError) and i in calls]
    if missing:
        replies, waited = await _reload(redis, scripts, replies, {i: calls[i] for i in missing}, bool(waits))
    if waits:
        redis.check_durable(waited)
    return replies


def _split_waits(replies: list[Any], waits: int) -> list[Any]:
    """Take the replies of the `waits` durable waits off the end of `replies` and return them."""
    waited = replies[len(replies) - waits :]
    del replies[len(replies) - waits :]
    return waited


async def _reload(
    redis: aioredis.Redis,
    scripts: Sequence[Script],
    replies: list[Any],
    calls: dict[int, tuple[Any, ...]],
    durable: bool,
) -> tuple[list[Any], Any]:
    """Load `scripts` again and send the script calls that met NOSCRIPT (they did not run); with
    `durable`, new waits cover their writes too. Returns the merged replies and the waits' replies."""
    for script in scripts:
        await redis.script_load(script.source)
    async with redis.pipeline(transaction=False) as pipe:
        for command in calls.values():
            pipe.evalsha(*command)
        waits = redis.queue_wait_durable(pipe) if durable else 0
        again = await pipe.execute(raise_on_error=False)
    waited = _split_waits(again, waits)
    merged = list(replies)
    for position, reply in zip(calls, again, strict=True):
        merged[position] = reply
    return merged, waited
