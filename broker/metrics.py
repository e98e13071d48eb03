"""Prometheus metrics of every process, and how they reach the one scrape target (`GET /metrics`).

Each process (every web worker, worker and bridge) counts in its own prometheus_client registry
(`Metrics`), in memory: an increment on a hot path costs about a microsecond and no Redis round
trip. A `MetricsPublisher` then writes a snapshot of that registry into Redis every
``server.metrics_interval_seconds`` (5 s by default, off the hot paths), as one field of the hash
`keys.METRICS` named after the process and good for `SNAPSHOT_TTL_FACTOR` intervals. The web's
``/metrics`` (`broker.api.metrics`) serves every live snapshot, each sample labelled with the
``role`` and ``process`` it comes from, plus the gauges it reads from Redis at scrape time (queue
depth, running tasks, account status).

Why through Redis rather than a port per process: processes are many, on many hosts, and come and
go (the Procfile scales them; accounts move between bridges with their leases). Redis is what they
already share, so one scrape target sees all of them, with no service discovery and no extra port
to open per process. Why a ``process`` label rather than sums: a process that stops takes its
series with it, and a new one starts its own from zero. Prometheus handles that as it handles any
target restart (``rate``/``increase`` over ``sum by (...)`` stay right), whereas a sum that drops
when one of its parts goes away would look like a counter reset and be read as a spike. A web
process that restarts loses only its own counts (submits); the worker's and bridge's snapshots are
untouched by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

import msgspec
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector
from redis.exceptions import RedisError

from broker import keys
from broker.clock import Clock, now_ms

__all__ = [
    "SNAPSHOT_TTL_FACTOR",
    "Family",
    "Metrics",
    "MetricsPublisher",
    "Snapshot",
    "decode_snapshot",
    "process_name",
    "prune",
    "snapshot_of",
]

log = logging.getLogger(__name__)

#: a snapshot counts for this many publishing intervals (a process that died leaves after that)
SNAPSHOT_TTL_FACTOR = 6

#: from a gateway event to the hook receiver's answer: jobs report every few seconds, a hook takes
#: milliseconds when all is well
_EVENT_TO_HOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_HOOK_POST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The counters and histograms one process keeps; each process uses those of its own job.

    :param registry: where they register (default: a new registry of their own, so that several
        components built in one test process do not collide with each other or the default one).
    :param process_collector: also export this process's CPU, memory and open files.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collector: bool = True) -> None:
        # `*_created` series double the output and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_collector:
            ProcessCollector(registry=r)
        #: web: every submit answered, by the task's action and the reply's code (1, 21-24, 3, 4, 9)
        self.submitted = Counter(
            "mjbroker_tasks_submitted",
            "Submits answered, by action and reply code",
            ["action", "code"],
            registry=r,
        )
        #: any process that ends a task (worker: the bot's result, timeouts; bridge: refusals; web: cancel)
        self.finished = Counter(
            "mjbroker_tasks_finished", "Tasks that reached a final status", ["action", "status"], registry=r
        )
        #: bridge
        self.gateway_reconnects = Counter(
            "mjbroker_gateway_reconnects",
            "Gateway sessions resumed or identified again",
            ["account"],
            registry=r,
        )
        self.interactions_sent = Counter(
            "mjbroker_interactions_sent", "Interactions Discord accepted (2xx)", ["account"], registry=r
        )
        self.interactions_failed = Counter(
            "mjbroker_interactions_failed",
            "Interactions not accepted: rejected (4xx), rate_limited (429), no_answer (timeout, 5xx)",
            ["account", "reason"],
            registry=r,
        )
        #: worker
        self.hook_deliveries = Counter(
            "mjbroker_hook_deliveries",
            "Hook POSTs by result: ok (2xx), failed (retried later), gave_up, refused (URL guard)",
            ["result"],
            registry=r,
        )
        self.hook_seconds = Histogram(
            "mjbroker_hook_delivery_seconds",
            "Duration of one hook POST, whatever its result",
            registry=r,
            buckets=_HOOK_POST_BUCKETS,
        )
        self.event_to_hook_seconds = Histogram(
            "mjbroker_event_to_hook_seconds",
            "From the bridge receiving a gateway event to the hook receiver accepting the task it changed",
            registry=r,
            buckets=_EVENT_TO_HOOK_BUCKETS,
        )


class Sample(msgspec.Struct, array_like=True, frozen=True):
    name: str
    labels: dict[str, str]
    value: float


class Family(msgspec.Struct, array_like=True, frozen=True):
    """One metric family of a snapshot, as prometheus_client's collectors yield it."""

    name: str
    type: str
    documentation: str
    samples: list[Sample]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What one process last published (the value of its field of `keys.METRICS`)."""

    role: str
    process: str
    #: epoch ms after which the snapshot no longer counts (its process is presumed gone)
    until_ms: int
    families: list[Family]


_encode = msgspec.json.Encoder().encode
decode_snapshot = msgspec.json.Decoder(Snapshot).decode


def snapshot_of(registry: CollectorRegistry, *, role: str, process: str, until_ms: int) -> Snapshot:
    """The registry's families now, as a `Snapshot` (the public `collect()` of prometheus_client)."""
    families = [
        Family(
            metric.name,
            metric.type,
            metric.documentation,
            [Sample(s.name, dict(s.labels), float(s.value)) for s in metric.samples],
        )
        for metric in registry.collect()
        if not _unused_histogram(metric)
    ]
    return Snapshot(role=role, process=process, until_ms=until_ms, families=families)


