"""Consumer-group loops over Redis streams: the worker's hot path, read as soon as an entry arrives.

`StreamConsumer` reads a stream with ``XREADGROUP ... BLOCK`` under a consumer name unique to the
process, hands each batch to a handler and ``XACK``s it only after the handler returned (in the
same round trip as the next read), so an entry is never lost: entries left pending by a killed
process are taken over with ``XAUTOCLAIM`` once they have been idle for `claim_idle_ms` (at start,
then periodically). A consumer's own pending entries (a batch a Redis outage interrupted, or one a
restarted worker of the same process left) are read again first, at start and after every outage,
rather than after `claim_idle_ms`: a task must not time out while its event waits for the claim.

`EventHandler` is the handler of the gateway-event stream. Events of one job (one interaction, see
`lane_of`) are applied in stream order, different jobs concurrently: one account's lane alone could
not keep up with a busy account. A message that names no interaction gets a lane of its own, and a
job's final message may then be applied before the start that bound its task: on the concurrent pass
only ids match (nonce, message, interaction), and an event that matched nothing is tried again with
every key (reference, hash, prompt), in stream order, once the rest of its batch is applied. Its
start is in the same or an earlier batch, since the stream is in gateway order. Other races between
lanes are safe: the store's compare-and-set and state machine keep progress from going back and a
terminal state final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.events import GatewayEvent, decode_event
from broker.shutdown import cancel_and_wait
from workers.apply import Applier

__all__ = ["Entry", "EventHandler", "StreamConsumer"]

log = logging.getLogger(__name__)

#: one stream entry: (entry id, fields)
Entry = tuple[bytes, dict[bytes, bytes]]
Handle = Callable[[Sequence[Entry]], Awaitable[None]]
#: errors that mean "Redis is unreachable": retry later and do not acknowledge
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


class StreamConsumer:
    """Reads one stream in one consumer group and acknowledges what the handler finished.

    :param redis: the process's client.
    :param stream: stream key.
    :param group: consumer group (created with MKSTREAM at id 0 when missing).
    :param name: this consumer's name, unique per process.
    :param handle: async callable taking a batch of entries; raising leaves the batch pending.
    :param count: largest batch.
    :param block_ms: how long one XREADGROUP waits for new entries.
    :param claim_idle_ms: pending entries idle this long belong to a dead consumer and are taken over.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream: str,
        group: str,
        name: str,
        handle: Handle,
        count: int = 200,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.name = name
        self.handle = handle
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.processed = 0
        #: ids of handled entries, acknowledged with the next read
        self._done: list[bytes] = []
        #: read this consumer's own pending entries (id 0) before new ones (">")
        self._own_pending = True

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Consume until cancelled; Redis outages are waited out."""
        await self.ensure_group()
        next_claim = 0.0
        try:
            while True:
                try:
                    if time.monotonic() >= next_claim:
                        await self.claim_abandoned()
                        next_claim = time.monotonic() + max(self.claim_idle_ms / 1000 / 2, 0.5)
                    for _stream, entries in await self._ack_and_read() or ():
                        await self._process(entries)
                except TRANSIENT as exc:
                    log.warning("%s: Redis unavailable (%s); retrying", self.stream, exc)
                    self._own_pending = True  # what the outage interrupted comes first
                    await asyncio.sleep(0.5)
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self.ensure_group()  # the stream was deleted (FLUSHALL): start again
        finally:
            if self._done:  # do not leave finished entries for the claim delay
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await self.redis.xack(self.stream, self.group, *self._done)

    async def _ack_and_read(self) -> Any:
        """Acknowledge the entries handled so far and read the next ones, in one round trip."""
        own = self._own_pending
        async with self.redis.pipeline(transaction=False) as pipe:
            if self._done:
                pipe.xack(self.stream, self.group, *self._done)
            streams = {self.stream: "0" if own else ">"}
            pipe.xreadgroup(self.group, self.name, streams, count=self.count, block=self.block_ms)
            *_acked, response = await pipe.execute()
        self._done = []
        if not own:
            return response
        entries = [e for _stream, batch in response or () for e in batch]
        if not entries:
            self._own_pending = False
            return None
        # Entries trimmed from the stream meanwhile come back without fields: only acknowledge them.
        self._done = [entry_id for entry_id, fields in entries if fields is None]
        kept = [(entry_id, fields) for entry_id, fields in entries if fields is not None]
        return [(self.stream, kept)] if kept else None

    async def claim_abandoned(self) -> int:
        """Take over entries a dead consumer read but never acknowledged; returns how many."""
        start: bytes | str = "0-0"
        total = 0
        while True:
            reply = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.name,
                min_idle_time=self.claim_idle_ms,
                start_id=start,
                count=self.count,
            )
            start, entries = reply[0], [e for e in reply[1] if e and e[1] is not None]
            if entries:
                log.info("%s: took over %d pending entries", self.stream, len(entries))
                await self._process(entries)
                total += len(entries)
            if start in (b"0-0", "0-0"):
                return total

    async def _process(self, entries: Sequence[Entry]) -> None:
        """Handle a batch; it is acknowledged with the next read (a round trip saved per batch)."""
        if not entries:
            return
        await self.handle(entries)
        self._done.extend(entry_id for entry_id, _ in entries)
        self.processed += len(entries)


class _Ref(msgspec.Struct):
    id: str | None = None


class _LaneKey(msgspec.Struct):
    id: str | None = None
    nonce: str | None = None
    interaction_metadata: _Ref | None = None
    interaction: _Ref | None = None


_lane_key = msgspec.json.Decoder(_LaneKey)


def lane_of(event: GatewayEvent) -> tuple[str, str]:
    """The ordering key of an event: the interaction that started its job, else its message id.

    Every event of one job names the same interaction (the acks by their `id`, the bot's messages
    in `interaction_metadata`), so a job's start, progress and final stay in order in one lane.
    """
    try:
        ids = _lane_key.decode(event.d)
    except msgspec.DecodeError:
        return (event.account, "")
    if not event.t.startswith("MESSAGE_"):
        return (event.account, ids.id or ids.nonce or "")
    for ref in (ids.interaction_metadata, ids.interaction):
        if ref is not None and ref.id:
            return (event.account, ref.id)
    return (event.account, ids.id or "")


class EventHandler:
    """Applies a batch of gateway events: per job in stream order, jobs concurrently."""

    def __init__(self, applier: Applier) -> None:
        self.applier = applier

    async def __call__(self, entries: Sequence[Entry]) -> None:
        lanes: dict[tuple[str, str], list[GatewayEvent]] = {}
        for entry_id, fields in entries:
            try:
                event = decode_event(fields)
            except ValueError as exc:
                log.warning("dropping event %r: %s", entry_id, exc)
                continue
            lanes.setdefault(lane_of(event), []).append(event)
        if len(lanes) == 1:
            retry = await self._lane(next(iter(lanes.values())), last_try=False)
        else:
            results = await asyncio.gather(*(self._lane(events, last_try=False) for events in lanes.values()))
            retry = sorted((e for missed in results for e in missed), key=lambda e: e.seq)
        if retry:
            await self._lane(retry, last_try=True)

    async def _lane(self, events: list[GatewayEvent], *, last_try: bool) -> list[GatewayEvent]:
        """Apply in order; returns the events that matched no task (to try again)."""
        unmatched: list[GatewayEvent] = []
        for event in events:
            try:
                outcome = await self.applier.apply(event, last_try=last_try)
            except TRANSIENT:
                raise  # leave the batch pending; it is retried after the claim delay
            except Exception:
                # A bug or an impossible payload must not block the stream forever.
                log.exception("event %s #%d of account %s failed", event.t, event.seq, event.account)
                continue
            if outcome.unmatched:
                unmatched.append(event)
        return unmatched


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel a consumer task and wait for it."""
    await cancel_and_wait(task)
