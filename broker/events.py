"""The bridge -> workers event stream: raw gateway dispatches with the account and sequence number.

The bridge appends with `publish`; workers read it with a consumer group (`keys.EVENTS_GROUP`), so an
event is acknowledged only after its change was applied, and a killed worker's events are re-read.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from broker import keys
from broker.redis_server import send_commands

__all__ = ["GatewayEvent", "decode_event", "publish", "publish_many"]

_EVENTS_MAXLEN = 500_000


class GatewayEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One dispatch as the bridge received it; `d` is the raw JSON of the dispatch's `d`."""

    account: str
    seq: int
    t: str
    d: bytes
    #: epoch ms when the bridge received it
    at: int


async def publish(redis: aioredis.Redis, event: GatewayEvent) -> str:
    entry_id = await redis.xadd(
        keys.EVENTS_STREAM,
        {"account": event.account, "seq": event.seq, "t": event.t, "d": event.d, "at": event.at},
        maxlen=_EVENTS_MAXLEN,
        approximate=True,
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def publish_many(redis: aioredis.Redis, events: list[GatewayEvent]) -> None:
    """Append several events in order, in one round trip (the bridge's batched publisher)."""
    if not events:
        return
    head = ("XADD", keys.EVENTS_STREAM, "MAXLEN", "~", _EVENTS_MAXLEN, "*")
    await send_commands(
        redis,
        [(*head, "account", e.account, "seq", e.seq, "t", e.t, "d", e.d, "at", e.at) for e in events],
    )


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
