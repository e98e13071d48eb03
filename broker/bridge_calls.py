"""Synchronous calls from a web process to the bridge that holds an account (web half + wire Structs).

Protocol (Redis only; web and bridge never talk directly):

1. web builds a `BridgeCall` with a fresh `id`. For `kind="upload"` it first stores the images as
   blobs under the throwaway task id `call.id` (`TaskStore.put_blobs(call.id, {"0.png": ...})`) and
   lists their names in `blob_names`; for `kind="seed"` it sets `task_id` (a SUCCESS task with a
   `messageHash`).
2. web RPUSHes the msgspec-JSON of the call on `keys.bridge_rpc(account_id)` and BLPOPs
   `keys.bridge_rpc_reply(call.id)` for at most the call's timeout (30 s upload, 60 s seed).
3. the bridge holding the account BLPOPs its rpc list (first come, first served), drops a call
   whose `deadline_ms` (epoch ms) has passed (nobody waits for it any more), runs it, and LPUSHes
   one `BridgeReply` JSON on `keys.bridge_rpc_reply(call.id)` with a short expiry (e.g. 60 s):
   upload -> `result` = the attachment URLs in `blob_names` order; seed -> `result` = the seed string;
   refresh (from a worker: `workers.image_copy`) -> `result` = fresh links for the expired CDN
   links in `urls`, in order (Discord's ``POST /attachments/refresh-urls``).
   On failure `ok=False` and `error` says why in plain words (never a token).
4. A timeout means no bridge holds the account or it is stuck: web answers code 9
   ("no bridge answered for account X").
"""

from __future__ import annotations

import secrets
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from broker import keys
from broker.clock import now_ms
from broker.errors import BridgeUnavailable

__all__ = ["BridgeCall", "BridgeReply", "call_bridge", "new_call"]

UPLOAD_TIMEOUT_SECONDS = 30.0
SEED_TIMEOUT_SECONDS = 60.0
_BLOCK_SECONDS = 2.0


class BridgeCall(msgspec.Struct, kw_only=True):
    """A request from web to the bridge holding an account."""

    id: str
    kind: Literal["upload", "seed", "cancel", "refresh"]
    task_id: str | None = None
    blob_names: list[str] = msgspec.field(default_factory=list)
    #: expired CDN links to refresh (kind "refresh")
    urls: list[str] = msgspec.field(default_factory=list)
    #: epoch ms after which nobody waits for the answer
    deadline_ms: int


class BridgeReply(msgspec.Struct, kw_only=True):
    """The bridge's answer to one `BridgeCall`."""

    id: str
    ok: bool
    result: list[str] | str | None = None
    error: str | None = None


_call_encoder = msgspec.json.Encoder()
_reply_decoder = msgspec.json.Decoder(BridgeReply)


def new_call(
    kind: Literal["upload", "seed", "cancel", "refresh"],
    *,
    task_id: str | None = None,
    blob_names: list[str] | None = None,
    urls: list[str] | None = None,
    timeout: float | None = None,
) -> BridgeCall:
    wait = (
        timeout
        if timeout is not None
        else (UPLOAD_TIMEOUT_SECONDS if kind == "upload" else SEED_TIMEOUT_SECONDS)
    )
    return BridgeCall(
        id=f"rpc{secrets.token_hex(8)}",
        kind=kind,
        task_id=task_id,
        blob_names=blob_names or [],
        urls=urls or [],
        deadline_ms=now_ms() + int(wait * 1000),
    )


async def call_bridge(redis: aioredis.Redis, account_id: str, call: BridgeCall) -> list[str] | str | None:
    """Send `call` to the bridge holding `account_id` and wait for its reply until the deadline.

    Raises `BridgeUnavailable` (code 9) on timeout or when the bridge reports a failure.
    """
    await redis.rpush(keys.bridge_rpc(account_id), _call_encoder.encode(call))
    waited_s = max(1, round((call.deadline_ms - now_ms()) / 1000))
    popped = None
    # Short blocks, each well inside the client's read timeout (see broker.redis_client).
    while popped is None and now_ms() < call.deadline_ms:
        block_s = min(_BLOCK_SECONDS, max((call.deadline_ms - now_ms()) / 1000, 0.01))
        popped = await redis.blpop([keys.bridge_rpc_reply(call.id)], timeout=block_s)
    if popped is None:
        raise BridgeUnavailable(f"no bridge answered for account {account_id} within {waited_s}s")
    try:
        reply = _reply_decoder.decode(popped[1])
    except msgspec.DecodeError as exc:
        raise BridgeUnavailable(f"the bridge for account {account_id} sent an unreadable reply") from exc
    if not reply.ok:
        raise BridgeUnavailable(
            f"the bridge for account {account_id} failed: {reply.error or 'no reason given'}"
        )
    return reply.result
