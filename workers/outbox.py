"""The hook outbox: which revision of which task is wanted, delivered, due, leased or given up.

The Redis side of notify hooks, shared by every worker process; `workers.delivery` POSTs what it
hands out. Every notable revision of a task with a hook is *wanted* (not a quiet one, that only
binds Discord ids in ``properties``: see `broker.store`); a delivery always sends the task's current
record, so a claimed delivery whose revision was already delivered is dropped. At
most one delivery per task is in flight at a time (a lease that outlives the request timeout),
across all worker processes; a process that dies holding one lets it run out, and the delivery is
claimed again.

Redis layout (keys in `broker.keys`), sharded by task id like the task records: every script
touches one task's state and the due set of its shard together, one hash slot; one task's
deliveries all go through that one shard, so their order is what it was with a single due set:

- `broker.keys.hook_state` hash: ``wanted``, ``delivered`` (revisions), ``attempts``,
  ``first_failure_ms``, ``lease_ms`` (in flight until), ``lease_by`` (the holder: a process's
  `HookOutbox.holder`), ``gave_up`` (revision), ``gave_up_reason``, ``gave_up_ms``;
- `broker.keys.hooks_due` sorted set of each shard: task id scored by the epoch ms it is due. The
  delivery loops read every shard's (one command per shard, in one round trip).

Lost replies. The scripts whose reply the caller needs are idempotent and resent once by the client
when the connection fails after sending (`broker.lua`):

- schedule: ``wanted`` only grows, so the same (task, revision) wanted twice is one entry in the
  due set and one delivery. A schedule that leased the delivery, resent, finds its own lease (the
  same lease end and holder, ``lease_by``) and answers as the first run did, rather than "leased by
  someone else", which would leave the delivery to wait for the lease to run out;
- begin: the same, for a delivery claimed from the due set;
- delivered: ``delivered`` only grows; a resend that finds another process holding a new lease (it
  took the newer revision meanwhile) leaves that lease alone.

Failed, defer and give-up are not resent: each lands whole or not at all, and one that did not land
leaves the lease to run out, after which the delivery is claimed again: a later retry, never a
second POST of a delivered revision nor a lost one. Their replies only tune logging and wake-ups.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from broker import keys
from broker.batching import PipelineBatcher
from broker.clock import Clock, now_ms
from broker.lua import Script

__all__ = ["SCRIPTS", "DeliveryLoop", "HookOutbox", "Lease", "ScheduleBatch", "Wanted", "schedule_result"]

#: a claimed delivery: (wanted, delivered, attempts)
Lease = tuple[int, int, int]
#: a delivery to want: (task id, revision, that revision's record if the caller just read it)
Wanted = tuple[str, int, bytes | None]


def _script_keys(task_id: str) -> list[str]:
    """KEYS of every outbox script: the task's delivery state, then its shard's due set."""
    return [keys.hook_state(task_id), keys.hooks_due(task_id)]


# KEYS: state, due; ARGV: task id, revision, now ms, ttl ms, lease until ms (0: do not claim), holder.
# Marks a revision wanted, due now; returns {code} or, when it also claimed the delivery (the hot
# path: no due-set scan), {1, wanted, delivered, attempts}. A claim that finds its own lease (the
# same lease end and holder: it is a resend of the call that took it) answers as that call did.
_SCHEDULE = Script("""
local wanted = tonumber(redis.call('HGET', KEYS[1], 'wanted') or '0')
local rev = tonumber(ARGV[2])
if rev > wanted then
  redis.call('HSET', KEYS[1], 'wanted', rev)
  wanted = rev
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local delivered = tonumber(redis.call('HGET', KEYS[1], 'delivered') or '0')
if wanted <= delivered then return {0} end
local gave_up = redis.call('HGET', KEYS[1], 'gave_up')
if gave_up then
  if tonumber(gave_up) >= wanted then return {0} end
  redis.call('HDEL', KEYS[1], 'gave_up', 'gave_up_reason', 'gave_up_ms', 'attempts', 'first_failure_ms')
end
local lease = redis.call('HMGET', KEYS[1], 'lease_ms', 'lease_by', 'attempts')
local claim = tonumber(ARGV[5]) > 0
if claim and lease[1] == ARGV[5] and lease[2] == ARGV[6] then
  return {1, wanted, delivered, tonumber(lease[3] or '0')}
end
if tonumber(lease[1] or '0') > tonumber(ARGV[3]) then return {2} end
if lease[3] then return {3} end
if claim then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('HSET', KEYS[1], 'lease_ms', ARGV[5], 'lease_by', ARGV[6])
  return {1, wanted, delivered, 0}
