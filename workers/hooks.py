"""Notify-hook delivery: a durable outbox in Redis, ordered per task, signed, bounded retries.

Every notable revision of a task with a hook is *wanted* (not a quiet one, that only binds Discord ids
in ``properties``: see `broker.store`); a delivery always POSTs the task's **current**
JSON (the bytes ``/mj/task/{id}/fetch`` serves), so a receiver never sees a lower revision after a
higher one: a delivery overtaken by a newer revision simply carries the newer state, and a claimed
delivery whose revision was already delivered is dropped. At most one delivery per task is in
flight at a time (a lease), across all worker processes.

Request::

    POST <notifyHook>
    Content-Type: application/json
    X-Mjbroker-Task-Version: <task revision, increasing with every change>
    X-Mjbroker-Timestamp: <unix seconds>                      (only with hooks.secret)
    X-Mjbroker-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>   (only with hooks.secret)

    <task JSON>

To verify, compute ``hmac.new(secret, f"{timestamp}.".encode() + raw_body, "sha256").hexdigest()``
over the raw body bytes, compare it in constant time with the header after ``sha256=``, and reject
timestamps far from your clock (replays). Deliveries are at least once: drop a body whose version is
not higher than the last one you processed for that task id.

Any 2xx is success. Anything else (status, timeout, refused connection) is retried with exponential
backoff and full jitter (0.5 s base, 60 s cap) until ``hooks.give_up_minutes`` after the first
failure; then the delivery is given up and recorded (a newer revision starts afresh). At most
``hooks.per_host_concurrency`` requests go to one receiver (host:port) at once, and up to as many
more wait a second for one of them (`workers.receiver_slots`), as long as a receiver that hangs
holds at most half of the worker's ``hooks.concurrency`` slots (with the defaults, 16 of 64).

Receivers are checked by `workers.hook_guard` (no link-local or cloud metadata addresses, checked
on the addresses the client actually connects to); a refused URL is given up at once.

Redis layout (all keys share the ``{hooks}`` hash tag, because every script touches the due set and
one task's state together):

- ``mjb:{hooks}:task:<id>`` hash: ``wanted``, ``delivered`` (revisions), ``attempts``,
  ``first_failure_ms``, ``lease_ms`` (in flight until), ``gave_up`` (revision), ``gave_up_reason``,
  ``gave_up_ms``;
- ``mjb:{hooks}:due`` sorted set: task id scored by the epoch ms it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from aiohttp.abc import AbstractResolver
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker import keys
from broker.batching import PipelineBatcher
from broker.config import HookSettings
from broker.lua import Script, execute
from broker.models import decode_task
from workers.hook_client import HookClient, HookHttpError
from workers.hook_guard import UrlRefused, check_url
from workers.receiver_slots import ReceiverSlots

__all__ = [
    "DUE_KEY",
    "HookDeliverer",
    "HookOutbox",
    "backoff_seconds",
    "hook_state_key",
    "sign",
]

log = logging.getLogger(__name__)

DUE_KEY = f"{keys.PREFIX}:{{hooks}}:due"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
#: a lease lasts the request timeout plus this margin, so it never ends while a request may run
LEASE_MARGIN_S = 5.0
#: when a receiver has its share of requests in flight, its next delivery is looked at again after
_BUSY_RECEIVER_DELAY_MS = 250


def hook_state_key(task_id: str) -> str:
    return f"{keys.PREFIX}:{{hooks}}:task:{task_id}"


def _script_keys(task_id: str) -> list[str]:
    """KEYS of every outbox script: the task's delivery state, then the due set."""
    return [hook_state_key(task_id), DUE_KEY]


def backoff_seconds(attempts: int, *, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempts-1))]."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempts - 1, 0))
    return float(ceiling * rng())


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Mjbroker-Signature value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# KEYS: state, due; ARGV: task id, revision, now ms, ttl ms, lease until ms (0: do not claim).
# Marks a revision wanted, due now; returns {code} or, when it also claimed the delivery (the hot
# path: no due-set scan), {1, wanted, delivered, attempts}.
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
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_ms') or '0')
if lease > tonumber(ARGV[3]) then return {2} end
if redis.call('HGET', KEYS[1], 'attempts') then return {3} end
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('HSET', KEYS[1], 'lease_ms', ARGV[5])
  return {1, wanted, delivered, 0}
