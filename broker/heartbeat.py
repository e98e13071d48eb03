"""Worker heartbeats: each worker process says it is alive; the web asks whether any is.

A worker writes its name into `keys.WORKERS` scored by the epoch ms its heartbeat expires (every
`BEAT_SECONDS`, good for `TTL_SECONDS`) and removes it when it stops. Without a worker nothing
applies the bots' events, sends hooks or times tasks out, so the web refuses new work with code 9
"no worker running" rather than accept tasks that would sit forever.

`WorkerWatch` is the web's side: it trusts a "yes" for `recheck_ms`, and concurrent requests share
one read, so a busy web process asks Redis about once a second, not once per submit.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from broker import keys
from broker.clock import Clock, now_ms

__all__ = ["BEAT_SECONDS", "TTL_SECONDS", "WorkerWatch", "beat", "leave", "workers_alive"]

#: how often a worker renews its heartbeat
BEAT_SECONDS = 2.0
#: how long a heartbeat counts: a SIGKILLed worker stops counting after this
TTL_SECONDS = 10.0


async def beat(redis: aioredis.Redis, name: str, *, now: int, ttl_ms: int = int(TTL_SECONDS * 1000)) -> None:
    """Say that worker `name` is alive for `ttl_ms` more (and forget the heartbeats that expired)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(keys.WORKERS, {name: now + ttl_ms})
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now)
        pipe.pexpire(keys.WORKERS, ttl_ms)
        await pipe.execute()


async def leave(redis: aioredis.Redis, name: str) -> None:
    """Worker `name` stops: it no longer counts."""
    await redis.zrem(keys.WORKERS, name)


async def workers_alive(redis: aioredis.Redis, *, now: int) -> int:
    """Epoch ms until which some worker's heartbeat holds, or 0 when none is alive."""
    newest = await redis.zrange(keys.WORKERS, -1, -1, withscores=True)
    if not newest:
        return 0
    until = int(newest[0][1])
    return until if until > now else 0


class WorkerWatch:
    """Whether any worker is alive, read from Redis at most once per `recheck_ms` while one is.

    A "none" answer is not cached: a worker that starts is seen by the next request.

    :param redis: the web's client.
    :param recheck_ms: how long a "yes" is trusted (a stopped worker is noticed within this).
    :param clock: epoch milliseconds.
    """

    def __init__(self, redis: aioredis.Redis, *, recheck_ms: int = 1000, clock: Clock = now_ms) -> None:
        self.redis = redis
        self.recheck_ms = recheck_ms
        self.clock = clock
        self.reads = 0
        self._trusted_until = 0
        self._reading: asyncio.Future[bool] | None = None

    async def alive(self) -> bool:
        if self.clock() < self._trusted_until:
            return True
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        # shielded: a request cancelled while it waits does not cancel the others' read
        return await asyncio.shield(self._reading)

    async def _read(self) -> bool:
        try:
            self.reads += 1
            now = self.clock()
            until = await workers_alive(self.redis, now=now)
            self._trusted_until = min(until, now + self.recheck_ms) if until else 0
            return until > 0
        finally:
            self._reading = None
