"""One account's gateway session: a lean discord.py-self client and a hook on every raw dispatch.

The library keeps reconnecting and RESUMEs by itself. This module adds what the bridge needs on top:

- every dispatch, raw (`t`, `seq`, `d` as the JSON bytes Discord sent), goes to one `on_dispatch`
  callback, including events the library has no parser for (INTERACTION_IFRAME_MODAL_CREATE,
  INTERACTION_FAILURE...). It comes through the library's documented debug event,
  ``on_socket_raw_receive`` (``enable_debug_events=True``): every gateway message, complete and
  decompressed, in arrival order. The envelope is decoded here with `d` left raw, so what the
  workers receive is Discord's own bytes, never re-encoded;
- `expect(...)` lets a sender wait for a dispatch (a modal for its nonce, a DM with a seed);
- a bad token (401 at login, close 4004) is fatal: the session stops and reports it once.

The library also parses every event into its own models, which the bridge never reads; with
member and message caches off that costs little at the pace Discord lets an account work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import discord
import msgspec

from broker.config import Account
from broker.discord_types import Ready
from broker.shutdown import cancel_and_wait

__all__ = ["FATAL_CLOSE_CODES", "DispatchHook", "Expectation", "Session", "SessionFatal"]

log = logging.getLogger(__name__)

#: (t, seq, d): the dispatch type, its gateway sequence number and its raw JSON `d`
DispatchHook = Callable[[str, int, bytes], None]

#: close codes after which reconnecting with the same token is pointless
FATAL_CLOSE_CODES = frozenset({4004})

_DISPATCH = 0


class _Envelope(msgspec.Struct, gc=False):
    """A gateway message: `d` stays raw bytes (only dispatches are read further)."""

    op: int | None = None
    t: str | None = None
    s: int | None = None
    d: msgspec.Raw = msgspec.Raw(b"null")


_envelope = msgspec.json.Decoder(_Envelope)
_ready = msgspec.json.Decoder(Ready)


class SessionFatal(Exception):
    """The account cannot connect with its token (401 at login, close 4004)."""


class Expectation:
    """A one-shot wait for a dispatch matching `predicate(t, d)`; register before sending.

    `d` is the dispatch's raw JSON; a predicate that raises (a payload it cannot read) is a no.
    """

    def __init__(self, session: Session, predicate: Callable[[str, bytes], bool]) -> None:
        self._session = session
        self.predicate = predicate
        self.future: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()

    async def wait(self, within: float) -> tuple[str, bytes] | None:
        """The matching (t, d), or None after `within` seconds."""
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(self.future)
        except TimeoutError:
            return None
        finally:
            self.cancel()

    def cancel(self) -> None:
        self._session.forget(self)
        if not self.future.done():
            self.future.cancel()


class Session:
    """The gateway session of one account.

    :param account: the account (token, guild, channel).
    :param on_dispatch: called synchronously with (t, seq, d) for every dispatch, in order.
    :param on_fatal: called once with a reason when the token is rejected; the session then stops.
    :param reconnect_delay: seconds between attempts when login itself fails (network, 5xx).
    :param on_reconnect: called on every READY or RESUMED after the first READY (a gateway
        reconnect, whether resumed or identified again).
    """

    def __init__(
        self,
        account: Account,
        *,
        on_dispatch: DispatchHook,
        on_fatal: Callable[[str], None] | None = None,
        reconnect_delay: float = 2.0,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.account = account
        self._on_reconnect = on_reconnect
        self._on_dispatch = on_dispatch
        self._on_fatal = on_fatal
        self._reconnect_delay = reconnect_delay
        self.client: discord.Client | None = None
        self.user_id: str | None = None
        #: bot application id -> DM channel id, from READY's private channels
        self.dm_channels: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.fatal: str | None = None
        self.last_error: str | None = None
        self.ready_at: float | None = None
        self._expectations: set[Expectation] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"session:{self.account.id}")

    async def close(self) -> None:
        """Stop at once: close the websocket and the HTTP sessions."""
        self._closing = True
        self.ready.clear()
        client = self.client
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        await cancel_and_wait(self._task)
        for expectation in list(self._expectations):
            expectation.cancel()

    async def wait_ready(self, within: float) -> bool:
        if self.fatal is not None:
            return False
        try:
            async with asyncio.timeout(within):
                await self.ready.wait()
        except TimeoutError:
            return False
        return self.fatal is None

    @property
    def session_id(self) -> str | None:
        """The live gateway session id (it changes after an INVALID_SESSION)."""
        client = self.client
        ws = getattr(client, "ws", None) if client is not None else None
        sid = getattr(ws, "session_id", None)
        return str(sid) if sid else None

    @property
    def closed(self) -> bool:
        return self._closing or self.fatal is not None

    def expect(self, predicate: Callable[[str, bytes], bool]) -> Expectation:
        expectation = Expectation(self, predicate)
        self._expectations.add(expectation)
        return expectation

    def forget(self, expectation: Expectation) -> None:
        self._expectations.discard(expectation)

    # -- internals -----------------------------------------------------------------------------

    def _make_client(self) -> discord.Client:
        client = discord.Client(
            enable_debug_events=True,
            max_messages=None,
            chunk_guilds_at_startup=False,
            guild_subscriptions=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
        )

        async def on_socket_raw_receive(message: str | bytes) -> None:
            self._on_message(message)

        client.event(on_socket_raw_receive)
        return client

    async def _run(self) -> None:
        while not self._closing:
            client = self._make_client()
            self.client = client
            try:
                await client.start(self.account.token, reconnect=True)
                if self._closing:
                    return
                self.last_error = "the gateway closed the connection"
            except asyncio.CancelledError:
                raise
            except discord.LoginFailure as exc:
                self._fail(f"Discord rejected the token at login (401): {exc}")
                return
            except discord.ConnectionClosed as exc:
                if exc.code in FATAL_CLOSE_CODES:
                    self._fail(f"Discord closed the gateway with {exc.code} (authentication failed)")
                    return
                self.last_error = f"gateway closed with {exc.code}"
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("account %s: connect failed: %s", self.account.id, self.last_error)
            finally:
                self.ready.clear()
                with contextlib.suppress(Exception):
                    await client.close()
            if not self._closing:
                await asyncio.sleep(self._reconnect_delay)

    def _fail(self, reason: str) -> None:
        log.error("account %s: %s", self.account.id, reason)
        self.fatal = reason
        self.ready.clear()
        if self._on_fatal is not None:
            self._on_fatal(reason)

    def _on_message(self, message: str | bytes) -> None:
        """One complete gateway message, in arrival order (the library's debug event)."""
        try:
            envelope = _envelope.decode(message)
        except msgspec.DecodeError:
            log.warning("account %s: unreadable gateway message dropped", self.account.id)
            return
        if envelope.op != _DISPATCH or not envelope.t:
            return
        t, d = envelope.t, bytes(envelope.d)
        if t in ("READY", "RESUMED"):
            if self.ready_at is not None and self._on_reconnect is not None:
                self._on_reconnect()
            if t == "READY":
                self._on_ready(d)
            else:
                self.ready.set()
        try:
            self._on_dispatch(t, envelope.s or 0, d)
        except Exception:
            log.exception("account %s: dispatch hook failed on %s", self.account.id, t)
        for expectation in list(self._expectations):
            try:
                matched = expectation.predicate(t, d)
            except Exception:
                matched = False
            if matched and not expectation.future.done():
                expectation.future.set_result((t, d))
                self._expectations.discard(expectation)

    def _on_ready(self, d: bytes) -> None:
        try:
            ready = _ready.decode(d)
        except msgspec.DecodeError:
            log.warning("account %s: unreadable READY", self.account.id)
            return
        self.user_id = ready.user.id if ready.user else None
        for channel in ready.private_channels or ():
            if not channel.id:
                continue
            recipients = [*(channel.recipient_ids or ()), *(u.id for u in channel.recipients or () if u.id)]
            for recipient in recipients:
                self.dm_channels.setdefault(recipient, channel.id)
        self.ready_at = time.monotonic()
        self.ready.set()
