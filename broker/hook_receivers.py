"""Which notify-hook receivers are failing: written by the workers' delivery, read by the status page.

The outbox (`workers.outbox`) keeps delivery state per task; an operator asks per receiver
(``host:port``, never the path or query, which often carry the receiver's own secrets): which ones
fail, since when, how many times in a row, and with what error. A failed delivery records it (one
pipeline, on the failure path only); the first success after a failure the same process recorded
clears it, so successful deliveries cost nothing here. A failure recorded by another worker process
is cleared by that process's next success, and the page shows only failures of the last hour.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from broker import keys

__all__ = ["KEEP_SECONDS", "ReceiverFailure", "failing", "record_failure", "record_success"]

#: a receiver's failure record outlives its last failure by this long
KEEP_SECONDS = 86_400


class ReceiverFailure(msgspec.Struct, kw_only=True, rename="camel"):
    #: ``host:port``
    receiver: str
    #: failed deliveries since the last success
    failures: int
    first_failure_ms: int
    last_failure_ms: int
    #: the last error, e.g. ``HTTP 503``, ``timed out``, ``cannot connect (ECONNREFUSED)``
    last_error: str


async def record_failure(redis: aioredis.Redis, receiver: str, error: str, *, now: int) -> None:
    """Count one failed delivery to `receiver`."""
    key = keys.hook_receiver(receiver)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(key, "failures", 1)
        pipe.hsetnx(key, "first_failure_ms", now)
        pipe.hset(key, mapping={"last_failure_ms": now, "last_error": error[:300]})
        pipe.expire(key, KEEP_SECONDS)
        pipe.zadd(keys.HOOK_RECEIVERS_FAILING, {receiver: now})
        await pipe.execute()


async def record_success(redis: aioredis.Redis, receiver: str) -> None:
    """`receiver` answered again: it is no longer failing."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.hook_receiver(receiver))
        pipe.zrem(keys.HOOK_RECEIVERS_FAILING, receiver)
        await pipe.execute()


async def failing(redis: aioredis.Redis, *, since: int, limit: int = 50) -> list[ReceiverFailure]:
    """Receivers whose last delivery failed at or after `since` (epoch ms), the latest first."""
    names = await redis.zrevrangebyscore(keys.HOOK_RECEIVERS_FAILING, "+inf", since, start=0, num=limit)
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(
                keys.hook_receiver(name.decode()),
                ["failures", "first_failure_ms", "last_failure_ms", "last_error"],
            )
        rows = await pipe.execute()
    found = []
    for name, (failures, first, last, error) in zip(names, rows, strict=True):
        if failures is None:  # expired meanwhile
            continue
        found.append(
            ReceiverFailure(
                receiver=name.decode(),
                failures=int(failures),
                first_failure_ms=int(first or 0),
                last_failure_ms=int(last or 0),
                last_error=(error or b"").decode(errors="replace"),
            )
        )
    return found
