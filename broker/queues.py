"""Account queues: which tasks hold one of an account's slots, and which wait for one.

Per account (see `broker.keys`), `waiting` holds queued task ids by admission order and `running`
the ids holding a slot, scored by when they got it. Only the two Lua scripts below move ids between
them, each touching one account's keys (one hash tag), so admission is atomic and the same code runs
on Redis Cluster. Queue positions are computed from `waiting`, never cached.

Both scripts are idempotent, so the client resends them once when the connection fails after
sending (`broker.lua`), and a caller gets the outcome of the run that happened:

- an admission carries a call id and leaves a short-lived receipt (`keys.admission_receipt`) of
  its outcome: a resend of that call returns the first outcome (started; queued at its position;
  rejected) and admits nothing more. A later admission of the same task (a modal answered again
  after a full queue) is a new call and is decided afresh;
- a release of an id that is neither running nor waiting does nothing and promotes nobody. A
  resent release answers no promoted ids even if the first run promoted some; no caller acts on
  that answer (the promoted ids are on the ready list, which wakes the bridge, either way).
"""

from __future__ import annotations

import itertools
import secrets
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

__all__ = ["DAY_COUNT_MS", "RECEIPT_MS", "SCRIPTS", "AccountQueues", "Admission", "DayCount"]

#: how long a day's count is kept from its first task: past the end of that day (25 hours at most,
#: on the day the clocks go back) whenever it started, and no longer than needed
DAY_COUNT_MS = 26 * 3600 * 1000

#: how long an admission's outcome is kept for a resend of it. A resend follows the failed connection
#: at once, and a reply is awaited at most `redis.command_timeout_seconds` (10 s by default), so a
#: minute is ample; each receipt is a key of about 100 bytes, so it stays small however busy.
RECEIPT_MS = 60_000


class Admission(msgspec.Struct, frozen=True):
    """Result of the atomic admission step: started (1), queued (22, position >= 1), rejected (23),
    or refused because the account reached its daily limit (3)."""

    code: ReturnCode
    position: int = 0
    #: the account's running + waiting tasks right after this step
    load: int = 0


class DayCount(msgspec.Struct, frozen=True):
    """An account's count of the day, checked and bumped by the admission step itself."""

    #: `keys.account_day_count` of the day, in the operator's timezone
    key: str
    #: refuse (code 3) once the count has reached it; 0 = only count (a follow-up of a task taken)
    limit: int


# KEYS: waiting, running, ready, seq, receipt[, day count]; ARGV: task id, core, queue, now ms, call id,
# receipt ms[, daily limit (0 = count only), day count ms].
# The receipt keeps this call's outcome for a while: a resend of the call (same call id) returns it
# and changes nothing, whatever the queues look like by then (so a resend never counts twice).
# With a day count key, a task started or queued is counted on it, and a reached limit refuses
# (3) before anything else: check and count are one step, so two webs cannot both take the last one.
_ADMIT = Script("""
local receipt = redis.call('GET', KEYS[5])
if receipt then
  local call, code, position, load = string.match(receipt, '^(%S+) (%d+) (%d+) (%d+)$')
  if call == ARGV[5] then return {tonumber(code), tonumber(position), tonumber(load)} end
end
local running = redis.call('ZCARD', KEYS[2])
local waiting = redis.call('ZCARD', KEYS[1])
local counted = #KEYS > 5
local outcome
if counted and tonumber(ARGV[7]) > 0 and tonumber(redis.call('GET', KEYS[6]) or '0') >= tonumber(ARGV[7]) then
  outcome = {3, 0, running + waiting}
elseif running < tonumber(ARGV[2]) and waiting == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[1])
  outcome = {1, 0, running + 1}
elseif waiting < tonumber(ARGV[3]) then
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
  outcome = {22, waiting + 1, running + waiting + 1}
else
  outcome = {23, 0, running + waiting}
end
if counted and outcome[1] ~= 3 and outcome[1] ~= 23 then
  if redis.call('INCR', KEYS[6]) == 1 then redis.call('PEXPIRE', KEYS[6], ARGV[8]) end
end
redis.call('SET', KEYS[5], ARGV[5] .. ' ' .. table.concat(outcome, ' '), 'PX', ARGV[6])
return outcome
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
        # admission call ids: unique across processes (a random prefix), cheap within one (a count)
        self._process = secrets.token_hex(6)
        self._calls = itertools.count()
        # Concurrent admissions and releases of this process share round trips (broker.batching).
        self._batch = PipelineBatcher(redis, SCRIPTS)

    async def admit(
        self,
        account_id: str,
        task_id: str,
        *,
        core_size: int,
        queue_size: int,
        day: DayCount | None = None,
    ) -> Admission:
        """Take a slot (1), join the queue (22, with 1-based position) or be rejected (23): atomically.

        With `day` (accounts with a `daily_limit`), a reached limit refuses with 3, and a task
        started or queued is counted, in the same step.
        """
        keys_ = [
            keys.account_waiting(account_id),
            keys.account_running(account_id),
            keys.account_ready(account_id),
            keys.account_seq(account_id),
        ]
        keys_.append(keys.admission_receipt(account_id, task_id))
        args: list[Any] = [task_id, core_size, queue_size, self.clock(), self._call_id(), RECEIPT_MS]
        if day is not None:
            keys_.append(day.key)
            args += [day.limit, DAY_COUNT_MS]
        # Resent once when the connection fails (see the module): the receipt answers the resend.
        # durable: the API answers 1/22 on this reply (the record was written before, so its
        # fsync is covered too)
        ((code, position, load),) = await self._batch.execute(
            lambda pipe: _ADMIT.queue(pipe, keys_, args), resend=True, durable=True
        )
        return Admission(ReturnCode(int(code)), int(position), int(load))

    def _call_id(self) -> str:
        return f"{self._process}.{next(self._calls)}"

    async def release(self, account_id: str, task_id: str, *, core_size: int) -> list[str]:
        """Free the task's slot (or queue place); returns the queued ids that now got a slot.

        Idempotent: releasing twice promotes nobody the second time.
        """
        keys_, args = self._release_call(account_id, task_id, core_size)
        # Resent once when the connection fails: a second release of the same id changes nothing.
        (promoted,) = await self._batch.execute(lambda pipe: _RELEASE.queue(pipe, keys_, args), resend=True)
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
