"""Websocket gateway: sessions, per-connection transport compression, sequencing, RESUME.

Opcodes handled: 1 HEARTBEAT (-> 11 ACK), 2 IDENTIFY (-> READY, READY_SUPPLEMENTAL), 6 RESUME
(-> replay + RESUMED, or 9 INVALID_SESSION). Sent on request: 1, 7 RECONNECT, 9 INVALID_SESSION.
Everything else the client sends (3, 4, 8, 37, ...) is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import zstandard
from aiohttp import WSMsgType, web

from mjsim.formats import ready_payload, ready_supplemental
from mjsim.state import Account, Channel, SimState

__all__ = ["Connection", "GatewayHub", "Session"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

#: Dispatches kept per session for RESUME replay.
REPLAY_BUFFER = 500

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class Connection:
    """One websocket with its own compression stream and an ordered writer task."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.request = request  #: the upgraded HTTP request; its transport carries the socket
        self.ws = ws
        self.compress = compress
        self._encoder: Callable[[bytes], bytes] | None = None
        if compress == "zlib-stream":
            zc = zlib.compressobj()
            self._encoder = lambda raw: zc.compress(raw) + zc.flush(zlib.Z_SYNC_FLUSH)
        elif compress == "zstd-stream":
            co = zstandard.ZstdCompressor().compressobj()
            self._encoder = lambda raw: co.compress(raw) + co.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())
        self.closed = False

    def send(self, frame: bytes) -> None:
        if not self.closed:
            self._queue.put_nowait(frame)

    def send_op(self, op: int, d: object = None) -> None:
        self.send(_encode({"op": op, "d": d}))

    async def _write_loop(self) -> None:
        # One writer keeps compression-stream order == wire order.
        try:
            while True:
                frame = await self._queue.get()
                if frame is None:
                    return
                if self.ws.closed:
                    continue
                if self._encoder is None:
                    await self.ws.send_str(frame.decode())
                else:
                    await self.ws.send_bytes(self._encoder(frame))
        except (ConnectionError, RuntimeError) as exc:
            log.debug("gateway writer stopped: %s", exc)

    async def close(self, code: int = 1000, message: str = "") -> None:
        """Flush what is queued, then close with ``code``."""
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer, 2)
        await self.ws.close(code=code, message=message.encode())

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure)."""
        self.closed = True
        self._queue.put_nowait(None)
        self._writer.cancel()
        # WebSocketResponse has no abort; the upgraded request's transport is the TCP connection.
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class Session:
    """A gateway session: survives its connection so that RESUME can replay what was missed."""

    def __init__(self, session_id: str, account: Account) -> None:
        self.session_id = session_id
        self.account = account
        self.conn: Connection | None = None
        self.seq = 0
        self.buffer: deque[tuple[int, bytes]] = deque(maxlen=REPLAY_BUFFER)
        self.detached_at: float | None = None

    def push(self, t: str, d_json: bytes) -> None:
        self.seq += 1
        frame = b'{"op":0,"s":%d,"t":"%s","d":%s}' % (self.seq, t.encode(), d_json)
        self.buffer.append((self.seq, frame))
        if self.conn is not None:
            self.conn.send(frame)


class GatewayHub:
    """Owns every session and routes dispatches to users, sessions or channel members."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.sessions: dict[str, Session] = {}
        self.by_user: dict[str, set[str]] = {}
        #: user id -> seconds every dispatch to that user is delayed (fault)
        self.delays: dict[str, float] = {}
        #: user ids whose next dispatch is held back until the one after it (fault)
        self.reorder: dict[str, int] = {}
        self._held: dict[str, list[tuple[str | None, str, bytes]]] = {}
        self.connections: set[Connection] = set()

    # -- routing ----------------------------------------------------------------------------------

    def dispatch_user(self, user_id: str, t: str, d: Payload) -> None:
        """Send to every session of the user (channel messages, DMs)."""
        self._route(user_id, None, t, _encode(d))

    def dispatch_session(self, account: Account, session_id: str, t: str, d: Payload) -> None:
        """Send only to one session (interaction acks, modals, ephemeral messages).

        An unknown session id (e.g. a made-up one) falls back to every session of the user,
        as Discord delivers non-modal events to the account anyway.
        """
        if session_id in self.sessions and self.sessions[session_id].account is account:
            self._route(account.user_id, session_id, t, _encode(d))
        else:
            self._route(account.user_id, None, t, _encode(d))

    def dispatch_channel(self, channel: Channel, t: str, d: Payload) -> None:
        raw = _encode(d)
        for user_id in channel.members:
            self._route(user_id, None, t, raw)

    def _route(self, user_id: str, session_id: str | None, t: str, raw: bytes) -> None:
        delay = self.delays.get(user_id)
        if delay:
            asyncio.get_running_loop().call_later(delay, self._deliver_ordered, user_id, session_id, t, raw)
        else:
            self._deliver_ordered(user_id, session_id, t, raw)

    def _deliver_ordered(self, user_id: str, session_id: str | None, t: str, raw: bytes) -> None:
        if self.reorder.get(user_id, 0) > 0 and user_id not in self._held:
            self.reorder[user_id] -= 1
            self._held[user_id] = [(session_id, t, raw)]
            # Never hold forever: flush if nothing follows.
            asyncio.get_running_loop().call_later(1.0, self._flush_held, user_id)
            return
        self._deliver(user_id, session_id, t, raw)
        self._flush_held(user_id)

    def _flush_held(self, user_id: str) -> None:
        for session_id, t, raw in self._held.pop(user_id, []):
            self._deliver(user_id, session_id, t, raw)

    def _deliver(self, user_id: str, session_id: str | None, t: str, raw: bytes) -> None:
        counters = self.state.counters
        targets = [session_id] if session_id is not None else list(self.by_user.get(user_id, ()))
        for sid in targets:
            session = self.sessions.get(sid)
            if session is None:
                continue
            session.push(t, raw)
            counters.events_sent += 1
            counters.events_by_type[t] += 1

    # -- faults -----------------------------------------------------------------------------------

    def clear_faults(self, user_id: str | None = None) -> None:
        """Stop delaying and reordering the dispatches of ``user_id``, or of everyone when None."""
        for book in (self.delays, self.reorder):
            if user_id is None:
                book.clear()
            else:
                book.pop(user_id, None)

    def user_sessions(self, user_id: str) -> list[Session]:
        return [self.sessions[s] for s in self.by_user.get(user_id, ()) if s in self.sessions]

    def send_op(self, user_id: str, op: int, d: object = None) -> int:
        n = 0
        for s in self.user_sessions(user_id):
            if s.conn is not None:
                s.conn.send_op(op, d)
                n += 1
        return n

    async def drop(self, user_id: str, *, code: int | None = None) -> int:
        """Close (``code``) or abort (no code) the user's live connections; sessions stay resumable."""
        n = 0
        for s in self.user_sessions(user_id):
            if s.conn is not None:
                conn, s.conn = s.conn, None
                s.detached_at = time.monotonic()
                if code is None:
                    conn.abort()
                else:
                    await conn.close(code)
                n += 1
        return n

    async def kill_user(self, user_id: str, code: int = 4004) -> None:
        """Close with a fatal code and forget the sessions (ban)."""
        for s in self.user_sessions(user_id):
            if s.conn is not None:
                await s.conn.close(code, "Authentication failed.")
            self._forget(s)

    def _forget(self, session: Session) -> None:
        self.sessions.pop(session.session_id, None)
        ids = self.by_user.get(session.account.user_id)
        if ids is not None:
            ids.discard(session.session_id)

    def _expire(self) -> None:
        limit = time.monotonic() - self.state.settings.resume_window
        for s in list(self.sessions.values()):
            if s.conn is None and s.detached_at is not None and s.detached_at < limit:
                self._forget(s)

    async def close_all(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.close(1001)

    # -- websocket handler ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # compress=False: curl (discord.py-self) rejects a negotiated permessage-deflate response.
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, autoping=True, compress=False)
        await ws.prepare(request)
        conn = Connection(request, ws, request.query.get("compress"))
        self.connections.add(conn)
        conn.send_op(10, {"heartbeat_interval": self.state.settings.heartbeat_interval, "_trace": ["mjsim"]})
        session: Session | None = None
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    payload = _decode(msg.data)
                    op = payload.get("op")
                except (msgspec.DecodeError, AttributeError):
                    await conn.close(4002, "Error while decoding payload.")
                    break
                if op == 1:
                    conn.send_op(11)
                elif op == 2:
                    if session is not None:
                        await conn.close(4005, "Already authenticated.")
                        break
                    session = await self._identify(conn, payload.get("d") or {})
                elif op == 6:
                    session = await self._resume(conn, payload.get("d") or {}) or session
                if conn.closed:
                    break
        finally:
            self.connections.discard(conn)
            if session is not None and session.conn is conn:
                session.conn = None
                session.detached_at = time.monotonic()
            if not conn.closed:
                await conn.close(1000)
        return ws

    async def _authenticate(self, conn: Connection, d: Payload) -> Account | None:
        """The account of IDENTIFY's or RESUME's token; an unknown or banned one closes with 4004."""
        account = self.state.account_for_token(d.get("token"))
        if account is None or account.banned:
            await conn.close(4004, "Authentication failed.")
            return None
        return account

    async def _identify(self, conn: Connection, d: Payload) -> Session | None:
        account = await self._authenticate(conn, d)
        if account is None:
            return None
        self._expire()
        self.state.counters.identifies[account.user_id] += 1
        session = Session(self.state.ids.hex(32), account)
        session.conn = conn
        self.sessions[session.session_id] = session
        self.by_user.setdefault(account.user_id, set()).add(session.session_id)
        session.push("READY", _encode(ready_payload(self.state, account, session.session_id)))
        session.push("READY_SUPPLEMENTAL", _encode(ready_supplemental()))
        log.debug("identify %s -> session %s", account.user_id, session.session_id)
        return session

    async def _resume(self, conn: Connection, d: Payload) -> Session | None:
        session = self.sessions.get(str(d.get("session_id")))
        account = await self._authenticate(conn, d)
        if account is None:
            return None
        seq = d.get("seq") or 0
        oldest = session.buffer[0][0] if session is not None and session.buffer else 1
        if session is None or session.account is not account or (seq + 1 < oldest and session.seq > seq):
            conn.send_op(9, False)
            return None
        if session.conn is not None and session.conn is not conn:
            old, session.conn = session.conn, None
            await old.close(4000, "Session resumed elsewhere.")
        for s, frame in session.buffer:
            if s > seq:
                conn.send(frame)
        session.conn = conn
        session.detached_at = None
        session.push("RESUMED", _encode({"_trace": ["mjsim"]}))
        log.debug("resumed %s from seq %s", session.session_id, seq)
        return session