end
redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[1])
return {1}
""")

# KEYS: state, due; ARGV: task id, now ms, lease until ms, holder.
# Takes the delivery if it is due and nobody holds it; returns {wanted, delivered, attempts} or nil.
# A begin that finds its own lease (same end and holder: a resend of it) answers as the first did.
_BEGIN = Script("""
local lease = redis.call('HMGET', KEYS[1], 'lease_ms', 'lease_by')
if lease[1] == ARGV[3] and lease[2] == ARGV[4] then
  local s = redis.call('HMGET', KEYS[1], 'wanted', 'delivered', 'attempts')
  return {s[1] or '0', s[2] or '0', s[3] or '0'}
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
local until_ms = tonumber(lease[1] or '0')
if until_ms > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], until_ms, ARGV[1])
  return nil
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], 'lease_ms', ARGV[3], 'lease_by', ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'wanted', 'delivered', 'attempts')
return {s[1] or '0', s[2] or '0', s[3] or '0'}
""")

# KEYS: state, due; ARGV: task id, delivered revision, now ms, holder.
# Returns 1 when a newer revision is wanted (due now, or held by another process's newer lease).
_DELIVERED = Script("""
local delivered = tonumber(redis.call('HGET', KEYS[1], 'delivered') or '0')
if tonumber(ARGV[2]) > delivered then
  delivered = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'delivered', delivered)
end
local wanted = tonumber(redis.call('HGET', KEYS[1], 'wanted') or '0')
local lease = redis.call('HMGET', KEYS[1], 'lease_ms', 'lease_by')
if lease[2] and lease[2] ~= ARGV[4] and tonumber(lease[1] or '0') > tonumber(ARGV[3]) then
  if wanted <= delivered then return 0 end
  return 1
