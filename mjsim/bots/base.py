"""Shared bot plumbing: the interaction context, acks, and message create/update/delete."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from mjsim.apps import BotApp
from mjsim.faults import FaultBook
from mjsim.formats import iframe_modal, interaction_refs, message
from mjsim.gateway import GatewayHub
from mjsim.state import Account, Channel, Mode, SimState

__all__ = ["BotRuntime", "InteractionCtx"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


@dataclass
class InteractionCtx:
    """One accepted POST /interactions, as the bot sees it."""

    account: Account
    bot: BotApp
    session_id: str
    nonce: str
    interaction_id: str
    channel: Channel
    type: int  #: 2 command, 3 component, 5 modal submit
    name: str  #: command name ("" for clicks and modal submits)
    message_id: str | None = None  #: the clicked message (type 3)
    #: the account's speed mode when the interaction arrived (a click runs in it)
    account_mode: Mode | None = None

    @property
    def guild_id(self) -> str | None:
        return self.channel.guild_id

    @property
    def reply_type(self) -> int:
        """Message type of a reply: 20 answers a slash command, 19 a click or a modal submit."""
        return 20 if self.type == 2 else 19

    def ids(self) -> Payload:
        """The body of INTERACTION_CREATE / _SUCCESS / _FAILED for this interaction."""
        return {"id": self.interaction_id, "nonce": self.nonce}

    def refs(self) -> Payload:
        return interaction_refs(
            interaction_id=self.interaction_id,
            type_=self.type,
            name=self.name,
            user=self.account.user(),
            message_id=self.message_id,
        )


class BotRuntime:
    """What every bot needs: world state, gateway routing, faults, and task bookkeeping."""

    def __init__(self, state: SimState, hub: GatewayHub, faults: FaultBook) -> None:
        self.state = state
        self.hub = hub
        self.faults = faults
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bot task failed", exc_info=task.exception())

    async def cancel_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` scaled by the speed setting (0 = just yield)."""
        delay = seconds * self.state.settings.speed
        await asyncio.sleep(delay if delay > 0 else 0)

    # -- interaction acks -------------------------------------------------------------------------

    async def ack(
        self, ctx: InteractionCtx, *, success: bool = True, failed_event: str = "INTERACTION_FAILED"
    ) -> None:
        """INTERACTION_CREATE then INTERACTION_SUCCESS (or the failure event), session-scoped.

        The delay lets the client's POST return first: discord.py-self only starts waiting for
        INTERACTION_SUCCESS after that.
        """
        delay = self.state.settings.ack_delay
        await asyncio.sleep(delay)
        ids = ctx.ids()
        self.hub.dispatch_session(ctx.account, ctx.session_id, "INTERACTION_CREATE", ids)
        self.hub.dispatch_session(
            ctx.account, ctx.session_id, "INTERACTION_SUCCESS" if success else failed_event, ids
        )

    def iframe_modal(self, ctx: InteractionCtx, *, token: str, title: str, iframe_path: str) -> None:
        """INTERACTION_IFRAME_MODAL_CREATE ``MJ::iframe::<token>`` to the invoking session."""
        self.hub.dispatch_session(
            ctx.account,
            ctx.session_id,
            "INTERACTION_IFRAME_MODAL_CREATE",
            iframe_modal(
                interaction_id=ctx.interaction_id,
                nonce=ctx.nonce,
                channel_id=ctx.channel.id,
                bot=ctx.bot,
                token=token,
                title=title,
                iframe_path=iframe_path,
            ),
        )

    # -- messages ---------------------------------------------------------------------------------

    def new_message(self, ctx: InteractionCtx, **kwargs: Any) -> Payload:
        return message(
            id=self.state.ids.snowflake(),
            channel_id=ctx.channel.id,
            guild_id=ctx.guild_id,
            author=ctx.bot.user(),
            application_id=ctx.bot.id,
            mentions=[ctx.account.user()],
            **kwargs,
        )

    def create(self, channel: Channel, msg: Payload) -> None:
        channel.remember(msg)
        self.hub.dispatch_channel(channel, "MESSAGE_CREATE", msg)

    def update(self, channel: Channel, msg: Payload) -> None:
        if msg["id"] in channel.messages:
            channel.remember(msg)
        self.hub.dispatch_channel(channel, "MESSAGE_UPDATE", msg)

    def delete(self, channel: Channel, message_id: str) -> None:
        channel.messages.pop(message_id, None)
        d: Payload = {"id": message_id, "channel_id": channel.id}
        if channel.guild_id is not None:
            d["guild_id"] = channel.guild_id
        self.hub.dispatch_channel(channel, "MESSAGE_DELETE", d)

    def ephemeral(self, ctx: InteractionCtx, msg: Payload) -> None:
        """Ephemeral replies exist only for the invoking session and are not stored in the channel."""
        msg["flags"] = msg.get("flags", 0) | 64
        self.hub.dispatch_session(ctx.account, ctx.session_id, "MESSAGE_CREATE", msg)
        self.state.ephemeral_messages[msg["id"]] = msg

    def ephemeral_update(self, ctx: InteractionCtx, msg: Payload) -> None:
        self.hub.dispatch_session(ctx.account, ctx.session_id, "MESSAGE_UPDATE", msg)
        self.state.ephemeral_messages[msg["id"]] = msg
