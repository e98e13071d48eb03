"""Which dispatches go to the workers, and the ordered, batched publisher onto the events stream.

Forwarded, raw (Discord's own bytes of `d`): MESSAGE_CREATE/UPDATE written by the Midjourney, Niji
or InsightFace bot (author or application id) in the account's channel or DM channels,
MESSAGE_DELETE in those channels, and every INTERACTION_* dispatch of the session (they are
session-scoped by nature). Nothing else. Only the routing fields are decoded here; the workers parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker.clock import Clock, now_ms
from broker.discord import BOT_IDS, INTERACTION_EVENTS, MESSAGE_DELETE, MESSAGE_EVENTS
from broker.discord_types import User
from broker.events import GatewayEvent, publish_many
from broker.shutdown import cancel_and_wait

__all__ = ["Forwarder", "Publisher", "is_forwarded"]

log = logging.getLogger(__name__)


class _Route(msgspec.Struct, gc=False):
    """The fields of a message dispatch that decide whether it is forwarded."""

    channel_id: str | None = None
    author: User | None = None
    application_id: str | None = None


_route = msgspec.json.Decoder(_Route)


def is_forwarded(t: str, d: bytes, channels: Collection[str]) -> bool:
    """Whether dispatch (t, raw d) of a session watching `channels` goes to the workers."""
    if t in INTERACTION_EVENTS:
        return True
    if t not in MESSAGE_EVENTS:
        return False
    try:
        route = _route.decode(d)
    except msgspec.DecodeError:
        return False
    if route.channel_id not in channels:
        return False
    if t == MESSAGE_DELETE:
        return True
    author = route.author.id if route.author else None
    return author in BOT_IDS or route.application_id in BOT_IDS


class Publisher:
    """Appends events to the stream in arrival order, batching what piled up, retrying on Redis errors.

    One per bridge process; `put` never blocks the gateway reader.
    """

    def __init__(self, redis: aioredis.Redis, *, batch: int = 500, retry_delay: float = 0.5) -> None:
        self.redis = redis
        self._queue: asyncio.Queue[GatewayEvent] = asyncio.Queue()
        self._batch = batch
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def put(self, event: GatewayEvent) -> None:
        self._queue.put_nowait(event)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="publisher")

    async def flush(self, within: float = 5.0) -> None:
        """Wait until everything queued so far is on the stream (shutdown)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._queue.join()

    async def close(self) -> None:
        await self.flush()
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    await publish_many(self.redis, batch)
                    break
                except (RedisError, OSError) as exc:
                    # The event is the only copy: keep it until Redis is back.
                    log.warning("publishing %d events failed (%s); retrying", len(batch), exc)
                    await asyncio.sleep(self._retry_delay)
            self.published += len(batch)
            for _ in batch:
                self._queue.task_done()


class Forwarder:
    """The dispatch hook of one account: filters and hands events to the publisher.

    :param account_id: config id of the account.
    :param channels: returns the account's channel ids (guild channel + bot DMs), read on each event.
    :param sink: where forwarded events go (`Publisher.put`).
    """

    def __init__(
        self,
        account_id: str,
        *,
        channels: Callable[[], frozenset[str]],
        sink: Callable[[GatewayEvent], None],
        clock: Clock = now_ms,
    ) -> None:
        self.account_id = account_id
        self._channels = channels
        self._sink = sink
        self._clock = clock
        self.forwarded = 0

    def __call__(self, t: str, seq: int, d: Any) -> bool:
        if not is_forwarded(t, d, self._channels()):
            return False
        self._sink(GatewayEvent(account=self.account_id, seq=seq, t=t, d=d, at=self._clock()))
        self.forwarded += 1
        return True
