"""The account-wide speed mode: switch it with ``/fast``, ``/relax``, ``/turbo`` before a job that needs it.

Prompt-based commands carry their mode as a flag (``--relax``), but a button press has no prompt: it
runs in the mode the account is in, which only the account-wide commands change. So before a click
the bridge switches the account when its mode differs, and holds the switch until the click has been
sent (and, for a remix or other dialog, answered): two tasks never race each other's switches.

Serialising with an `asyncio.Lock` per account is enough although several bridge processes run: an
account is held by exactly one bridge at a time (the Redis lease in `discord_bridge.leases`), and only
the bridge holding it sends its interactions. A bridge that takes an account over does not know its
mode and switches before its first click (one extra command, no job).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from broker.discord import INTERACTION_FAILED, INTERACTION_FAILURE, MESSAGE_CREATE, speed_word
from broker.discord_types import InteractionEvent
from broker.models import SpeedMode
from discord_bridge import payloads
from discord_bridge.plan import FlowFailed
from discord_bridge.rest import Rejected, RestClient
from discord_bridge.session import Session

__all__ = ["ModeSwitcher"]

log = logging.getLogger(__name__)

_event = msgspec.json.Decoder(InteractionEvent)


class ModeSwitcher:
    """Keeps one account's speed mode per bot, switching it under a lock.

    :param session: the account's gateway session.
    :param rest: the account's REST client (command catalogue, interactions).
    :param reply_timeout: seconds to wait for the bot's ``Done!`` after a mode command.
    """

    def __init__(self, session: Session, rest: RestClient, *, reply_timeout: float = 20.0) -> None:
        self.session = session
        self.rest = rest
        self.reply_timeout = reply_timeout
        self._lock = asyncio.Lock()
        #: application id -> the mode the bot last confirmed (absent: unknown)
        self.current: dict[str, SpeedMode] = {}
        #: mode commands sent (for tests and logs)
        self.switches = 0

    @asynccontextmanager
    async def holding(self, application_id: str, mode: SpeedMode | None) -> AsyncIterator[None]:
        """Run the body with the account in `mode` (None: as it is), no other switch in between."""
        if mode is None:
            yield
            return
        async with self._lock:
            if self.current.get(application_id) != mode:
                await self._switch(application_id, mode)
            yield

    async def switch(self, application_id: str, mode: SpeedMode) -> None:
        """Put the account in `mode` now (auto relax); waits for any click that holds the mode."""
        async with self._lock:
            if self.current.get(application_id) != mode:
                await self._switch(application_id, mode)

    async def _switch(self, application_id: str, mode: SpeedMode) -> None:
        word = speed_word(mode)
        try:
            command = self.rest.commands.get(application_id, word)
        except KeyError as exc:
            raise Rejected(400, f"the bot has no /{word} command to switch the account to {mode}") from exc
        sid = self.session.session_id
        if not sid:
            raise Rejected(0, "the Discord session dropped before sending; nothing was sent")
        nonce = payloads.new_nonce()
        reply = self.session.expect(
            lambda t, d: (
                t in (MESSAGE_CREATE, INTERACTION_FAILED, INTERACTION_FAILURE)
                and str(_event.decode(d).nonce) == nonce
            )
        )
        payload = payloads.slash_command(
            command,
            guild_id=self.session.account.guild_id,
            channel_id=self.session.account.channel_id,
            session_id=sid,
            nonce=nonce,
            options=[],
        )
        # Until the bot confirms, the mode is unknown: a failed switch is retried by the next task.
        self.current.pop(application_id, None)
        try:
            await self.rest.post_interaction(payload, wait=False)
        except BaseException:
            reply.cancel()
            raise
        self.switches += 1
        found = await reply.wait(self.reply_timeout)
        if found is None or found[0] != MESSAGE_CREATE:
            raise FlowFailed(
                f"could not switch the account to {mode} mode (/{word} got "
                + ("no answer" if found is None else "a failure")
                + "); nothing else was sent"
            )
        log.info("account %s: switched to %s mode", self.session.account.id, mode)
        self.current[application_id] = mode
