"""Consumer-group loops over Redis streams: the worker's hot path, read as soon as an entry arrives.

`StreamConsumer` reads a sharded stream (one stream per shard, `broker.keys`) with
``XREADGROUP ... BLOCK`` under a consumer name unique to the process, hands each batch to a handler
and ``XACK``s it only after the handler returned (in the same round trip as the next read), so an
entry is never lost: entries left pending by a killed process are taken over with ``XAUTOCLAIM``
once they have been idle for `claim_idle_ms` (at start, then periodically). A consumer's own
pending entries (a batch a Redis outage interrupted, or one a restarted worker of the same process
left) are read again first, at start and after every outage, rather than after `claim_idle_ms`: a
task must not time out while its event waits for the claim.

The shards' streams are read in groups, one XREADGROUP per group (`broker.keys.read_groups`): on one
server a single call names every shard's stream, as one stream was read before the shards; on a
cluster, which refuses a call across slots, each stream has a loop of its own. Claims and acks are
per stream, in one pipeline per group.

`EventHandler` is the handler of the gateway-event stream. Events of one job (one interaction, see
`lane_of`) are applied in stream order, different jobs concurrently: one account's lane alone could
not keep up with a busy account. A message that names no interaction gets a lane of its own, and a
job's final message may then be applied before the start that bound its task: on the concurrent pass
only ids match (nonce, message, interaction), and an event that matched nothing is tried again with
every key (reference, hash, prompt), in stream order, once the rest of its batch is applied. Its
start is in the same or an earlier batch, since an account's events are in gateway order in its
shard's stream. Other races between lanes are safe: the store's compare-and-set and state machine
keep progress from going back and a terminal state final.
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
#: what a read or claim returned: each stream's entries
_Batch = list[tuple[str, list[Entry]]]


class _Reader:
    """The streams one XREADGROUP reads, and that call's bookkeeping."""

    def __init__(self, streams: Sequence[str]) -> None:
        self.streams = list(streams)
        #: ids of handled entries by stream, acknowledged with the next read
        self.done: dict[str, list[bytes]] = {}
        #: read this consumer's own pending entries (id 0) before new ones (">")
        self.own_pending = True


