"""One blocking read per held account for everything addressed to it.

Three Redis lists carry an account's mail, all under its hash tag: `keys.account_ready` (tasks that
just got a slot, pushed by admission), `keys.bridge_rpc` (calls from web: uploads, the image seed)
and `keys.account_facts` (what the workers saw the bots say about the account). One BLPOP over the
three wakes the account's runner for any of them, so an account costs one waiting connection, not
three. Between reads the inbox runs the account's periodic chores (re-reading the running set, the
health heartbeat), so a lost wake-up costs seconds, never a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker import keys

__all__ = ["Chore", "Inbox"]

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]


class Chore:
    """Something the inbox runs every `every` seconds (first right away)."""

    def __init__(self, run: Callable[[], Awaitable[None]], *, every: float) -> None:
        self.run = run
        self.every = every
        self.due = 0.0


class Inbox:
    """Reads one account's lists and hands each entry to its handler.

    Handlers are called in arrival order and must not block: they start work (a task, a call) and
    return. A handler that raises is logged; the entry is not read again.

    :param account_id: the account.
    :param redis: Redis client.
    :param on_ready: a task id that got a slot.
    :param on_call: a bridge call (JSON of `broker.bridge_calls.BridgeCall`).
    :param on_fact: a fact (JSON of `broker.account_status.AccountFact`).
    :param chores: periodic work, run between reads.
    :param wait_seconds: how long one BLPOP blocks (well under the client's read timeout).
    """

    def __init__(
        self,
        account_id: str,
        *,
        redis: aioredis.Redis,
        on_ready: Handler,
        on_call: Handler,
        on_fact: Handler,
        chores: list[Chore],
        wait_seconds: float = 1.0,
    ) -> None:
        self.account_id = account_id
        self.redis = redis
        self.chores = chores
        self.wait_seconds = wait_seconds
        self._routes: dict[bytes, Handler] = {
            keys.account_ready(account_id).encode(): on_ready,
            keys.bridge_rpc(account_id).encode(): on_call,
            keys.account_facts(account_id).encode(): on_fact,
        }

    async def run(self) -> None:
        """Read until cancelled; Redis outages are waited out."""
        lists = [key.decode() for key in self._routes]
        while True:
            try:
                await self._chores()
                popped = await self.redis.blpop(lists, timeout=self.wait_seconds)
            except (RedisError, OSError) as exc:
                log.warning("account %s: inbox waits for Redis (%s)", self.account_id, exc)
                await asyncio.sleep(1.0)
                continue
            if popped is None:
                continue
            key, value = popped
            try:
                self._routes[key](value)
            except Exception:
                log.exception("account %s: an entry of %s could not be handled", self.account_id, key)

    async def _chores(self) -> None:
        now = time.monotonic()
        for chore in self.chores:
            if now >= chore.due:
                chore.due = now + chore.every
                await chore.run()
