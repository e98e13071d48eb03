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
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError

from broker.account_status import AccountState, decode_fact
from broker.config import DEFAULT_USER_AGENT, Account, ConfigWatcher, Settings, config_path, load_settings
from broker.discord import INSIGHTFACE_ID, MESSAGE_CREATE, MIDJOURNEY_ID, NIJI_ID
from broker.models import TaskStatus
from broker.queues import AccountQueues
from broker.redis_client import connect
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.consumer import Consumer
from discord_bridge.discord_overrides import install_fixed_super_properties, point_client_at
from discord_bridge.forwarder import Forwarder, Publisher
from discord_bridge.health import AccountHealth
from discord_bridge.inbox import Chore, Inbox
from discord_bridge.interactions import Interactions
from discord_bridge.leases import Leases, fair_share
from discord_bridge.rest import DiscordError, RestClient
from discord_bridge.rpc import RpcServer
from discord_bridge.session import Session

__all__ = ["AccountRunner", "Bridge", "apply_overrides", "main"]

log = logging.getLogger(__name__)


def apply_overrides(settings: Settings) -> None:
    """Point discord.py-self at the configured Discord and stop its internet probing.

    Process-wide (class attributes of the library): a process talks to one Discord.
    """
    point_client_at(settings.discord.rest_url, settings.discord.gateway_url, settings.discord.cdn_url)
    agent = settings.accounts[0].user_agent if settings.accounts else DEFAULT_USER_AGENT
    install_fixed_super_properties(agent, settings.discord.build_number)


