"""The Redis client every process uses: redis-py's asyncio client, configured once.

What is set and why:

- **A deadline per round trip.** A command, or a whole pipeline, whose reply has not arrived within
  `command_timeout` seconds fails with redis-py's `TimeoutError` (its connection is dropped, so no
  late reply is ever read as another command's): a Redis that stops answering fails the caller
  instead of hanging it. Blocking commands (BLPOP, XREADGROUP BLOCK) must block for less; callers
  that wait longer loop on short blocks (see `broker.bridge_calls`). redis-py's own
  ``socket_timeout`` would give the same bound per socket read instead: on Python 3.11 that is a
  timer for every command of a pipeline and a task for every write, a third of the client's CPU on
  the hot paths (`bench/pipeline_bench.py`, the A/B against the tree before: see README). So the
  bound is one `asyncio.timeout` around each round trip, set by overriding the client's public
  ``execute_command`` and ``pipeline`` (and the pipeline's ``execute``), nothing else.
- **Health checks.** A connection idle for `health_check_interval` seconds is PINGed before it is
  used again, and redis-py checks at checkout that no stale reply waits on a pooled connection.
- **No automatic resends.** redis-py can retry a command whose connection failed, but the server may
  have run it before the connection failed, and not every command is safe to run twice (an INCR,
  an RPUSH of an id). redis-py's `Retry` applies to every command of the client, so it stays off
  (no retries): resending is an explicit choice of each call site, made for idempotent scripts and
  pipelines only, through ``resend=True`` of `broker.lua.execute` and `broker.batching` (admission,
  task writes, releases, the hook outbox: README, "Redis", says why each is safe). Other callers
  that know a command is safe to repeat (reads, consumer loops) retry on their own rhythm.
- **Bounded pool.** At most `max_connections` connections per process; past that a command fails
  with redis-py's "Too many connections" rather than opening more.
- **Commands packed by hiredis.** redis-py reads replies with hiredis when it is installed, and its
  sync client packs commands with hiredis too, but its asyncio connections pack in Python, at
  several times the CPU per command (a tenth of the web's CPU per submit). The connection class the
  URL chose gets hiredis's `pack_command` through the public ``pack_command`` hook; arguments
  hiredis does not take are left to redis-py, which raises its usual `DataError`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.config import RedisSettings

__all__ = ["BoundedPipeline", "BoundedRedis", "connect"]

_DEFAULTS = RedisSettings()


class BoundedRedis(aioredis.Redis):  # type: ignore[misc]  # redis is untyped here (see pyproject)
    """redis-py's client, each command bounded by `command_timeout` seconds (see the module)."""

    command_timeout: float = _DEFAULTS.command_timeout_seconds

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            async with asyncio.timeout(self.command_timeout):
                return await super().execute_command(*args, **options)
        except TimeoutError:
            raise RedisTimeoutError(f"no reply to {args[0]} within {self.command_timeout:g}s") from None

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> BoundedPipeline:
        pipe = BoundedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.command_timeout = self.command_timeout
        return pipe


class BoundedPipeline(Pipeline):  # type: ignore[misc]
    """redis-py's pipeline, the whole round trip bounded by `command_timeout` seconds."""

    command_timeout: float = _DEFAULTS.command_timeout_seconds

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            async with asyncio.timeout(self.command_timeout):
                replies: list[Any] = await super().execute(raise_on_error)
                return replies
        except TimeoutError:
            raise RedisTimeoutError(f"no reply to a pipeline within {self.command_timeout:g}s") from None


class _HiredisPacking:
    """`pack_command` by hiredis; mixed into whichever connection class the URL chose."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # as redis-py does: a command name with a space ("CONFIG GET") is several arguments
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        if not any(isinstance(arg, bool) for arg in args):  # hiredis would send True as 1
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]  # says what is wrong
        return packed


def connect(url: str, settings: RedisSettings = _DEFAULTS) -> BoundedRedis:
    """An asyncio client for `url` (bytes replies); one per process, shared by its tasks."""
    pool = aioredis.ConnectionPool.from_url(
        url,
        decode_responses=False,
        max_connections=settings.max_connections,
        socket_connect_timeout=settings.connect_timeout_seconds,
        health_check_interval=settings.health_check_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    base = pool.connection_class
    pool.connection_class = type(base.__name__, (_HiredisPacking, base), {})
    client: BoundedRedis = BoundedRedis.from_pool(pool)
    client.command_timeout = settings.command_timeout_seconds
    return client
