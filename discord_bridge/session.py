"""One account's gateway session: a lean discord.py-self client and a hook on every raw dispatch.

The library keeps reconnecting and RESUMEs by itself. This module adds what the bridge needs on top:

- every dispatch, raw (`t`, `seq`, `d`), goes to one `on_dispatch` callback, including events the
  library has no parser for (INTERACTION_MODAL_CREATE's iframe sibling, INTERACTION_FAILURE...);
- the library's own parsing of messages and interactions is skipped: the bridge never reads its
  model objects, and 100 accounts' worth of Message objects would cost CPU for nothing;
- `expect(...)` lets a sender wait for a dispatch (a modal for its nonce, a DM with a seed);
- a bad token (401 at login, close 4004) is fatal: the session stops and reports it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from broker.config import Account
from discord_bridge.payloads import INTERACTION_EVENTS

__all__ = ["FATAL_CLOSE_CODES", "Expectation", "Session", "SessionFatal"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]
DispatchHook = Callable[[str, int, Any], None]

#: close codes after which reconnecting with the same token is pointless
FATAL_CLOSE_CODES = frozenset({4004})

#: dispatches whose library parser is skipped (the bridge only needs them raw)
_RAW_ONLY = (
    frozenset(
        {
            "MESSAGE_CREATE",
            "MESSAGE_UPDATE",
            "MESSAGE_DELETE",
            "MESSAGE_DELETE_BULK",
            "MESSAGE_ACK",
            "TYPING_START",
            "PRESENCE_UPDATE",
        }
    )
    | INTERACTION_EVENTS
)


class SessionFatal(Exception):
    """The account cannot connect with its token (401 at login, close 4004)."""


class Expectation:
    """A one-shot wait for a dispatch matching `predicate(t, d)`; register before sending."""

    def __init__(self, session: Session, predicate: Callable[[str, Any], bool]) -> None:
        self._session = session
        self.predicate = predicate
        self.future: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()

    async def wait(self, within: float) -> tuple[str, Any] | None:
        """The matching (t, d), or None after `within` seconds."""
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(self.future)
        except TimeoutError:
            return None
        finally:
            self.cancel()

    def cancel(self) -> None:
        self._session._expectations.discard(self)
        if not self.future.done():
            self.future.cancel()


class _Parsers(dict[str, Callable[[Any], None]]):
    """The library's parser table with the hook in front of every entry, known or not."""

    def __init__(self, base: dict[str, Callable[[Any], None]], session: Session) -> None:
        super().__init__()
        self._session = session
        for name, original in base.items():
            self[name] = self._raw_only(name) if name in _RAW_ONLY else self._wrap(name, original)

    def _wrap(self, name: str, original: Callable[[Any], None]) -> Callable[[Any], None]:
        session = self._session

        def parse(data: Any) -> None:
            session._on_raw(name, data)
            original(data)

        return parse

    def _raw_only(self, name: str) -> Callable[[Any], None]:
        session = self._session

        def parse(data: Any) -> None:
            session._on_raw(name, data)

        return parse

    def __missing__(self, name: str) -> Callable[[Any], None]:
        parse = self._raw_only(name)
        self[name] = parse
        return parse


class Session:
    """The gateway session of one account.

    :param account: the account (token, guild, channel).
    :param on_dispatch: called synchronously with (t, seq, d) for every dispatch, in order.
    :param on_fatal: called once with a reason when the token is rejected; the session then stops.
    :param reconnect_delay: seconds between attempts when login itself fails (network, 5xx).
    """

    def __init__(
        self,
        account: Account,
        *,
        on_dispatch: DispatchHook,
        on_fatal: Callable[[str], None] | None = None,
        reconnect_delay: float = 2.0,
    ) -> None:
        self.account = account
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
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

    def expect(self, predicate: Callable[[str, Any], bool]) -> Expectation:
        expectation = Expectation(self, predicate)
        self._expectations.add(expectation)
        return expectation

    # -- internals -----------------------------------------------------------------------------

    def _make_client(self) -> discord.Client:
        client = discord.Client(
            max_messages=None,
            chunk_guilds_at_startup=False,
            guild_subscriptions=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
        )
        state = client._connection
        state.parsers = _Parsers(state.parsers, self)
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

    def _on_raw(self, t: str, d: Any) -> None:
        client = self.client
        ws = getattr(client, "ws", None) if client is not None else None
        seq = getattr(ws, "sequence", None) or 0
        if t == "READY":
            self._on_ready(d)
        elif t == "RESUMED":
            self.ready.set()
        try:
            self._on_dispatch(t, int(seq), d)
        except Exception:
            log.exception("account %s: dispatch hook failed on %s", self.account.id, t)
        if self._expectations:
            for expectation in list(self._expectations):
                try:
                    matched = expectation.predicate(t, d)
                except Exception:
                    matched = False
                if matched and not expectation.future.done():
                    expectation.future.set_result((t, d))
                    self._expectations.discard(expectation)

    def _on_ready(self, d: Any) -> None:
        if not isinstance(d, dict):
            return
        user = d.get("user") or {}
        self.user_id = str(user.get("id")) if user.get("id") else None
        for channel in d.get("private_channels") or []:
            recipients = [str(r) for r in channel.get("recipient_ids") or []]
            recipients += [str(r.get("id")) for r in channel.get("recipients") or [] if isinstance(r, dict)]
            for recipient in recipients:
                self.dm_channels.setdefault(recipient, str(channel.get("id")))
        self.ready_at = time.monotonic()
        self.ready.set()