end
redis.call('HDEL', KEYS[1], 'lease_ms', 'lease_by', 'attempts', 'first_failure_ms')
if wanted <= delivered then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
""")

# KEYS: state, due; ARGV: task id, revision, now ms, next due ms, give up after ms, reason.
# Returns 1 when retried later, 2 when given up.
_FAILED = Script("""
local first = tonumber(redis.call('HGET', KEYS[1], 'first_failure_ms') or '0')
if first == 0 then
  first = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'first_failure_ms', first)
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'lease_ms', 'lease_by')
if tonumber(ARGV[3]) - first >= tonumber(ARGV[5]) then
  local wanted = tonumber(redis.call('HGET', KEYS[1], 'wanted') or '0')
  redis.call('HSET', KEYS[1], 'gave_up', math.max(wanted, tonumber(ARGV[2])), 'gave_up_reason', ARGV[6],
    'gave_up_ms', ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 2
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
""")

# KEYS: state, due; ARGV: task id, due ms. Hand a claimed delivery back untried (its receiver is busy).
_DEFER = Script("""
redis.call('HDEL', KEYS[1], 'lease_ms', 'lease_by')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
""")

# KEYS: state, due; ARGV: task id, revision, now ms, reason. Give up at once (refused URL, no task).
_GIVE_UP = Script("""
local wanted = tonumber(redis.call('HGET', KEYS[1], 'wanted') or '0')
redis.call('HSET', KEYS[1], 'gave_up', math.max(wanted, tonumber(ARGV[2])), 'gave_up_reason', ARGV[4],
  'gave_up_ms', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease_ms', 'lease_by')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
""")


#: every script of the outbox, for `broker.lua.execute` in callers' pipelines
SCRIPTS = (_SCHEDULE, _BEGIN, _DELIVERED, _FAILED, _DEFER, _GIVE_UP)


def schedule_result(reply: list[Any]) -> tuple[bool, Lease | None]:
    """(due now?, the claimed (wanted, delivered, attempts) or None) from a schedule reply."""
    due_now = int(reply[0]) == 1
    if due_now and len(reply) == 4:
        wanted, delivered, attempts = (int(x) for x in reply[1:])
        return True, (wanted, delivered, attempts)
    return due_now, None


class HookOutbox:
    """The Redis side of deliveries: schedule, claim, settle. Shared by every worker process.

    :param redis: the client.
    :param ttl_ms: how long a task's delivery state is kept after its last wanted revision.
    :param clock: epoch milliseconds.
    """

    def __init__(self, redis: aioredis.Redis, *, ttl_ms: int, clock: Clock = now_ms) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.clock = clock
        #: who holds the leases this process takes (``lease_by``): what tells a resend its own lease
        self.holder = secrets.token_hex(8)
        self._settles = PipelineBatcher(redis, SCRIPTS)

    def queue_schedule(
        self, pipe: Pipeline, task_id: str, revision: int, claim_lease_ms: int = 0, *, now: int | None = None
    ) -> None:
        """Want `revision` delivered, in a caller's pipeline (sent by `broker.lua.execute` with
        `SCRIPTS`); `schedule_result` reads its reply.

        With `claim_lease_ms`, a delivery that is due now is also leased to the caller at once. A
        resend must pass the `now` of the first send, so that it finds its own lease.
        """
        now = self.clock() if now is None else now
        _SCHEDULE.queue(
            pipe,
            _script_keys(task_id),
            [task_id, revision, now, self.ttl_ms, now + claim_lease_ms if claim_lease_ms else 0, self.holder],
        )

    async def due(self, limit: int) -> list[str]:
        """Up to `limit` task ids due now, the longest due first, from every shard."""
        now = self.clock()
        async with self.redis.pipeline(transaction=False) as pipe:
            for due in keys.HOOKS_DUE:
                pipe.zrangebyscore(due, "-inf", now, start=0, num=limit, withscores=True)
            shards = await pipe.execute()
        rows = sorted((row for rows in shards for row in rows), key=lambda row: row[1])
        return [task_id.decode() for task_id, _score in rows[:limit]]

    async def next_due_ms(self) -> int | None:
        """When the next delivery of any shard is due (epoch ms), or None when none is."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for due in keys.HOOKS_DUE:
                pipe.zrange(due, 0, 0, withscores=True)
            shards = await pipe.execute()
        return min((int(rows[0][1]) for rows in shards if rows), default=None)

    async def begin(self, task_id: str, lease_ms: int) -> Lease | None:
        """Lease a due delivery: (wanted, delivered, attempts), or None if not ours to send."""
        now = self.clock()
        args = [task_id, now, now + lease_ms, self.holder]
        got = await _BEGIN(self.redis, _script_keys(task_id), args, resend=True)
        if got is None:
            return None
        wanted, delivered, attempts = (int(x) for x in got)
        return wanted, delivered, attempts

    async def delivered(self, task_id: str, revision: int) -> bool:
        """Record success; True when a newer revision is still wanted (due again now)."""
        keys_, args = _script_keys(task_id), [task_id, revision, self.clock(), self.holder]
        # Deliveries answered in the same loop iteration record their success in one round trip;
        # resent when the connection fails (see the module).
        (result,) = await self._settles.execute(lambda pipe: _DELIVERED.queue(pipe, keys_, args), resend=True)
        return int(result) == 1

    async def failed(
        self, task_id: str, revision: int, *, retry_in_s: float, give_up_ms: int, reason: str
    ) -> bool:
        """Record a failure; True when the delivery was given up."""
        now = self.clock()
        result = await _FAILED(
            self.redis,
            _script_keys(task_id),
            [task_id, revision, now, now + int(retry_in_s * 1000), give_up_ms, reason],
        )
        return int(result) == 2

    async def defer(self, task_id: str, delay_ms: int) -> None:
        """Give a claimed delivery back, due again in `delay_ms`; not counted as an attempt."""
        await _DEFER(self.redis, _script_keys(task_id), [task_id, self.clock() + delay_ms])

    async def give_up(self, task_id: str, revision: int, reason: str) -> None:
        await _GIVE_UP(self.redis, _script_keys(task_id), [task_id, revision, self.clock(), reason])

    async def state(self, task_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.hook_state(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()}


class DeliveryLoop(Protocol):
    """What a `ScheduleBatch` asks of the process's delivery loop (`workers.delivery.HookDeliverer`)."""

    outbox: HookOutbox
    #: how long a claimed delivery is leased
    lease_ms: int
    #: set to make the loop look at the due set now
    wake: asyncio.Event

    def claimable(self, task_ids: Sequence[str]) -> list[bool]:
        """For each task, whether this process has room to start its delivery now."""
        ...

    def deliver_claimed(self, task_id: str, lease: Lease, record: tuple[int, bytes] | None) -> bool:
        """Start a delivery this process leased; False when it already delivers that task."""
        ...


class ScheduleBatch:
    """Hook schedules sent in a caller's pipeline, claiming what this process has room to start.

    Queue the batch with `queue`, send it with `broker.lua.execute` (with `SCRIPTS`), then hand the
    replies to `settle`.
    """

    def __init__(self, loop: DeliveryLoop, wanted: Sequence[Wanted]) -> None:
        self.loop = loop
        self.wanted = wanted
        self.first_reply = 0
        #: what the first `queue` decided (claims and clock): a resend queues the very same calls
        self._claims: list[bool] | None = None
        self._now = 0

    def queue(self, pipe: Pipeline) -> None:
        if self._claims is None:
            self._claims = self.loop.claimable([task_id for task_id, _revision, _body in self.wanted])
            self._now = self.loop.outbox.clock()
        self.first_reply = len(pipe)
        for (task_id, revision, _body), claim in zip(self.wanted, self._claims, strict=True):
            lease_ms = self.loop.lease_ms if claim else 0
            self.loop.outbox.queue_schedule(pipe, task_id, revision, lease_ms, now=self._now)

    def settle(self, replies: Sequence[Any]) -> None:
        """Start the deliveries this process claimed; wake the delivery loop for the others."""
        mine = replies[self.first_reply : self.first_reply + len(self.wanted)]
        for (task_id, revision, body), reply in zip(self.wanted, mine, strict=True):
            due_now, claimed = schedule_result(reply)
            record = (revision, body) if body is not None else None
            if claimed is not None and self.loop.deliver_claimed(task_id, claimed, record):
                continue
            if due_now:
                self.loop.wake.set()
