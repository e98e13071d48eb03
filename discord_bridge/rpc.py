"""The bridge half of `broker.bridge_calls`: uploads and the image seed, for the accounts it holds.

web RPUSHes a `BridgeCall` on `keys.bridge_rpc(account)`; the account's inbox pops it
(`discord_bridge.inbox`) and hands it to `RpcServer.serve`, which runs it on the account's session
and LPUSHes one `BridgeReply` on `keys.bridge_rpc_reply(call.id)`.

- upload: the call's blobs (stored under the call id) -> CDN URLs, in `blob_names` order.
- cancel: "Cancel Job" pressed on a running task's message (`discord_bridge.cancel`).
- seed: ✉️ reaction on the task's message; the bot DMs `**Job ID**: <hash>` / `**seed** <digits>`;
  the seed is replied and written on the task (a SUCCESS task may still learn its seed).
- refresh: expired CDN links -> fresh ones, through the account's own REST client (a worker that
  copies a result into the image store asks; it holds no Discord session of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import msgspec
import redis.asyncio as aioredis

from broker import keys
from broker.bridge_calls import BridgeCall, BridgeReply
from broker.clock import Clock, now_ms
from broker.discord import BOT_IDS, MESSAGE_CREATE, application_id_for
from broker.discord_types import Message
from broker.models import Task
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.cancel import press_cancel
from discord_bridge.rest import DiscordError, RestClient
from discord_bridge.session import Session

__all__ = ["RpcServer", "parse_seed"]

log = logging.getLogger(__name__)

_ENVELOPE = "%E2%9C%89%EF%B8%8F"
_SEED = re.compile(r"\*\*seed\*\*\s*:?\s*(\d+)", re.IGNORECASE)
_REPLY_TTL_SECONDS = 60

_decode_call = msgspec.json.Decoder(BridgeCall).decode
_message = msgspec.json.Decoder(Message)
_encode = msgspec.json.Encoder().encode


def parse_seed(content: str, job_hash: str | None) -> str | None:
    """The seed in a ✉️ DM, if the DM is about `job_hash` (any job when the hash is unknown)."""
    match = _SEED.search(content)
    if match is None:
        return None
    if job_hash and job_hash not in content:
        return None
    return match.group(1)


class RpcServer:
    """Answers one account's bridge calls.

    :param account_id: the account.
    :param redis: Redis client.
    :param store: task store (blobs, the seed write).
    :param session: the account's session (waits for the seed DM).
    :param rest: the account's REST client.
    :param seed_timeout: seconds to wait for the bot's DM.
    """

    def __init__(
        self,
        account_id: str,
        *,
        redis: aioredis.Redis,
        store: TaskStore,
        session: Session,
        rest: RestClient,
        seed_timeout: float = 45.0,
        clock: Clock = now_ms,
    ) -> None:
        self.account_id = account_id
        self.redis = redis
        self.store = store
        self.session = session
        self.rest = rest
        self.seed_timeout = seed_timeout
        self.clock = clock
        self._running: set[asyncio.Task[None]] = set()

    def serve(self, raw: bytes) -> None:
        """Start answering one call (the JSON web pushed); a call nobody waits for is dropped."""
        try:
            call = _decode_call(raw)
        except msgspec.DecodeError:
            log.warning("account %s: unreadable bridge call dropped", self.account_id)
            return
        if call.deadline_ms < self.clock():
            return
        job = asyncio.create_task(self._serve(call))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def close(self) -> None:
        await cancel_and_wait(*self._running)

    async def _serve(self, call: BridgeCall) -> None:
        try:
            if not await self.session.wait_ready(10.0):
                raise DiscordError(f"account {self.account_id} is not connected to Discord")
            result: list[str] | str
            if call.kind == "upload":
                result = await self._upload(call)
            elif call.kind == "cancel":
                result = await press_cancel(
                    call.task_id or "", store=self.store, session=self.session, rest=self.rest
                )
            elif call.kind == "refresh":
                result = await self.rest.refresh_urls(call.urls)
            else:
                result = await self._seed(call)
            reply = BridgeReply(id=call.id, ok=True, result=result)
        except DiscordError as exc:
            reply = BridgeReply(id=call.id, ok=False, error=exc.reason)
        except Exception as exc:
            log.exception("account %s: bridge call %s failed", self.account_id, call.id)
            reply = BridgeReply(id=call.id, ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
        key = keys.bridge_rpc_reply(call.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, _encode(reply))
            pipe.expire(key, _REPLY_TTL_SECONDS)
            await pipe.execute()

    async def _upload(self, call: BridgeCall) -> list[str]:
        files: list[tuple[str, bytes]] = []
        for name in call.blob_names:
            data = await self.store.get_blob(call.id, name)
            if data is None:
                raise DiscordError(f"image {name} of the upload is missing")
            files.append((name, data))
        return await self.rest.upload_to_cdn(files)

    async def _seed(self, call: BridgeCall) -> str:
        task = await self.store.get(call.task_id or "")
        if task is None:
            raise DiscordError(f"task {call.task_id} not found")
        if task.seed:
            return task.seed
        message_id = task.properties.message_id
        if not message_id:
            raise DiscordError(f"task {task.id} has no Discord message to react on")
        job_hash = task.properties.message_hash
        bot_id = application_id_for(task.bot_type)

        def is_seed_dm(t: str, d: bytes) -> bool:
            if t != MESSAGE_CREATE:
                return False
            message = _message.decode(d)
            if message.author is None or message.author.id not in BOT_IDS or message.guild_id:
                return False
            return parse_seed(message.content or "", job_hash) is not None

        expectation = self.session.expect(is_seed_dm)
        try:
            await self.rest.put_reaction(self.rest.account.channel_id, message_id, _ENVELOPE)
        except BaseException:
            expectation.cancel()
            raise
        found = await expectation.wait(self.seed_timeout)
        if found is None:
            raise DiscordError(f"the {bot_id} bot sent no seed DM within {self.seed_timeout:.0f}s")
        seed = parse_seed(_message.decode(found[1]).content or "", job_hash) or ""

        def with_seed(current: Task) -> Task | None:
            if current.seed == seed:
                return None
            return msgspec.structs.replace(current, seed=seed)

        with contextlib.suppress(Exception):
            await self.store.update(task.id, with_seed)
        return seed
