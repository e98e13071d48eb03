"""The bridge -> workers event stream: raw gateway dispatches with the account and sequence number.

The bridge appends with `publish` to the stream of the account's shard (`keys.events_stream`: one
account's events stay in order in one stream); workers read every shard's stream with a consumer
group (`keys.EVENTS_GROUP`), so an event is acknowledged only after its change was applied, and a
killed worker's events are re-read.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from broker import keys

__all__ = ["GatewayEvent", "decode_event", "publish", "publish_many"]

#: length cap of each shard's stream: the total stays what the single stream had; one account sends
#: about one event a second at most, so its shard keeps hours of them
_EVENTS_MAXLEN = 500_000 // keys.SHARDS


class GatewayEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One dispatch as the bridge received it; `d` is the raw JSON of the dispatch's `d`."""

    account: str
    seq: int
    t: str
    d: bytes
    #: epoch ms when the bridge received it
    at: int


def _queue(pipe: Pipeline | aioredis.Redis, event: GatewayEvent) -> Any:
    fields = {"account": event.account, "seq": event.seq, "t": event.t, "d": event.d, "at": event.at}
    return pipe.xadd(keys.events_stream(event.account), fields, maxlen=_EVENTS_MAXLEN, approximate=True)


async def publish(redis: aioredis.Redis, event: GatewayEvent) -> str:
    """Append one event; returns its stream entry id."""
    entry_id = await _queue(redis, event)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def publish_many(redis: aioredis.Redis, events: list[GatewayEvent]) -> None:
    """Append several events in order, in one round trip (the bridge's batched publisher)."""
    if not events:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            _queue(pipe, event)
        await pipe.execute()


def decode_event(fields: dict[bytes, bytes]) -> GatewayEvent:
    """Turn a stream entry back into an event; raises ValueError on a malformed entry."""
    try:
        return GatewayEvent(
            account=fields[b"account"].decode(),
            seq=int(fields[b"seq"]),
            t=fields[b"t"].decode(),
            d=fields[b"d"],
            at=int(fields[b"at"]),
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed event entry: {exc}") from exc
