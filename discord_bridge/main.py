"""The bridge process: leases accounts, runs one session + consumer per held account, reloads config.

`python -m discord_bridge` (the Procfile's `bridge` line). Settings come from config.yaml
(`MJBROKER_CONFIG`); Redis from `settings.redis_url`. SIGTERM stops every session, gives the
leases back (so another bridge takes the accounts at once) and flushes pending events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from pathlib import Path

import aiohttp
import msgspec
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError

from broker import keys
from broker.account_status import AccountState
from broker.config import DEFAULT_USER_AGENT, Account, Settings, config_path, load_settings
from broker.config_watcher import ConfigWatcher
from broker.events import GatewayEvent
from broker.image_fetch import ImageFetcher
from broker.logs import setup_logging
from broker.metrics import Metrics, MetricsPublisher
from broker.queues import AccountQueues
from broker.redis_client import RedisRefused, open_redis, preflight
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.discord_overrides import install_fixed_super_properties, point_client_at
from discord_bridge.forwarder import Publisher
from discord_bridge.leases import Leases, fair_share
from discord_bridge.library_logs import quiet_library_logs
from discord_bridge.runner import AccountRunner

__all__ = ["Bridge", "apply_overrides", "main"]

log = logging.getLogger(__name__)


def apply_overrides(settings: Settings) -> None:
    """Point discord.py-self at the configured Discord and stop its internet probing.

    Process-wide (class attributes of the library): a process talks to one Discord.
    """
    quiet_library_logs()
    point_client_at(settings.discord.rest_url, settings.discord.gateway_url, settings.discord.cdn_url)
    agent = settings.accounts[0].user_agent if settings.accounts else DEFAULT_USER_AGENT
    install_fixed_super_properties(agent, settings.discord.build_number)


class Bridge:
    """One bridge process.

    :param settings: the loaded settings.
    :param redis: Redis client.
    :param config_path: config.yaml to watch for changes (None: no reload).
    :param bridge_id: this process's lease value (default host:pid:random).
    """

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        *,
        config_path: str | Path | None = None,
        bridge_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        # Checked on every acquire tick (bridge.acquire_seconds), which already sets the rhythm.
        self._watcher = ConfigWatcher(config_path, settings, every=0.0) if config_path else None
        self._loaded = settings
        self.bridge_id = bridge_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        #: this process's counters, published for the web's /metrics (see `broker.metrics`)
        self.metrics = Metrics()
        self.metrics_publisher = MetricsPublisher(
            redis,
            self.metrics,
            role="bridge",
            process=f"bridge:{self.bridge_id}",
            every=settings.server.metrics_interval_seconds,
        )
        self.store = TaskStore(
            redis, retention_seconds=settings.tasks.retention_days * 86400, metrics=self.metrics
        )
        self.queues = AccountQueues(redis)
        self.publisher = Publisher(redis)
        self.leases = Leases(
            redis, bridge_id=self.bridge_id, lease_ms=int(settings.bridge.lease_seconds * 1000)
        )
        self.runners: dict[str, AccountRunner] = {}
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]  # set in run()
        #: downloads what clients link to (face-swap images, describe links), through the URL guard
        self.fetcher = ImageFetcher(
            settings.link_guard(),
            max_bytes=settings.tasks.max_image_bytes,
            max_redirects=settings.url_guard.max_redirects,
            timeout_seconds=settings.url_guard.timeout_seconds,
        )
        self._stop = asyncio.Event()
        #: the accounts the last "bridge holds ..." line named
        self._said_held: list[str] | None = None

    def stop(self) -> None:
        self._stop.set()

    def publish(self, event: GatewayEvent) -> None:
        """Hand a forwarded event to the process's publisher (a runner's sink)."""
        self.publisher.put(event)

    async def run(self) -> None:
        apply_overrides(self.settings)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.publisher.start()
        renewer = asyncio.create_task(self._renew_loop(), name="lease-renewal")
        metrics = asyncio.create_task(self.metrics_publisher.run(), name="metrics")
        log.info("bridge %s started with %d accounts in config", self.bridge_id, len(self.settings.accounts))
        try:
            while not self._stop.is_set():
                try:
                    await self.tick()
                except (RedisError, OSError) as exc:
                    log.warning("bridge tick failed (%s); retrying", exc)
                self._say_held()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.bridge.acquire_seconds):
                        await self._stop.wait()
        finally:
            try:
                if self._stop.is_set():
                    # Stopped: the renewal loop ends by itself once it has finished what it was
                    # doing (stopping the session of an account whose lease it lost), rather than be
                    # cancelled half-way through that.
                    await renewer
                else:
                    await cancel_and_wait(renewer)  # run() itself is being cancelled
            finally:
                await cancel_and_wait(metrics)
                await self.shutdown()
                await self.metrics_publisher.close()

    def _say_held(self) -> None:
        """One line whenever the set of accounts this bridge holds changes ("bridge holds a1, a2")."""
        held = sorted(self.runners)
        if held != self._said_held:
            self._said_held = held
            log.info("bridge holds %s (%s)", ", ".join(held) or "no account", self.bridge_id)

    async def shutdown(self) -> None:
        for account_id in list(self.runners):
            runner = self.runners.pop(account_id)
            await runner.stop(
                status=AccountState.CONNECTING, reason="its bridge stopped; waiting for another"
            )
        with contextlib.suppress(RedisError, OSError):
            await self.leases.release_all()
            await self.leases.withdraw()
        await self.publisher.close()
        await self.http.close()
        await self.fetcher.close()

    def _enabled(self) -> list[Account]:
        return [a for a in self.settings.accounts if a.enabled]

    async def tick(self) -> None:
        """Reload config, acquire free accounts up to our fair share, give back extras."""
        self._maybe_reload()
        await self._apply_config()
        await self._reconnect_asked()
        live = await self.leases.announce()
        enabled = self._enabled()
        share = fair_share(len(enabled), live)
        free = [a for a in enabled if a.id not in self.runners]
        for account in free:
            if len(self.runners) >= share:
                break
            if await self.leases.acquire(account.id):
                self._start(account)
        if len(self.runners) > share and live > 1:
            await self._give_back_one()

    def _start(self, account: Account) -> None:
        log.info("bridge %s starts the session of account %s", self.bridge_id, account.id)
        runner = AccountRunner(self, account)
        self.runners[account.id] = runner
        runner.start()

    async def _give_back_one(self) -> None:
        loads = await self.queues.loads(list(self.runners))
        account_id = min(self.runners, key=lambda a: loads.get(a, (0, 0)))
        log.info("bridge %s gives account %s back (balancing)", self.bridge_id, account_id)
        runner = self.runners.pop(account_id)
        await runner.stop(status=AccountState.CONNECTING, reason="moving to another bridge")
        await self.leases.release(account_id)

    async def _renew_loop(self) -> None:
        """Renew the leases until the bridge stops; stop the accounts whose lease was lost."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.leases.renew_interval):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            lost = await self.leases.renew()
            for account_id in lost:
                runner = self.runners.pop(account_id, None)
                if runner is not None:
                    log.error(
                        "bridge %s lost the lease of account %s; stopping its session",
                        self.bridge_id,
                        account_id,
                    )
                    await runner.stop()

    def _maybe_reload(self) -> None:
        if self._watcher is None:
            return
        current = self._watcher.current()  # logs a reload, or a broken edit it ignores
        if current is not self._loaded:
            self._loaded = current
            self.settings = _with_bridge_defaults(current, self.settings)

    async def _apply_config(self) -> None:
        wanted = {a.id: a for a in self._enabled()}
        for account_id in list(self.runners):
            runner = self.runners[account_id]
            account = wanted.get(account_id)
            if account is None:
                self.runners.pop(account_id)
                await runner.stop(status=AccountState.DISABLED, reason="removed or disabled in config.yaml")
                await self.leases.release(account_id)
            elif account != runner.account:
                log.info("account %s changed in config; restarting its session", account_id)
                self.runners.pop(account_id)
                await runner.stop()
                self._start(account)

    async def _reconnect_asked(self) -> None:
        """Restart the session of each held account an admin asked to reconnect (admin API)."""
        held = list(self.runners)
        if not held:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in held:
                pipe.getdel(keys.account_reconnect(account_id))
            asked = await pipe.execute()
        for account_id, value in zip(held, asked, strict=True):
            runner = self.runners.get(account_id)
            if value is None or runner is None:
                continue
            log.info("account %s: reconnect asked by an admin; opening a new session", account_id)
            self.runners.pop(account_id)
            await runner.stop()
            self._start(runner.account)


def _with_bridge_defaults(new: Settings, old: Settings) -> Settings:
    # Discord base URLs are applied once per process; a reload changes accounts only.
    return msgspec.structs.replace(new, discord=old.discord)


async def amain(path: str | None = None) -> None:
    file = config_path(path)
    settings = load_settings(file)
    setup_logging(settings.secrets())
    try:
        redis = open_redis(settings)
    except RedisRefused as exc:  # sentinel or cluster URLs it cannot use
        raise SystemExit(f"Redis refused: {exc}") from None
    try:
        await preflight(redis, settings.redis)
    except RedisRefused as exc:
        await redis.aclose()
        raise SystemExit(f"Redis refused: {exc}") from None
    bridge = Bridge(settings, redis, config_path=file)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stop)
    try:
        await bridge.run()
    finally:
        await redis.aclose()


def main() -> None:
    setup_logging()  # the secrets are added once the config is read (`amain`)
    started = time.monotonic()
    uvloop.run(amain())
    log.info("bridge stopped after %.0fs", time.monotonic() - started)
