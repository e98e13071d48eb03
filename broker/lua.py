"""Lua scripts sent by EVALSHA, alone or several in one pipeline.

redis-py's own `Script` checks ``SCRIPT EXISTS`` before every pipeline that holds one: an extra
round trip on the hot paths. Here a client loads the scripts it pipelines once, at first use, and
then sends them by hash. A server that forgot them since (it restarted, or was flushed) answers
NOSCRIPT: they are loaded again and the pipeline is sent again. So a pipeline given to `execute`
must hold only commands that are safe to repeat (the scripts failed as a whole, but plain commands
beside them ran once already).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from broker.redis_server import send_pipeline

__all__ = ["Script", "execute"]


class Script:
    """One Lua script: its source and SHA1."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        #: clients that loaded it once (see `execute`)
        self.loaded: weakref.WeakSet[aioredis.Redis] = weakref.WeakSet()

    async def __call__(self, redis: aioredis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run it alone (through `execute`, which loads it when the server lacks it)."""
        (reply,) = await execute(redis, lambda pipe: self.queue(pipe, keys, args), [self])
        return reply

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call to `pipe`; run it with `execute`."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)


async def execute(
    redis: aioredis.Redis,
    fill: Callable[[Pipeline], None],
    scripts: Sequence[Script],
    *,
    raise_on_error: bool = True,
) -> list[Any]:
    """Send what `fill` queues in one round trip (no MULTI) and return the replies.

    `scripts` are those `fill` may queue: they are loaded if the server lacks one. A command that
    failed raises its error, or with ``raise_on_error=False`` stands in the replies as an exception.
    """
    for script in scripts:
        if redis not in script.loaded:
            await redis.script_load(script.source)
            script.loaded.add(redis)
    for attempt in (1, 2):
        async with redis.pipeline(transaction=False) as pipe:
            fill(pipe)
            replies = await send_pipeline(pipe, raise_on_error=False)
        missing = any(isinstance(reply, NoScriptError) for reply in replies)
        if not missing or attempt == 2:
            break
        for script in scripts:
            await redis.script_load(script.source)
    if raise_on_error:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    return replies
