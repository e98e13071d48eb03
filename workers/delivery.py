"""Notify-hook delivery: the loop that POSTs what `workers.outbox` hands out, signed, retried.

A delivery always POSTs the task's **current** JSON (the bytes ``/mj/task/{id}/fetch`` serves), so a
receiver never sees a lower revision after a higher one: a delivery overtaken by a newer revision
simply carries the newer state.

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

Any 2xx is success; redirects are not followed (a 3xx is a failure). Anything else (status,
timeout, refused connection, an answer that is not HTTP) is retried with exponential backoff and
full jitter (0.5 s base, 60 s cap) until ``hooks.give_up_minutes`` after the first failure; then the
delivery is given up and recorded (a newer revision starts afresh). At most
``hooks.per_host_concurrency`` requests go to one receiver (host:port) at once, and up to as many
more wait a second for one of them (`workers.receiver_slots`), as long as a receiver that hangs
holds at most half of the worker's ``hooks.concurrency`` slots (with the defaults, 16 of 64).

Receivers are checked by `broker.url_guard` (no loopback, private, link-local or metadata address
unless ``url_guard.allow`` names it, checked on the addresses the client actually connects to); a
refused URL is given up at once. A delivery given up for good (refused, or retried until
``hooks.give_up_minutes``) is recorded on the task as ``properties.notifyHookError`` through a
quiet write of the store (no hook of its own); a later delivery that succeeds clears it.
`workers.hook_http.HookPoster` makes the request through aiohttp; its docstring says how each rule
(guard, size cap, no redirects, TLS, connect timeout, proxy) is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from aiohttp.abc import AbstractResolver
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker import hook_receivers, keys
from broker.clock import Clock, now_ms
from broker.config import HookSettings
from broker.lua import execute
from broker.metrics import Metrics
from broker.models import Task, decode_task
from broker.store import TaskStore
from broker.url_guard import UrlGuard, UrlRefused
from workers.hook_http import HookPoster
from workers.latency import EventTimes
from workers.outbox import SCRIPTS, HookOutbox, Lease, ScheduleBatch, Wanted
from workers.receiver_slots import ReceiverSlots

__all__ = ["HookDeliverer", "backoff_seconds", "sign"]

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
#: a lease lasts the request timeout plus this margin, so it never ends while a request may run
LEASE_MARGIN_S = 5.0
#: when a receiver has its share of requests in flight, its next delivery is looked at again after
_BUSY_RECEIVER_DELAY_MS = 250


def backoff_seconds(attempts: int, *, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempts-1))]."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempts - 1, 0))
    return float(ceiling * rng())


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Mjbroker-Signature value: ``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _redact(url: str) -> str:
    """Scheme, host and port only: paths and queries often carry the receiver's own secrets."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."
    except ValueError:
        return "(unparseable URL)"