class StreamConsumer:
    """Reads a stream's shards in one consumer group and acknowledges what the handler finished.

    :param redis: the process's client.
    :param reads: the stream keys, in groups: each group is read by one XREADGROUP (see
        `broker.keys.read_groups`), every group by a loop of its own.
    :param group: consumer group (created with MKSTREAM at id 0 on every stream when missing).
    :param name: this consumer's name, unique per process.
    :param handle: async callable taking a batch of entries; raising leaves the batch pending. The
        loops of several groups call it concurrently.
    :param count: largest batch per stream.
    :param block_ms: how long one XREADGROUP waits for new entries.
    :param claim_idle_ms: pending entries idle this long belong to a dead consumer and are taken over.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        reads: Sequence[Sequence[str]],
        group: str,
        name: str,
        handle: Handle,
        count: int = 200,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
    ) -> None:
        if not reads or not all(reads):
            raise ValueError("a consumer reads at least one stream in every group")
        self.redis = redis
        self.reads = [list(streams) for streams in reads]
        self.streams = [stream for streams in self.reads for stream in streams]
        self.group = group
        self.name = name
        self.handle = handle
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.processed = 0

    async def ensure_group(self) -> None:
        """Create the consumer group on every stream that lacks it."""
        for streams in self.reads:  # one pipeline per group: a cluster routes each by its slot
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xgroup_create(stream, self.group, id="0", mkstream=True)
                replies = await pipe.execute(raise_on_error=False)
            for reply in replies:
                if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                    raise reply

    async def run(self) -> None:
        """Consume until cancelled; Redis outages are waited out."""
        await self.ensure_group()
        readers = [_Reader(streams) for streams in self.reads]
        if len(readers) == 1:
            await self._loop(readers[0])
            return
        async with asyncio.TaskGroup() as loops:
            for reader in readers:
                loops.create_task(self._loop(reader))

    async def _loop(self, reader: _Reader) -> None:
        next_claim = 0.0
        try:
            while True:
                try:
                    if time.monotonic() >= next_claim:
                        await self._claim(reader)
                        next_claim = time.monotonic() + max(self.claim_idle_ms / 1000 / 2, 0.5)
                    batch = await self._ack_and_read(reader)
                    if batch:
                        await self._process(reader, batch)
                except TRANSIENT as exc:
                    log.warning("%s: Redis unavailable (%s); retrying", self.group, exc)
                    reader.own_pending = True  # what the outage interrupted comes first
                    await asyncio.sleep(0.5)
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self.ensure_group()  # a stream was deleted (FLUSHALL): start again
        finally:
            if reader.done:  # do not leave finished entries for the claim delay
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        async with self.redis.pipeline(transaction=False) as pipe:
                            self._queue_acks(pipe, reader)
                            await pipe.execute()

    def _queue_acks(self, pipe: Any, reader: _Reader) -> None:
        for stream, ids in reader.done.items():
            pipe.xack(stream, self.group, *ids)
        reader.done = {}

    async def _ack_and_read(self, reader: _Reader) -> _Batch:
        """Acknowledge the entries handled so far and read the next ones, in one round trip."""
        own = reader.own_pending
        done = reader.done
        async with self.redis.pipeline(transaction=False) as pipe:
            self._queue_acks(pipe, reader)
            streams = dict.fromkeys(reader.streams, "0" if own else ">")
            pipe.xreadgroup(self.group, self.name, streams, count=self.count, block=self.block_ms)
            try:
                *_acked, response = await pipe.execute()
            except BaseException:
                reader.done = done  # not acknowledged: again with the next read
                raise
        batch: _Batch = [(_text(stream), entries) for stream, entries in response or ()]
        if not own:
            return batch
        if not any(entries for _stream, entries in batch):
            reader.own_pending = False
            return []
        # Entries trimmed from the stream meanwhile come back without fields: only acknowledge them.
        for stream, entries in batch:
            trimmed = [entry_id for entry_id, fields in entries if fields is None]
            if trimmed:
                reader.done.setdefault(stream, []).extend(trimmed)
        return [(stream, [e for e in entries if e[1] is not None]) for stream, entries in batch]

    async def _claim(self, reader: _Reader) -> int:
        """Take over entries a dead consumer read but never acknowledged, on the streams of one read (one
        XAUTOCLAIM per stream per round trip); returns how many."""
        cursors: dict[str, bytes | str] = dict.fromkeys(reader.streams, "0-0")
        total = 0
        while cursors:
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream, start in cursors.items():
                    pipe.xautoclaim(
                        stream,
                        self.group,
                        self.name,
                        min_idle_time=self.claim_idle_ms,
                        start_id=start,
                        count=self.count,
                    )
                replies = await pipe.execute()
            batch: _Batch = []
            following: dict[str, bytes | str] = {}
            for stream, reply in zip(cursors, replies, strict=True):
                entries = [e for e in reply[1] if e and e[1] is not None]
                if entries:
                    log.info("%s: took over %d pending entries", stream, len(entries))
                    batch.append((stream, entries))
                if reply[0] not in (b"0-0", "0-0"):
                    following[stream] = reply[0]
            total += await self._process(reader, batch)
            cursors = following
        return total

    async def _process(self, reader: _Reader, batch: _Batch) -> int:
        """Handle a batch (every stream's entries in one call); it is acknowledged with the next
        read (a round trip saved per batch). Returns how many entries it held."""
        entries = [entry for _stream, of_stream in batch for entry in of_stream]
        if not entries:
            return 0
        await self.handle(entries)
        for stream, of_stream in batch:
            if of_stream:
                reader.done.setdefault(stream, []).extend(entry_id for entry_id, _ in of_stream)
        self.processed += len(entries)
        return len(entries)


def _text(stream: bytes | str) -> str:
    return stream.decode() if isinstance(stream, bytes) else stream


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
