"""The worker process: the stream consumers, the hook deliveries and the periodic sweep.

The gateway events, the task changes and the results to finish are read by our own consumer-group
loops (`workers.consumer`), the hooks sent by `workers.delivery`; `Worker` runs them with the sweep
(once per tick across worker processes) and stops them all on SIGTERM.

``python -m workers [--config config.yaml]`` runs it; tests build the same worker with
`create_worker` and run it in-process with ``Worker.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import uvloop
from redis.exceptions import AuthenticationError, RedisError

from broker import heartbeat, keys
from broker.clock import Clock, now_ms
from broker.config import Settings, config_path, load_settings
from broker.config_watcher import ConfigWatcher
from broker.image_fetch import ImageFetcher
from broker.image_store import open_store
from broker.ledger import Ledger
from broker.logs import setup_logging
from broker.metrics import Metrics, MetricsPublisher
from broker.queues import AccountQueues
from broker.redis_client import check_or_exit, open_redis
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from broker.translation import Translator
from workers.apply import Applier
from workers.changes import ChangeHandler
from workers.consumer import EventHandler, StreamConsumer
from workers.delivery import HookDeliverer
from workers.finishing import Finisher, finishing_step
from workers.image_copy import ImageCopier
from workers.image_retention import ImageRetention
from workers.latency import EventTimes
from workers.matching import Matcher
from workers.outbox import HookOutbox
from workers.sweeper import Sweeper, SweepReport

__all__ = ["Worker", "WorkerRuntime", "create_worker", "main"]

log = logging.getLogger(__name__)

#: pending stream entries idle this long belong to a dead worker and are taken over
DEFAULT_CLAIM_IDLE_SECONDS = 30.0


#: results finished (translated, copied into the image store) at once by one worker process
FINISHING_LANES = 8


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerRuntime:
    """Everything one worker process runs, with explicit start and stop.

    :param settings: the loaded configuration.
    :param name: consumer name in the stream groups (unique per process by default).
    :param claim_idle_seconds: see `StreamConsumer.claim_idle_ms`.
    :param clock: epoch milliseconds.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        claim_idle_seconds: float = DEFAULT_CLAIM_IDLE_SECONDS,
        clock: Clock = now_ms,
        watcher: ConfigWatcher | None = None,
    ) -> None:
        self.settings = settings
        self.watcher = watcher
        self.name = name or _consumer_name()
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.clock = clock
        retention_s = settings.tasks.retention_days * 86_400
        self.redis = open_redis(settings)
        #: this process's counters, published for the web's /metrics (see `broker.metrics`)
        self.metrics = Metrics()
        self.publisher = MetricsPublisher(
            self.redis,
            self.metrics,
            role="worker",
            process=f"worker:{self.name}",
            every=settings.server.metrics_interval_seconds,
        )
        event_times = EventTimes()
        self.store = TaskStore(self.redis, retention_seconds=retention_s, clock=clock, metrics=self.metrics)
        self.queues = AccountQueues(self.redis, clock=clock)
        self.ledger: Ledger | None = None
        self.outbox = HookOutbox(self.redis, ttl_ms=int(retention_s * 1000), clock=clock)
        self.deliverer = HookDeliverer(
            self.redis,
            self.outbox,
            settings=settings.hooks,
            guard=settings.hook_guard(),
            store=self.store,
            clock=clock,
            metrics=self.metrics,
            event_times=event_times,
        )
        self.matcher = Matcher(self.store, queues=self.queues, window_ms=self._window_ms, clock=clock)
        self.translator = Translator(settings.translation, self.redis)
        # the store is chosen at start: a change of images.backend applies after a restart
        self.images = open_store(settings.images)
        self.fetcher = ImageFetcher(
            settings.link_guard(),
            max_bytes=settings.tasks.max_image_bytes,
            max_redirects=settings.url_guard.max_redirects,
            timeout_seconds=settings.url_guard.timeout_seconds,
            # built now (it reads the system's CAs: a few hundred ms), not on the first copy's path
            tls=ssl.create_default_context() if self.images is not None else None,
        )
        copier = None
        self.retention: ImageRetention | None = None
        if self.images is not None:
            copier = ImageCopier(self.images, self.fetcher, self.redis, settings=self._settings, clock=clock)
            self.retention = ImageRetention(self.images, self.redis, clock=clock)
        self.applier = Applier(
            self.store,
            self.matcher,
            clock=clock,
            finishing_of=lambda task: finishing_step(self._settings(), task),
            event_times=event_times,
        )
        self.sweeper = Sweeper(self.store, queues=self.queues, settings=self._settings, clock=clock)
        mode = settings.redis.mode
        self.events = StreamConsumer(
            self.redis,
            reads=keys.read_groups(keys.EVENTS_STREAMS, mode=mode),
            group=keys.EVENTS_GROUP,
            name=self.name,
            handle=EventHandler(self.applier),
            claim_idle_ms=self.claim_idle_ms,
        )
        finisher = Finisher(
            self.store, self.translator, clock=clock, copier=copier, concurrency=FINISHING_LANES
        )
        # Lanes of one entry per stream each: a consumer takes its next batch only once the whole
        # batch is done, so one slow copy or translation would hold every later SUCCESS back behind
        # it. A lane reads every shard; where that takes a loop per shard (a cluster), fewer lanes
        # make as many loops. The finisher runs at most FINISHING_LANES at once either way.
        finishing_reads = keys.read_groups(keys.FINISHING_STREAMS, mode=mode)
        self.finishing = [
            StreamConsumer(
                self.redis,
                reads=finishing_reads,
                group=keys.FINISHING_GROUP,
                name=f"{self.name}-finish{lane}",
                handle=finisher,
                count=1,
                claim_idle_ms=self.claim_idle_ms,
            )
            for lane in range(max(1, FINISHING_LANES // len(finishing_reads)))
        ]
        self.changes: StreamConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _settings(self) -> Settings:
        """The settings in force: accounts and timeouts follow config.yaml edits (with a watcher)."""
        if self.watcher is not None:
            current = self.watcher.current()
            if current is not self.settings:
                self.settings = current
                self.deliverer.use(current.hooks)  # hook options apply without a restart
                self.translator.settings = current.translation
        return self.settings

    def _window_ms(self, account_id: str) -> int:
        account = self._settings().account(account_id)
        return int((account.timeout_minutes if account else 5.0) * 60_000)

    async def start(self) -> None:
        self.ledger = await asyncio.to_thread(Ledger, self.settings.tasks.ledger_path)
        self.changes = StreamConsumer(
            self.redis,
            reads=keys.read_groups(keys.CHANGES_STREAMS, mode=self.settings.redis.mode),
            group=keys.CHANGES_GROUP,
            name=self.name,
            handle=ChangeHandler(
                self.store,
                queues=self.queues,
                deliverer=self.deliverer,
                ledger=self.ledger,
                settings=self._settings,
                clock=self.clock,
            ),
            claim_idle_ms=self.claim_idle_ms,
        )
        # Groups exist before any loop reads, so nothing published meanwhile is skipped.
        await self.events.ensure_group()
        await self.changes.ensure_group()
        await self.finishing[0].ensure_group()
        self._tasks = [
            asyncio.create_task(self._supervise("events", self.events.run)),
            asyncio.create_task(self._supervise("changes", self.changes.run)),
            *(asyncio.create_task(self._supervise("finishing", lane.run)) for lane in self.finishing),
            asyncio.create_task(self._supervise("hooks", self.deliverer.run)),
            asyncio.create_task(self._supervise("heartbeat", self._heartbeat)),
            asyncio.create_task(self._supervise("metrics", self.publisher.run)),
        ]
        log.info(
            "worker ready: consumers of gateway events, task changes and %d finishing lanes, hook "
            "deliveries up to %d at once, as %s",
            len(self.finishing),
            max(self.settings.hooks.concurrency, 1),
            self.name,
        )

    async def _heartbeat(self) -> None:
        """Tell the web this worker lives (see `broker.heartbeat`); a Redis outage only pauses it."""
        while True:
            try:
                await heartbeat.beat(self.redis, self.name, now=self.clock())
            except RedisError as exc:
                log.warning("heartbeat not written (%s); retrying", type(exc).__name__)
            await asyncio.sleep(heartbeat.BEAT_SECONDS)

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.publisher.close()
        with contextlib.suppress(RedisError, OSError):
            await heartbeat.leave(self.redis, self.name)
        await self.deliverer.close()
        await self.translator.close()
        await self.fetcher.close()
        if self.images is not None:
            await self.images.close()
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)
            self.ledger = None
        await self.redis.aclose()
        log.info("worker %s stopped", self.name)

    async def sweep(self) -> SweepReport:
        report = await self.sweeper.sweep()
        if self.retention is not None:
            try:
                await self.retention.sweep()
            except (RedisError, OSError) as exc:
                log.warning("stored images not swept (%s); next sweep retries", type(exc).__name__)
        return report

    async def _supervise(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        # A loop that dies of a bug restarts: one bad entry must not stop the whole worker.
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s loop crashed; restarting", what)
                await asyncio.sleep(1.0)


class Worker:
    """One worker process: its runtime's loops and the periodic sweep, until `stop` (SIGTERM or
    SIGINT with `handle_signals`).

    The sweep runs once per `tasks.sweep_seconds` across all worker processes: each tries to take
    the tick (``SET NX PX`` on `keys.SWEEP_TICK`), and the one that gets it sweeps. (arq's cron did
    this before, but arq cannot run on Redis Cluster, python-arq/arq#385, and the sweep was all
    the worker asked of it.)
    """

    def __init__(self, runtime: WorkerRuntime, *, handle_signals: bool = True) -> None:
        self.runtime = runtime
        self.handle_signals = handle_signals
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to stop the loops and return (safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> None:
        """Start the runtime, sweep on every tick, and stop it all when asked."""
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        try:
            await self.runtime.start()
            sweeps = asyncio.create_task(self._sweep_ticks())
            try:
                await self._stop.wait()
            finally:
                await cancel_and_wait(sweeps)
        finally:
            await self.runtime.stop()

    async def _sweep_ticks(self) -> None:
        while True:
            started = time.monotonic()
            every = max(self.runtime.settings.tasks.sweep_seconds, 0.05)
            # held a little less than a tick, so the next tick finds it free whoever took this one
            hold_ms = max(int(every * 900), 1)
            try:
                if await self.runtime.redis.set(keys.SWEEP_TICK, self.runtime.name, nx=True, px=hold_ms):
                    await self.runtime.sweep()
            except (RedisError, OSError) as exc:
                log.warning("sweep skipped (%s); the next tick tries again", type(exc).__name__)
            except Exception:
                log.exception("sweep failed; the next tick tries again")
            await asyncio.sleep(max(every - (time.monotonic() - started), 0.0))


def create_worker(
    settings: Settings,
    *,
    handle_signals: bool = True,
    name: str | None = None,
    claim_idle_seconds: float = DEFAULT_CLAIM_IDLE_SECONDS,
    watcher: ConfigWatcher | None = None,
) -> Worker:
    """The worker of this process; ``worker.runtime`` is its `WorkerRuntime`."""
    runtime = WorkerRuntime(settings, name=name, claim_idle_seconds=claim_idle_seconds, watcher=watcher)
    return Worker(runtime, handle_signals=handle_signals)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m workers``: the Procfile's worker line."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $MJBROKER_CONFIG or ./config.yaml)")
    parser.add_argument(
        "--claim-idle-seconds",
        type=float,
        default=DEFAULT_CLAIM_IDLE_SECONDS,
        help="take over stream entries a dead worker left pending this long",
    )
    parser.add_argument("--log-level", help="default: $MJBROKER_LOG_LEVEL or INFO")
    args = parser.parse_args(argv)
    setup_logging(level=args.log_level)
    path = config_path(args.config)
    settings = load_settings(path)
    setup_logging(settings.secrets(), level=args.log_level)
    watcher = ConfigWatcher(path, settings)
    check_or_exit(settings)
    # One consumer name for the life of the process: a worker restarted after a Redis outage reads
    # the entries its predecessor left pending at once, instead of claiming them when they idled.
    name = _consumer_name()
    while True:
        try:
            uvloop.run(
                create_worker(
                    settings, name=name, claim_idle_seconds=args.claim_idle_seconds, watcher=watcher
                ).run()
            )
            return
        except AuthenticationError:
            raise SystemExit("Redis refused this process's password (redis.url, redis.data_dir)") from None
        except RedisError as exc:
            # A Redis that is down or still loading its data when the worker starts: start over
            # (nothing is lost: unacknowledged entries stay pending).
            log.warning("Redis unavailable (%s); restarting the worker in 1 s", type(exc).__name__)
            time.sleep(1.0)