def _unused_histogram(metric: Metric) -> bool:
    # A histogram of another process's job (the web's `event_to_hook`) would export empty buckets.
    return metric.type == "histogram" and all(
        s.value == 0 for s in metric.samples if s.name.endswith("_count")
    )


#: a publisher clears the snapshots of dead processes every this many publications (the web's
#: /metrics does too, at every scrape), so the hash does not grow when nothing scrapes it
_PRUNE_EVERY = 12


async def prune(redis: aioredis.Redis, *, now: int) -> None:
    """Delete the snapshots that expired (their process stopped or died) or cannot be read."""
    expired = []
    for field, value in (await redis.hgetall(keys.METRICS)).items():
        try:
            if decode_snapshot(value).until_ms < now:
                expired.append(field)
        except msgspec.DecodeError:
            expired.append(field)
    if expired:
        await redis.hdel(keys.METRICS, *expired)


def process_name(role: str) -> str:
    """A name unique to this process: ``<role>:<host>:<pid>:<random>``."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MetricsPublisher:
    """Writes this process's snapshot into Redis every `every` seconds until cancelled.

    :param redis: the process's client.
    :param metrics: what to publish.
    :param role: ``web``, ``worker`` or ``bridge`` (a label of every sample).
    :param process: this process's name (a label too; see `process_name`).
    :param every: seconds between snapshots.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        metrics: Metrics,
        *,
        role: str,
        process: str,
        every: float,
        clock: Clock = now_ms,
    ) -> None:
        self.redis = redis
        self.metrics = metrics
        self.role = role
        self.process = process
        self.every = max(every, 0.05)
        self.clock = clock
        self._failing = False
        self._published = 0

    async def publish(self) -> None:
        ttl_ms = int(self.every * SNAPSHOT_TTL_FACTOR * 1000)
        snapshot = snapshot_of(
            self.metrics.registry, role=self.role, process=self.process, until_ms=self.clock() + ttl_ms
        )
        await self.redis.hset(keys.METRICS, self.process, _encode(snapshot))
        self._published += 1
        if self._published % _PRUNE_EVERY == 1:
            await prune(self.redis, now=self.clock())

    async def run(self) -> None:
        """Publish until cancelled; a Redis outage only pauses it (said once, not every interval)."""
        while True:
            try:
                await self.publish()
                if self._failing:
                    log.info("metrics of %s published again", self.process)
                self._failing = False
            except (RedisError, OSError) as exc:
                if not self._failing:
                    log.warning(
                        "metrics of %s not published (%s); retrying", self.process, type(exc).__name__
                    )
                self._failing = True
            await asyncio.sleep(self.every)

    async def close(self) -> None:
        """A last snapshot, so the counts of the process's last seconds are seen before it expires."""
        with contextlib.suppress(RedisError, OSError):
            await self.publish()
