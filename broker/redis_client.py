"""The Redis client every process uses: redis-py's asyncio client, configured once.

What is set and why:

- **Timeouts.** A read waits at most `socket_timeout` seconds and a connect `connect_timeout`:
  a Redis that stops answering fails the caller instead of hanging it. Blocking commands (BLPOP,
  XREADGROUP BLOCK) must therefore block for less than `socket_timeout`; callers that wait longer
  loop on short blocks (see `broker.bridge_calls`).
- **Health checks.** A connection idle for `health_check_interval` seconds is PINGed before it is
  used again, and redis-py checks at checkout that no stale reply waits on a pooled connection.
- **No automatic resends.** redis-py can retry a command whose connection failed, but the server may
  have run it before the connection failed, and not every command is safe to run twice (an INCR,
  a hook schedule, a claim). So the client never resends; callers that know a command is safe to
  repeat (reads, consumer loops) retry on their own rhythm.
- **Bounded pool.** At most `max_connections` connections per process; a caller that finds them all
  busy waits up to `pool_timeout` seconds for one (redis-py's `BlockingConnectionPool`).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from broker.config import RedisSettings

__all__ = ["connect"]

_DEFAULTS = RedisSettings()


def connect(url: str, settings: RedisSettings = _DEFAULTS) -> aioredis.Redis:
    """An asyncio client for `url` (bytes replies); one per process, shared by its tasks."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=False,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout_seconds,
        socket_timeout=settings.socket_timeout_seconds,
        socket_connect_timeout=settings.connect_timeout_seconds,
        health_check_interval=settings.health_check_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client