class AccountRunner:
    """Everything one held account runs: session, forwarding, health, consumer, bridge calls."""

    def __init__(self, bridge: Bridge, account: Account) -> None:
        self.bridge = bridge
        self.account = account
        self.health = AccountHealth(
            bridge.redis, bridge.store, bridge.queues, account.id, bridge_id=bridge.bridge_id
        )
        self.session = Session(account, on_dispatch=self._on_dispatch, on_fatal=self._on_fatal)
        cfg = bridge.settings.bridge
        self.rest = RestClient(
            self.session,
            settings=bridge.settings.discord,
            http=bridge.http,
            request_timeout=cfg.request_timeout_seconds,
        )
        self.interactions = Interactions(
            self.session, self.rest, bridge.store, modal_timeout=cfg.step_timeout_seconds
        )
        self.consumer = Consumer(
            account.id,
            store=bridge.store,
            queues=bridge.queues,
            session=self.session,
            interactions=self.interactions,
            health=self.health,
            on_unauthorized=self._on_fatal,
        )
        self.rpc = RpcServer(
            account.id, redis=bridge.redis, store=bridge.store, session=self.session, rest=self.rest
        )
        self.inbox = Inbox(
            account.id,
            redis=bridge.redis,
            on_ready=lambda raw: self.consumer.start(raw.decode()),
            on_call=self.rpc.serve,
            on_fact=self._on_fact,
            chores=[
                Chore(self.consumer.reconcile, every=cfg.reconcile_seconds),
                Chore(self.health.write, every=cfg.status_seconds),
            ],
        )
        self.forwarder = Forwarder(account.id, channels=self.channels, sink=bridge.publisher.put)
        self._channels = self._build_channels()
        self._tasks: list[asyncio.Task[Any]] = []
        self._side: set[asyncio.Task[Any]] = set()
        self.stopped = False

    def _build_channels(self) -> frozenset[str]:
        ids = {self.account.channel_id, self.account.mj_dm_channel_id, self.account.niji_dm_channel_id}
        for bot in (MIDJOURNEY_ID, NIJI_ID, INSIGHTFACE_ID):
            dm = self.session.dm_channels.get(bot)
            if dm:
                ids.add(dm)
        return frozenset(i for i in ids if i)

    def channels(self) -> frozenset[str]:
        return self._channels

    def start(self) -> None:
        self.session.start()
        main = asyncio.create_task(self._main(), name=f"runner:{self.account.id}")
        main.add_done_callback(self._report_crash)
        self._tasks.append(main)

    def _report_crash(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "account %s: runner stopped by an unexpected error",
                self.account.id,
                exc_info=task.exception(),
            )

    async def stop(self, *, status: AccountState | None = None, reason: str = "") -> None:
        if self.stopped:
            return
        self.stopped = True
        await cancel_and_wait(*self._tasks, *self._side)
        await self.consumer.close()
        await self.rpc.close()
        await self.rest.close()
        await self.session.close()
        if status is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.health.set(status, reason)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _main(self) -> None:
        # A Redis or Discord hiccup while coming online (a restarting Redis, say) is retried: a
        # runner that gave up here would hold the lease and leave the account's tasks unsent.
        while True:
            try:
                if not await self._come_online():
                    return
                break
            except (RedisError, OSError, DiscordError) as exc:
                log.warning("account %s: coming online failed (%s); retrying in 1 s", self.account.id, exc)
                await asyncio.sleep(1.0)
        await self.inbox.run()

    async def _come_online(self) -> bool:
        """Wait for the session, load the commands, catch up, go ONLINE; False if it cannot connect."""
        await self.health.set(AccountState.CONNECTING, "connecting to Discord")
        while not await self.session.wait_ready(30.0):
            if self.session.fatal is not None:
                return False
            await self.health.set(
                AccountState.CONNECTING, f"connecting to Discord ({self.session.last_error or 'waiting'})"
            )
        await self.rest.load_commands()
        with contextlib.suppress(DiscordError, RedisError, OSError):
            await self._catch_up()
        await self.health.online()
        return True

    async def _catch_up(self) -> None:
        """Re-forward the channel's recent bot messages when jobs were in flight before this session.

        Events sent while no session held the account (a killed bridge, the lease gap) are gone from
        the gateway; the final messages are still in the channel. Workers ignore what they have seen.
        """
        running = [task_id for task_id, _ in await self.bridge.queues.running(self.account.id)]
        tasks = await self.bridge.store.get_many(running)
        if not any(t.status in (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS) for t in tasks):
            return
        messages = await self.rest.recent_messages(self.account.channel_id)
        forwarded = sum(1 for m in messages if self.forwarder(MESSAGE_CREATE, 0, msgspec.json.encode(m)))
        log.info("account %s: caught up %d recent bot messages", self.account.id, forwarded)

    def _on_dispatch(self, t: str, seq: int, d: bytes) -> None:
        if t == "READY":
            # DM channel ids come from READY's private channels (after the session recorded them).
            asyncio.get_running_loop().call_soon(self._refresh_channels)
        self.forwarder(t, seq, d)

    def _on_fact(self, raw: bytes) -> None:
        fact = decode_fact(raw)
        if fact is None:
            log.warning("account %s: unreadable health fact dropped", self.account.id)
            return
        self._spawn(self.health.consider(fact))

    def _refresh_channels(self) -> None:
        self._channels = self._build_channels()

    def _on_fatal(self, reason: str) -> None:
        async def disable() -> None:
            with contextlib.suppress(Exception):
                await self.session.close()
            for task in self._tasks:
                task.cancel()
            text = (
                f"{reason}. Put a working token for account '{self.account.id}' in config.yaml; "
                "the bridge reconnects it on reload"
            )
            await self.health.set(AccountState.DISABLED, text)
            await self.health.fail_unfinished(f"account {self.account.id} disabled: {text}")

        self._spawn(disable())


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
        self.store = TaskStore(redis, retention_seconds=settings.tasks.retention_days * 86400)
        self.queues = AccountQueues(redis)
        self.publisher = Publisher(redis)
        self.leases = Leases(
            redis, bridge_id=self.bridge_id, lease_ms=int(settings.bridge.lease_seconds * 1000)
        )
        self.runners: dict[str, AccountRunner] = {}
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]  # set in run()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        apply_overrides(self.settings)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.publisher.start()
        renewer = asyncio.create_task(self._renew_loop(), name="lease-renewal")
        log.info("bridge %s started with %d accounts in config", self.bridge_id, len(self.settings.accounts))
        try:
            while not self._stop.is_set():
                try:
                    await self.tick()
                except (RedisError, OSError) as exc:
                    log.warning("bridge tick failed (%s); retrying", exc)
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
                await self.shutdown()

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

    def _enabled(self) -> list[Account]:
        return [a for a in self.settings.accounts if a.enabled]

    async def tick(self) -> None:
        """Reload config, acquire free accounts up to our fair share, give back extras."""
        self._maybe_reload()
        await self._apply_config()
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
        log.info("bridge %s holds account %s", self.bridge_id, account.id)
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


def _with_bridge_defaults(new: Settings, old: Settings) -> Settings:
    # Discord base URLs are applied once per process; a reload changes accounts only.
    return msgspec.structs.replace(new, discord=old.discord)


async def amain(path: str | None = None) -> None:
    file = config_path(path)
    settings = load_settings(file)
    redis = connect(settings.redis_url, settings.redis)
    bridge = Bridge(settings, redis, config_path=file)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stop)
    try:
        await bridge.run()
    finally:
        await redis.aclose()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("MJBROKER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("discord").setLevel(logging.WARNING)
    started = time.monotonic()
    uvloop.run(amain())
    log.info("bridge stopped after %.0fs", time.monotonic() - started)