class HookDeliverer:
    """The delivery loop of one process: claims due deliveries and POSTs them, one task each.

    :param redis: the process's client (reads task records).
    :param outbox: the shared Redis outbox.
    :param settings: hooks settings (default URL, secret, timeouts, give-up time, concurrency, proxy).
    :param guard: which addresses receivers may have (default: `broker.url_guard` without exceptions).
    :param store: where a delivery given up for good is recorded on its task (default: a store on
        `redis` with the default retention).
    :param resolver: looks receivers' names up (default: the system's); its answers are guarded.
    :param tls: how https receivers are verified (default: the system's CAs, host names checked).
    :param metrics: counts deliveries by result, times each POST and, with `event_times`, the
        event-to-hook latency (see `workers.latency`).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        outbox: HookOutbox,
        *,
        settings: HookSettings,
        guard: UrlGuard | None = None,
        store: TaskStore | None = None,
        resolver: AbstractResolver | None = None,
        tls: ssl.SSLContext | None = None,
        clock: Clock = now_ms,
        metrics: Metrics | None = None,
        event_times: EventTimes | None = None,
    ) -> None:
        self.redis = redis
        self.outbox = outbox
        self.metrics = metrics or Metrics(process_collector=False)
        self.event_times = event_times
        self.settings = settings
        self.clock = clock
        self.guard = guard or UrlGuard(allow_all=settings.allow_private_addresses)
        self.store = store or TaskStore(redis, retention_seconds=30 * 86400, clock=clock)
        self._resolver = resolver
        self._tls = tls
        self.poster = HookPoster(settings, guard=self.guard, resolver=resolver, tls=tls)
        self.wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._limits(settings)
        #: receivers this process recorded as failing (`broker.hook_receivers`): a success to one
        #: of them clears the record; other successes write nothing
        self.failing_receivers: set[str] = set()
        self.sent = 0

    def _limits(self, settings: HookSettings) -> None:
        self.lease_ms = int((settings.request_timeout_seconds + LEASE_MARGIN_S) * 1000)
        self.give_up_ms = int(settings.give_up_minutes * 60_000)
        self._limit = max(settings.concurrency, 1)
        #: requests in flight per receiver (host:port), capped by settings.per_host_concurrency
        per_host = max(settings.per_host_concurrency, 1)
        # Waiting is allowed while a hanging receiver would still leave half of the slots to others.
        waiting = min(per_host, max(settings.concurrency // 2 - per_host, 0))
        self.receivers = ReceiverSlots(per_host, queue=waiting)

    def use(self, settings: HookSettings) -> None:
        """Follow a config reload: new deliveries use `settings` (secret, URL, timeouts, limits).

        Deliveries in flight finish with what they started with: a new HTTP client is built when
        its own options changed, and the old one is closed once its requests can no longer run.
        """
        if settings == self.settings:
            return
        old, self.settings = self.settings, settings
        self._limits(settings)
        if _client_options(old) != _client_options(settings):
            retired = self.poster
            self.poster = HookPoster(settings, guard=self.guard, resolver=self._resolver, tls=self._tls)
            closing = asyncio.create_task(self._close_later(retired, old.request_timeout_seconds + 1))
            self._retired.add(closing)
            closing.add_done_callback(self._retired.discard)
        self.wake.set()

    @staticmethod
    async def _close_later(poster: HookPoster, after: float) -> None:
        try:
            await asyncio.sleep(after)  # the bound of the requests it may still carry
        finally:
            await poster.close()

    async def schedule(self, task_id: str, revision: int, body: bytes | None = None) -> None:
        """Want `revision` delivered: start it here at once when possible, else wake the local loop.

        `body` is the record of that revision when the caller just read it (saves a read: sending it
        is safe even if a newer revision exists, since it is still newer than what was delivered).
        The due set is the durable backstop: whatever is not delivered now is claimed later.
        """
        batch = self.plan([(task_id, revision, body)])
        # idempotent (see workers.outbox), so resent once when the connection fails
        batch.settle(await execute(self.redis, batch.queue, SCRIPTS, resend=True))

    def plan(self, wanted: Sequence[Wanted]) -> ScheduleBatch:
        """`schedule` for several (task id, revision, body) in a caller's pipeline (see `ScheduleBatch`)."""
        return ScheduleBatch(self, wanted)

    def claimable(self, task_ids: Sequence[str]) -> list[bool]:
        """For each task, whether this process has room to start its delivery now (in order)."""
        room = self._limit - len(self._inflight)
        claims = []
        for task_id in task_ids:
            claim = room > 0 and task_id not in self._inflight
            room -= claim
            claims.append(claim)
        return claims

    def deliver_claimed(self, task_id: str, lease: Lease, record: tuple[int, bytes] | None = None) -> bool:
        """Start a delivery this process leased; False when it already delivers that task."""
        if task_id in self._inflight:
            return False
        _wanted, delivered, attempts = lease
        job = asyncio.create_task(self._deliver(task_id, delivered, attempts, record))
        self._inflight[task_id] = job
        job.add_done_callback(self._finished)
        return True

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            self.wake.clear()
            delay = 1.0
            try:
                if len(self._inflight) < self._limit:
                    for task_id in await self.outbox.due(self._limit - len(self._inflight)):
                        if task_id in self._inflight or len(self._inflight) >= self._limit:
                            continue
                        lease = await self.outbox.begin(task_id, self.lease_ms)
                        if lease is not None:
                            self.deliver_claimed(task_id, lease)
                next_due = await self.outbox.next_due_ms()
                if next_due is not None:
                    delay = min(max((next_due - self.clock()) / 1000, 0.0), 1.0)
            except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("hook outbox unavailable (%s); retrying", exc)
            if delay > 0 or len(self._inflight) >= self._limit:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay if delay > 0 else 1.0):
                        await self.wake.wait()

    def _finished(self, job: asyncio.Task[None]) -> None:
        was_full = len(self._inflight) >= self._limit
        for task_id, running in list(self._inflight.items()):
            if running is job:
                del self._inflight[task_id]
        if was_full:  # the loop may have left due deliveries for lack of room
            self.wake.set()

    async def close(self) -> None:
        for job in list(self._inflight.values()):
            job.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        for closing in list(self._retired):
            closing.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self.poster.close()

    async def _deliver(
        self, task_id: str, delivered: int, attempts: int, record: tuple[int, bytes] | None
    ) -> None:
        try:
            await self._deliver_once(task_id, delivered, attempts, record)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            # Redis unreachable (an outage, a failover): the lease runs out and the delivery is
            # claimed again; one line, not a traceback per hook.
            log.warning("hook delivery for task %s paused: Redis %s", task_id, type(exc).__name__)
        except Exception:
            # a bug: the lease runs out and the delivery is claimed again
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
            # refused before it takes a receiver slot (the poster checks again where it connects)
            self.guard.check_url(url, what="the hook URL")
            receiver = _receiver(url)
            slots = self.receivers  # released where taken, even if a reload replaced them meanwhile
            if not await slots.acquire(receiver):
                # This receiver has its share in flight and more waiting (it may be down): leave the
                # global slot to other receivers and look again shortly.
                await self.outbox.defer(task_id, _BUSY_RECEIVER_DELAY_MS)
                return
            try:
                error = await self._post(url, body, revision)
            finally:
                slots.release(receiver)
        except UrlRefused as exc:  # by the URL, or by what the name resolved to when connecting
            log.warning("hook of task %s refused: %s", task_id, exc)
            self.metrics.hook_deliveries.labels("refused").inc()
            # recorded first: a crash in between leaves the delivery to be claimed, refused again
            await self._record(task_id, f"refused: {exc}")
            await self.outbox.give_up(task_id, revision, f"refused: {exc}")
            await self._receiver_health(url, f"refused: {exc}")
            return
        if error is None:
            self.sent += 1
            self.metrics.hook_deliveries.labels("ok").inc()
            if self.event_times is not None:
                now = self.clock()
                for at in self.event_times.take(task_id, revision):
                    self.metrics.event_to_hook_seconds.observe(max(now - at, 0) / 1000)
            if await self.outbox.delivered(task_id, revision):
                self.wake.set()
            if task.properties.notify_hook_error:
                await self._record(task_id, None)
            if self.failing_receivers:
                await self._receiver_health(url, None)
            return
        retry_in = backoff_seconds(attempts + 1)
        if await self.outbox.failed(
            task_id, revision, retry_in_s=retry_in, give_up_ms=self.give_up_ms, reason=error
        ):
            self.metrics.hook_deliveries.labels("gave_up").inc()
            log.warning("gave up the hook of task %s to %s: %s", task_id, _redact(url), error)
            minutes = self.settings.give_up_minutes
            await self._record(task_id, f"gave up after retrying for {minutes:g} min: {error}")
        else:
            self.metrics.hook_deliveries.labels("failed").inc()
            log.info(
                "hook of task %s to %s failed (%s); retry in %.1fs", task_id, _redact(url), error, retry_in
            )
            self.wake.set()
        await self._receiver_health(url, error)

    async def _record(self, task_id: str, error: str | None) -> None:
        """Write (or clear) ``properties.notifyHookError``: a quiet write, so it sends no hook."""

        def mutate(task: Task) -> Task | None:
            if task.properties.notify_hook_error == error:
                return None
            props = msgspec.structs.replace(task.properties, notify_hook_error=error)
            return msgspec.structs.replace(task, properties=props)

        await self.store.update(task_id, mutate)

    async def _receiver_health(self, url: str, error: str | None) -> None:
        """Record a failed delivery for the status page, or clear the receiver's record after one
        this process recorded. Best effort: the outbox already holds what delivery needs."""
        try:
            receiver = _receiver(url)
        except ValueError:  # a URL the guard refused for its port
            return
        if error is None and receiver not in self.failing_receivers:
            return
        try:
            if error is None:
                await hook_receivers.record_success(self.redis, receiver)
                self.failing_receivers.discard(receiver)
            else:
                await hook_receivers.record_failure(self.redis, receiver, error, now=self.clock())
                self.failing_receivers.add(receiver)
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            log.info("could not record the health of hook receiver %s (%s)", receiver, exc)

    async def _post(self, url: str, body: bytes, revision: int) -> str | None:
        """POST once; None on 2xx, else a short reason."""
        headers = {"Content-Type": "application/json", "X-Mjbroker-Task-Version": str(revision)}
        if self.settings.secret:
            timestamp = self.clock() // 1000
            headers["X-Mjbroker-Timestamp"] = str(timestamp)
            headers["X-Mjbroker-Signature"] = sign(self.settings.secret, timestamp, body)
        started = time.perf_counter()
        try:
            # An absolute bound: a receiver trickling its answer must not outlast the timeout.
            async with asyncio.timeout(self.settings.request_timeout_seconds):
                return await self.poster.post(url, body, headers)
        except TimeoutError:
            return "timed out"
        finally:
            self.metrics.hook_seconds.observe(time.perf_counter() - started)


def _client_options(settings: HookSettings) -> tuple[object, ...]:
    """What `HookPoster` builds its client from (the rest is read per request)."""
    return (
        settings.concurrency,
        settings.connect_timeout_seconds,
        settings.use_env_proxy,
        settings.env_proxy,
    )


def _receiver(url: str) -> str:
    """The receiver a URL names, as `ReceiverSlots` counts them: ``host:port``."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').rstrip('.')}:{port}"
