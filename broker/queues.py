"""Account queues: which tasks hold one of an account's slots, and which wait for one.

Per account (see `broker.keys`), `waiting` holds queued task ids by admission order and `running`
the ids holding a slot, scored by when they got it. Only the two Lua scripts below move ids between
them, each touching one account's keys (one hash tag), so admission is atomic and the same code runs
on Redis Cluster. Queue positions are computed from `waiting`, never cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from broker import keys
from broker.batching import PipelineBatcher
from broker.clock import Clock, now_ms
from broker.lua import Script
from broker.models import ReturnCode

__all__ = ["SCRIPTS", "AccountQueues", "Admission"]


class Admission(msgspec.Struct, frozen=True):
    """Result of the atomic admission step: started, queued (position >= 1) or rejected."""

    code: ReturnCode
    position: int = 0
    #: the account's running + waiting tasks right after this step
    load: int = 0


# KEYS: waiting, running, ready, seq; ARGV: task id, core, queue, now ms.
_ADMIT = Script("""
local running = redis.call('ZCARD', KEYS[2])
local waiting = redis.call('ZCARD', KEYS[1])
if running < tonumber(ARGV[2]) and waiting == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[1])
  return {1, 0, running + 1}
end
if waiting < tonumber(ARGV[3]) then
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
  return {22, waiting + 1, running + waiting + 1}
end
return {23, 0, running + waiting}
""")

# KEYS: waiting, running, ready; ARGV: task id, core, now ms. Returns the ids that got a slot.
_RELEASE = Script("""
local removed = redis.call('ZREM', KEYS[2], ARGV[1]) + redis.call('ZREM', KEYS[1], ARGV[1])
local promoted = {}
if removed == 0 then return promoted end
while redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[2]) do
  local head = redis.call('ZPOPMIN', KEYS[1])
  if #head == 0 then break end
  redis.call('ZADD', KEYS[2], ARGV[3], head[1])
  redis.call('RPUSH', KEYS[3], head[1])
  table.insert(promoted, head[1])
end
return promoted
""")

#: the scripts of the queues, for `broker.lua.execute` in callers' pipelines
SCRIPTS = (_ADMIT, _RELEASE)


def _decoded(ids: Sequence[bytes | str]) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


class AccountQueues:
    """Admits tasks to accounts and frees their slots.

    :param redis: the process's client (bytes responses).
    :param clock: epoch milliseconds (slot times); injectable for tests.
    """

    def __init__(self, redis: aioredis.Redis, *, clock: Clock = now_ms) -> None:
        self.redis = redis
        self.clock = clock
        # Concurrent admissions and releases of this process share round trips (broker.batching).
        self._batch = PipelineBatcher(redis, SCRIPTS)

    async def admit(self, account_id: str, task_id: str, *, core_size: int, queue_size: int) -> Admission:
        """Take a slot (1), join the queue (22, with 1-based position) or be rejected (23): atomically."""
        keys_ = [
            keys.account_waiting(account_id),
            keys.account_running(account_id),
            keys.account_ready(account_id),
            keys.account_seq(account_id),
        ]
        args = [task_id, core_size, queue_size, self.clock()]
        # durable: the API answers 1/22 on this reply (the record was written before, so its
        # fsync is covered too)
        ((code, position, load),) = await self._batch.execute(
            lambda pipe: _ADMIT.queue(pipe, keys_, args), durable=True
        )
        return Admission(ReturnCode(int(code)), int(position), int(load))

    async def release(self, account_id: str, task_id: str, *, core_size: int) -> list[str]:
        """Free the task's slot (or queue place); returns the queued ids that now got a slot.

        Idempotent: releasing twice promotes nobody the second time.
        """
        keys_, args = self._release_call(account_id, task_id, core_size)
        (promoted,) = await self._batch.execute(lambda pipe: _RELEASE.queue(pipe, keys_, args))
        return _decoded(promoted)

    def queue_release(self, pipe: Pipeline, account_id: str, task_id: str, *, core_size: int) -> None:
        """`release` as part of a caller's pipeline (sent by `broker.lua.execute` with `SCRIPTS`).

        Its reply is the list of promoted ids, as bytes.
        """
        _RELEASE.queue(pipe, *self._release_call(account_id, task_id, core_size))

    def _release_call(self, account_id: str, task_id: str, core_size: int) -> tuple[list[str], list[Any]]:
        keys_ = [
            keys.account_waiting(account_id),
            keys.account_running(account_id),
            keys.account_ready(account_id),
        ]
        return keys_, [task_id, core_size, self.clock()]

    async def running(self, account_id: str) -> list[tuple[str, int]]:
        """(task id, slot time ms) of tasks holding a slot, oldest first."""
        rows = await self.redis.zrange(keys.account_running(account_id), 0, -1, withscores=True)
        return [(member.decode(), int(score)) for member, score in rows]

    async def waiting(self, account_id: str, limit: int = -1) -> list[str]:
        """Queued task ids in admission order; `limit` is the last index read (-1: all)."""
        rows = await self.redis.zrange(keys.account_waiting(account_id), 0, limit)
        return _decoded(rows)

    async def unfinished(self, account_id: str) -> list[str]:
        """Every task id holding a slot or waiting for one: running first, then the queue in order."""
        return [task_id for task_id, _ in await self.running(account_id)] + await self.waiting(account_id)

    async def unfinished_of(self, account_ids: Sequence[str]) -> list[str]:
        """`unfinished` of several accounts in one round trip, each id once."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.zrange(keys.account_running(account_id), 0, -1)
                pipe.zrange(keys.account_waiting(account_id), 0, -1)
            found: list[list[bytes]] = await pipe.execute()
        return list(dict.fromkeys(member.decode() for rows in found for member in rows))

    async def holds(self, account_id: str, task_id: str) -> bool:
        """Whether the task holds a slot of the account or waits for one."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(keys.account_running(account_id), task_id)
            pipe.zscore(keys.account_waiting(account_id), task_id)
            running, waiting = await pipe.execute()
        return running is not None or waiting is not None

    async def loads(self, account_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(running, waiting) per account, in one round trip."""
        if not account_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.zcard(keys.account_running(account_id))
                pipe.zcard(keys.account_waiting(account_id))
            counts = await pipe.execute()
        return {
            account_id: (int(counts[2 * i]), int(counts[2 * i + 1]))
            for i, account_id in enumerate(account_ids)
        }

    async def position(self, account_id: str, task_id: str) -> int | None:
        """1-based place of a queued task, or None when it is not queued."""
        rank = await self.redis.zrank(keys.account_waiting(account_id), task_id)
        return None if rank is None else int(rank) + 1
