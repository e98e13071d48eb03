"""One held account's runner: its session, event forwarding, health, consumer, inbox and bridge calls.

The bridge process (`discord_bridge.main`) starts a runner for each account it leases and stops it
when the lease goes; the runner brings the account online and then lives in its inbox loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import aiohttp
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker.account_status import AccountState, decode_fact
from broker.config import Account, Settings
from broker.discord import INSIGHTFACE_ID, MESSAGE_CREATE, MIDJOURNEY_ID, NIJI_ID
from broker.events import GatewayEvent
from broker.image_fetch import ImageFetcher
from broker.metrics import Metrics
from broker.models import SpeedMode, TaskStatus
from broker.queues import AccountQueues
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.consumer import Consumer
from discord_bridge.forwarder import Forwarder
from discord_bridge.health import AccountHealth
from discord_bridge.inbox import Chore, Inbox
from discord_bridge.interactions import Interactions
from discord_bridge.rest import DiscordError, RestClient
from discord_bridge.rpc import RpcServer
from discord_bridge.session import Session

__all__ = ["AccountRunner", "Host"]

log = logging.getLogger(__name__)


class Host(Protocol):
    """What a runner uses of the bridge process that runs it (`discord_bridge.main.Bridge`)."""

    settings: Settings
    redis: aioredis.Redis
    store: TaskStore
    queues: AccountQueues
    bridge_id: str
    http: aiohttp.ClientSession
    fetcher: ImageFetcher
    metrics: Metrics

    def publish(self, event: GatewayEvent) -> None: ...


class AccountRunner:
    """Everything one held account runs: session, forwarding, health, consumer, bridge calls."""

    def __init__(self, bridge: Host, account: Account) -> None:
        self.bridge = bridge
        self.account = account
        self.health = AccountHealth(
            bridge.redis,
            bridge.store,
            bridge.queues,
            account.id,
            bridge_id=bridge.bridge_id,
            auto_relax=account.auto_relax,
            on_relax_only=self._relax,
        )
        reconnects = bridge.metrics.gateway_reconnects.labels(account.id)
        self.session = Session(
            account, on_dispatch=self._on_dispatch, on_fatal=self._on_fatal, on_reconnect=reconnects.inc
        )
        cfg = bridge.settings.bridge
        self.rest = RestClient(
            self.session,
            settings=bridge.settings.discord,
            http=bridge.http,
            request_timeout=cfg.request_timeout_seconds,
            metrics=bridge.metrics,
        )
        self.interactions = Interactions(
            self.session,
            self.rest,
            bridge.store,
            fetcher=bridge.fetcher,
            modal_timeout=cfg.step_timeout_seconds,
        )
        self.consumer = Consumer(
            account.id,
            store=bridge.store,
            queues=bridge.queues,
            session=self.session,
            interactions=self.interactions,
            health=self.health,
            on_unauthorized=self._on_fatal,
            rate_limit_max_wait=cfg.rate_limit_max_wait_seconds,
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
        self.forwarder = Forwarder(account.id, channels=self.channels, sink=bridge.publish)
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

    def _relax(self) -> None:
        """Fast hours used up: put the account in relax mode, as the user would with /relax."""

        async def relax() -> None:
            try:
                await self.interactions.switcher.switch(MIDJOURNEY_ID, SpeedMode.RELAX)
            except (DiscordError, RedisError, OSError) as exc:
                # RELAX tasks carry --relax anyway, and clicks switch before they are sent
                log.warning("account %s: could not switch to relax mode (%s)", self.account.id, exc)

        self._spawn(relax())

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