end
redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[1])
return {1}
""")

# KEYS: state, due; ARGV: task id, now ms, lease until ms.
# Takes the delivery if it is due and nobody holds it; returns {wanted, delivered, attempts} or nil.
_BEGIN = Script("""
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_ms') or '0')
if lease > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], lease, ARGV[1])
  return nil
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], 'lease_ms', ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'wanted', 'delivered', 'attempts')
return {s[1] or '0', s[2] or '0', s[3] or '0'}
""")

# KEYS: state, due; ARGV: task id, delivered revision, now ms.
_DELIVERED = Script("""
local delivered = tonumber(redis.call('HGET', KEYS[1], 'delivered') or '0')
if tonumber(ARGV[2]) > delivered then
  delivered = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'delivered', delivered)
end
redis.call('HDEL', KEYS[1], 'lease_ms', 'attempts', 'first_failure_ms')
local wanted = tonumber(redis.call('HGET', KEYS[1], 'wanted') or '0')
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
redis.call('HDEL', KEYS[1], 'lease_ms')
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
redis.call('HDEL', KEYS[1], 'lease_ms')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
""")

# KEYS: state, due; ARGV: task id, revision, now ms, reason. Give up at once (refused URL, no task).
_GIVE_UP = Script("""
local wanted = tonumber(redis.call('HGET', KEYS[1], 'wanted') or '0')
redis.call('HSET', KEYS[1], 'gave_up', math.max(wanted, tonumber(ARGV[2])), 'gave_up_reason', ARGV[4],
  'gave_up_ms', ARGV[3])
redis.call('HDEL', KEYS[1], 'lease_ms')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
""")


#: every script of the outbox, for `broker.lua.execute` in callers' pipelines
SCRIPTS = (_SCHEDULE, _BEGIN, _DELIVERED, _FAILED, _DEFER, _GIVE_UP)


def _now_ms() -> int:
    return int(time.time() * 1000)


def schedule_result(reply: list[Any]) -> tuple[bool, tuple[int, int, int] | None]:
    """(due now?, the claimed (wanted, delivered, attempts) or None) from a schedule reply."""
    due_now = int(reply[0]) == 1
    if due_now and len(reply) == 4:
        wanted, delivered, attempts = (int(x) for x in reply[1:])
        return True, (wanted, delivered, attempts)
    return due_now, None


def _redact(url: str) -> str:
    """Scheme, host and port only: paths and queries often carry the receiver's own secrets."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."
    except ValueError:
        return "(unparseable URL)"


