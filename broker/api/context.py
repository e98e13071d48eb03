"""What the route handlers share in one web process: settings, the Redis client, store, queues, admitter."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from litestar import Request

from broker.admission import LOAD_TTL_SECONDS, STATUS_TTL_SECONDS, Admitter
from broker.clock import now_ms
from broker.config import Settings
from broker.config_watcher import ConfigWatcher
from broker.heartbeat import WorkerWatch
from broker.image_store import ImageStore, open_store
from broker.ledger import Ledger
from broker.metrics import Metrics, process_name
from broker.queues import AccountQueues
from broker.store import TaskStore
from broker.translation import Translator

__all__ = ["ApiContext", "context_of"]


class ApiContext:
    """Built once per process by `create_app`; Redis is connected in the app's startup hook."""

    def __init__(self, settings: Settings, *, watcher: ConfigWatcher | None = None) -> None:
        self._settings = settings
        self._watcher = watcher
        self.clock = now_ms
        self._redis: aioredis.Redis | None = None
        self._store: TaskStore | None = None
        self._queues: AccountQueues | None = None
        self._admitter: Admitter | None = None
        self._workers: WorkerWatch | None = None
        self._translator: Translator | None = None
        self._ledger: Ledger | None = None
        self._ledger_lock = threading.Lock()
        #: this process's counters (see `broker.metrics`), published under `metrics_process`
        self.metrics = Metrics()
        self.metrics_process = process_name("web")
        #: the image store the image routes serve (None = off); chosen at start, as the workers do
        self.images: ImageStore | None = None

    def open(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._store = TaskStore(
            redis, retention_seconds=self.settings.tasks.retention_days * 86400, metrics=self.metrics
        )
        self._queues = AccountQueues(redis)
        # how long an account status and the account loads read are trusted (tests use 0)
        self._admitter = Admitter(
            self._store,
            self._queues,
            self.settings,
            status_ttl=float(os.environ.get("MJBROKER_STATUS_TTL_SECONDS", STATUS_TTL_SECONDS)),
            load_ttl=float(os.environ.get("MJBROKER_LOAD_TTL_SECONDS", LOAD_TTL_SECONDS)),
        )
        self._workers = WorkerWatch(redis)
        self._translator = Translator(self.settings.translation, redis)
        self.images = open_store(self.settings.images)

    async def close(self) -> None:
        if self._translator is not None:
            await self._translator.close()
            self._translator = None
        if self.images is not None:
            await self.images.close()
            self.images = None
        if self._redis is not None:
            await self._redis.aclose()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        self._redis = self._store = self._queues = self._admitter = self._workers = None

    @property
    def settings(self) -> Settings:
        """The settings in force; with a watcher, config.yaml edits apply within seconds."""
        if self._watcher is not None:
            current = self._watcher.current()
            if current is not self._settings:
                self._settings = current
                if self._admitter is not None:
                    self._admitter.use(current)
        return self._settings

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "the app has not started"
        return self._redis

    @property
    def store(self) -> TaskStore:
        assert self._store is not None, "the app has not started"
        return self._store

    @property
    def queues(self) -> AccountQueues:
        assert self._queues is not None, "the app has not started"
        return self._queues

    @property
    def workers(self) -> WorkerWatch:
        """Whether a worker process is alive (cached: a submit rarely pays a round trip for it)."""
        assert self._workers is not None, "the app has not started"
        return self._workers

    @property
    def translator(self) -> Translator:
        """Prompts in Chinese; follows `translation` of config.yaml edits."""
        assert self._translator is not None, "the app has not started"
        settings = self.settings.translation
        if self._translator.settings is not settings:
            self._translator.settings = settings
        return self._translator

    @property
    def ledger(self) -> Ledger:
        """The SQLite ledger the workers append to, opened on first use (usage, the status page, the
        admin task listing).

        Its calls are synchronous: run them in a thread (`asyncio.to_thread`)."""
        with self._ledger_lock:  # first used from threads (`asyncio.to_thread`): open it once
            if self._ledger is None:
                self._ledger = Ledger(self.settings.tasks.ledger_path)
            return self._ledger

    @property
    def admitter(self) -> Admitter:
        assert self._admitter is not None, "the app has not started"
        _ = self.settings  # applies a config reload to the admitter first
        return self._admitter

    @property
    def config_file(self) -> Path | None:
        """The config.yaml this process follows (None when it was given settings, not a file)."""
        return self._watcher.path if self._watcher is not None else None

    def reload_settings(self) -> Settings:
        """Take config.yaml's settings now (after this process wrote it), not at the next look."""
        if self._watcher is not None:
            self._watcher.reload()
        return self.settings


def context_of(request: Request[Any, Any, Any]) -> ApiContext:
    return cast(ApiContext, request.app.state.ctx)


def api_key_name(request: Request[Any, Any, Any]) -> str | None:
    """Name of the api key the request authenticated with (set by the auth middleware)."""
    name = cast(dict[str, Any], request.scope).get("mjb_key")
    return name if isinstance(name, str) else None