class HookOutbox:
    """The Redis side of deliveries: schedule, claim, settle. Shared by every worker process."""

    def __init__(self, redis: aioredis.Redis, *, ttl_ms: int, clock: Callable[[], int] = _now_ms) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.clock = clock
        self._settles = PipelineBatcher(redis, SCRIPTS)

    def queue_schedule(self, pipe: Pipeline, task_id: str, revision: int, claim_lease_ms: int = 0) -> None:
        """Want `revision` delivered, in a caller's pipeline (sent by `broker.lua.execute` with
        `SCRIPTS`); `schedule_result` reads its reply.

        With `claim_lease_ms`, a delivery that is due now is also leased to the caller at once.
        """
        now = self.clock()
        _SCHEDULE.queue(
            pipe,
            _script_keys(task_id),
            [task_id, revision, now, self.ttl_ms, now + claim_lease_ms if claim_lease_ms else 0],
        )

    async def due(self, limit: int) -> list[str]:
        rows = await self.redis.zrangebyscore(DUE_KEY, "-inf", self.clock(), start=0, num=limit)
        return [r.decode() for r in rows]

    async def next_due_ms(self) -> int | None:
        rows = await self.redis.zrange(DUE_KEY, 0, 0, withscores=True)
        return int(rows[0][1]) if rows else None

    async def begin(self, task_id: str, lease_ms: int) -> tuple[int, int, int] | None:
        """Lease a due delivery: (wanted, delivered, attempts), or None if not ours to send."""
        now = self.clock()
        got = await _BEGIN(self.redis, _script_keys(task_id), [task_id, now, now + lease_ms])
        if got is None:
            return None
        wanted, delivered, attempts = (int(x) for x in got)
        return wanted, delivered, attempts

    async def delivered(self, task_id: str, revision: int) -> bool:
        """Record success; True when a newer revision is still wanted (due again now)."""
        keys_, args = _script_keys(task_id), [task_id, revision, self.clock()]
        # Deliveries answered in the same loop iteration record their success in one round trip.
        (result,) = await self._settles.execute(lambda pipe: _DELIVERED.queue(pipe, keys_, args))
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
        raw = await self.redis.hgetall(hook_state_key(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()}


class ScheduleBatch:
    """Hook schedules sent in a caller's pipeline, claiming what this process has room to start."""

    def __init__(self, deliverer: HookDeliverer, wanted: Sequence[tuple[str, int, bytes | None]]) -> None:
        self.deliverer = deliverer
        self.wanted = wanted
        self.first_reply = 0

    def queue(self, pipe: Pipeline) -> None:
        deliverer = self.deliverer
        room = max(deliverer.settings.concurrency, 1) - len(deliverer._inflight)
        self.first_reply = len(pipe)
        for task_id, revision, _body in self.wanted:
            claim = room > 0 and task_id not in deliverer._inflight
            room -= claim
            deliverer.outbox.queue_schedule(pipe, task_id, revision, deliverer.lease_ms if claim else 0)

    def settle(self, replies: Sequence[Any]) -> None:
        """Start the deliveries this process claimed; wake the delivery loop for the others."""
        deliverer = self.deliverer
        mine = replies[self.first_reply : self.first_reply + len(self.wanted)]
        for (task_id, revision, body), reply in zip(self.wanted, mine, strict=True):
            due_now, claimed = schedule_result(reply)
            if claimed is not None and task_id not in deliverer._inflight:
                deliverer._start(task_id, claimed, (revision, body) if body is not None else None)
            elif due_now:
                deliverer.wake.set()


class HookDeliverer:
    """The delivery loop of one process: claims due deliveries and POSTs them, one task each.

    :param redis: the process's client (reads task records).
    :param outbox: the shared Redis outbox.
    :param settings: hooks settings (default URL, secret, timeout, give-up time, concurrency).
    :param resolver: looks receivers' names up (default: the system's); its answers are guarded.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        outbox: HookOutbox,
        *,
        settings: HookSettings,
        resolver: AbstractResolver | None = None,
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.redis = redis
        self.outbox = outbox
        self.settings = settings
        self.resolver = resolver
        self.clock = clock
        self._http: HookClient | None = None
        self.lease_ms = int((settings.request_timeout_seconds + LEASE_MARGIN_S) * 1000)
        self.give_up_ms = int(settings.give_up_minutes * 60_000)
        self.wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        #: requests in flight per receiver (host:port), capped by settings.per_host_concurrency
        per_host = max(settings.per_host_concurrency, 1)
        # Waiting is allowed while a hanging receiver would still leave half of the slots to others.
        waiting = min(per_host, max(settings.concurrency // 2 - per_host, 0))
        self.receivers = ReceiverSlots(per_host, queue=waiting)
        self.sent = 0

    async def schedule(self, task_id: str, revision: int, body: bytes | None = None) -> None:
        """Want `revision` delivered: start it here at once when possible, else wake the local loop.

        `body` is the record of that revision when the caller just read it (saves a read: sending it
        is safe even if a newer revision exists, since it is still newer than what was delivered).
        The due set is the durable backstop: whatever is not delivered now is claimed later.
        """
        batch = self.plan([(task_id, revision, body)])
        batch.settle(await execute(self.redis, batch.queue, SCRIPTS))

    def plan(self, wanted: Sequence[tuple[str, int, bytes | None]]) -> ScheduleBatch:
        """`schedule` for several (task id, revision, body) in a caller's pipeline.

        Queue the batch with `ScheduleBatch.queue`, send it with `broker.lua.execute` (with
        `SCRIPTS`), then hand the replies to `ScheduleBatch.settle`.
        """
        return ScheduleBatch(self, wanted)

    def _start(
        self, task_id: str, lease: tuple[int, int, int], record: tuple[int, bytes] | None = None
    ) -> None:
        _wanted, delivered, attempts = lease
        job = asyncio.create_task(self._deliver(task_id, delivered, attempts, record))
        self._inflight[task_id] = job
        job.add_done_callback(self._finished)

    async def run(self) -> None:
        """Deliver until cancelled."""
        limit = max(self.settings.concurrency, 1)
        while True:
            self.wake.clear()
            delay = 1.0
            try:
                free = limit - len(self._inflight)
                if free > 0:
                    for task_id in await self.outbox.due(free):
                        if task_id in self._inflight or len(self._inflight) >= limit:
                            continue
                        lease = await self.outbox.begin(task_id, self.lease_ms)
                        if lease is None or task_id in self._inflight:
                            continue
                        self._start(task_id, lease)
                next_due = await self.outbox.next_due_ms()
                if next_due is not None:
                    delay = min(max((next_due - self.clock()) / 1000, 0.0), 1.0)
            except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("hook outbox unavailable (%s); retrying", exc)
            if delay > 0 or len(self._inflight) >= limit:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay if delay > 0 else 1.0):
                        await self.wake.wait()

    def _finished(self, job: asyncio.Task[None]) -> None:
        was_full = len(self._inflight) >= max(self.settings.concurrency, 1)
        for task_id, running in list(self._inflight.items()):
            if running is job:
                del self._inflight[task_id]
        if was_full:  # the loop may have left due deliveries for lack of room
            self.wake.set()

    async def close(self) -> None:
        for job in list(self._inflight.values()):
            job.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def _client(self) -> HookClient:
        if self._http is None:
            allow_private = self.settings.allow_private_addresses
            self._http = HookClient(resolver=self.resolver, allow_private=allow_private)
        return self._http

    async def _deliver(
        self, task_id: str, delivered: int, attempts: int, record: tuple[int, bytes] | None
    ) -> None:
        try:
            await self._deliver_once(task_id, delivered, attempts, record)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Redis trouble or a bug: the lease runs out and the delivery is claimed again.
            log.exception("hook delivery for task %s failed unexpectedly", task_id)

    async def _deliver_once(
        self, task_id: str, delivered: int, attempts: int, record: tuple[int, bytes] | None
    ) -> None:
        if record is None:
            rev_raw, body = await self.redis.hmget(keys.task_record(task_id), ["v", "d"])
            if body is None:
                await self.outbox.give_up(task_id, delivered, "the task no longer exists")
                return
            record = (int(rev_raw), body)
        revision, body = record
        if revision <= delivered:
            await self.outbox.delivered(task_id, delivered)  # overtaken: already sent
            return
        task = decode_task(body)
        url = task.properties.notify_hook or self.settings.default_url
        if not url:
            await self.outbox.give_up(task_id, revision, "no hook URL")
            return
        try:
            check_url(url, allow_private=self.settings.allow_private_addresses)
        except UrlRefused as exc:
            log.warning("hook of task %s refused: %s", task_id, exc)
            await self.outbox.give_up(task_id, revision, f"refused: {exc}")
            return
        host = urlsplit(url).netloc.lower()
        if not await self.receivers.acquire(host):
            # This receiver has its share in flight and more waiting (it may be down): leave the
            # global slot to other receivers and look again shortly.
            await self.outbox.defer(task_id, _BUSY_RECEIVER_DELAY_MS)
            return
        try:
            error = await self._post(url, body, revision)
        except UrlRefused as exc:  # the name resolved to a refused address when connecting
            log.warning("hook of task %s refused: %s", task_id, exc)
            await self.outbox.give_up(task_id, revision, f"refused: {exc}")
            return
        finally:
            self.receivers.release(host)
        if error is None:
            self.sent += 1
            if await self.outbox.delivered(task_id, revision):
                self.wake.set()
            return
        retry_in = backoff_seconds(attempts + 1)
        if await self.outbox.failed(
            task_id, revision, retry_in_s=retry_in, give_up_ms=self.give_up_ms, reason=error
        ):
            log.warning("gave up the hook of task %s to %s: %s", task_id, _redact(url), error)
        else:
            log.info(
                "hook of task %s to %s failed (%s); retry in %.1fs", task_id, _redact(url), error, retry_in
            )
            self.wake.set()

    async def _post(self, url: str, body: bytes, revision: int) -> str | None:
        """POST once; None on 2xx, else a short reason."""
        headers = {"Content-Type": "application/json", "X-Mjbroker-Task-Version": str(revision)}
        if self.settings.secret:
            timestamp = int(time.time())
            headers["X-Mjbroker-Timestamp"] = str(timestamp)
            headers["X-Mjbroker-Signature"] = sign(self.settings.secret, timestamp, body)
        try:
            # An absolute bound: a receiver trickling its answer must not outlast the timeout.
            async with asyncio.timeout(self.settings.request_timeout_seconds):
                status = await self._client().post(url, body, headers)
        except TimeoutError:
            return "timed out"
        except HookHttpError as exc:
            return str(exc)
        if 200 <= status < 300:
            return None
        return f"HTTP {status}"
