"""The HTTP/1.1 client of hook deliveries: one POST, its status, keep-alive connections per receiver.

A hook is a small POST whose answer is read only for its status. A general client (aiohttp, httpx)
spends most of its CPU per request on what hooks never use (cookies, redirects, proxies, tracing,
response objects); this one writes the request in one piece and parses the status line and the
framing headers, which makes a delivery several times cheaper for the worker. The answer's body is
read up to `RESPONSE_READ_LIMIT` and dropped; a longer one closes the connection instead.

Names are resolved by `resolver` (an aiohttp resolver: injectable, and wrapped by
`workers.hook_guard.GuardedResolver` unless private addresses are allowed), cached for
`DNS_TTL_SECONDS`, and the connection goes to the address that was checked.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from workers.hook_guard import GuardedResolver, UrlRefused

__all__ = ["RESPONSE_READ_LIMIT", "HookClient", "HookHttpError"]

#: how much of an answer is read (and ignored); a longer one is not worth keeping the connection for
RESPONSE_READ_LIMIT = 65_536
DNS_TTL_SECONDS = 30.0
#: idle connections older than this are closed rather than reused (receivers drop idle ones anyway)
IDLE_SECONDS = 30.0
#: idle connections kept per receiver
_IDLE_PER_ORIGIN = 32
_HEAD_LIMIT = 65_536
#: what stays as it is in a request target (reserved characters and escapes); the rest is %-encoded
_URL_SAFE = "/:@!$&'()*+,;=-._~%?"


class HookHttpError(Exception):
    """The request failed without an HTTP status; the message is a short reason (no URL)."""


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and not self.reader._buffer  # type: ignore[attr-defined]  # bytes nobody asked for
            and now - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()


_Origin = tuple[str, str, int]


class HookClient:
    """POSTs hooks over pooled keep-alive connections.

    :param resolver: looks names up (default: getaddrinfo in a thread).
    :param allow_private: skip the address guard (``hooks.allow_private_addresses``).
    :param tls: how https receivers are verified (default: the system's CAs, host names checked).
    """

    def __init__(
        self,
        *,
        resolver: AbstractResolver | None = None,
        allow_private: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        inner = resolver or ThreadedResolver()
        self._resolver = inner if allow_private else GuardedResolver(inner)
        #: (host, port) -> (trusted until, addresses in the resolver's order)
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._tls = tls

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST `body` to `url` and return the answer's status.

        Raises `HookHttpError` when there is no answer, and `workers.hook_guard.UrlRefused` when the
        name resolves to a refused address. A reused connection that turns out closed is retried once
        on a fresh one (deliveries are at least once anyway).
        """
        parts = urlsplit(url)
        scheme = parts.scheme
        try:
            host = (parts.hostname or "").encode("idna").decode("ascii")
        except UnicodeError:
            raise HookHttpError("the hook URL's host name cannot be encoded") from None
        port = parts.port or (443 if scheme == "https" else 80)
        origin = (scheme, host, port)
        target = quote(parts.path or "/", safe=_URL_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_URL_SAFE)
        if parts.username is not None:  # http://user:secret@host/...: Basic auth, as browsers do
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers = {**headers, "Authorization": "Basic " + base64.b64encode(userinfo).decode()}
        request = _request_bytes(target, _host_header(host, parts.port), body, headers)
        for attempt in (1, 2):
            connection = self._checkout(origin)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(scheme, host, port)
            try:
                connection.writer.write(request)
                status, keep = await _read_answer(connection.reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                connection.close()
                if reused and attempt == 1 and not isinstance(exc, ValueError):
                    continue
                raise HookHttpError(_reason(exc)) from None
            except BaseException:
                connection.close()  # cancelled or timed out halfway: the connection is out of step
                raise
            if keep:
                self._checkin(origin, connection)
            else:
                connection.close()
            return status
        raise AssertionError("unreachable")

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
        await self._resolver.close()

    def _checkout(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    def _checkin(self, origin: _Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= _IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        failure: OSError | None = None
        # in the resolver's order, as aiohttp does: "localhost" is often ::1 first, and a receiver
        # listening on 127.0.0.1 only must still be reached
        for address in await self._addresses_of(host, port):
            try:
                reader, writer = await asyncio.open_connection(
                    address, port, ssl=tls, server_hostname=host if tls else None, limit=_HEAD_LIMIT
                )
            except ssl.SSLError as exc:
                raise HookHttpError(_reason(exc)) from None  # the receiver answered: do not look further
            except OSError as exc:
                failure = exc
                continue
            return _Connection(reader, writer)
        raise HookHttpError(_reason(failure) if failure is not None else "the host has no address")

    async def _addresses_of(self, host: str, port: int) -> list[str]:
        literal = host.strip("[]")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in literal else socket.AF_INET, literal)
            return [literal]  # an IP literal, already checked by `check_url`
        except OSError:
            pass
        key = (host, port)
        cached = self._addresses.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except UrlRefused:
            raise
        except OSError as exc:
            raise HookHttpError(f"cannot resolve the host ({exc.strerror or type(exc).__name__})") from None
        addresses = list(dict.fromkeys(str(result["host"]) for result in found))
        self._addresses[key] = (now + DNS_TTL_SECONDS, addresses)
        return addresses


def _host_header(host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return f"{name}:{port}" if port else name


def _request_bytes(target: str, host: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(body)}",
        "User-Agent: mjbroker",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection reusable) of one answer, its body read and dropped.

    Raises `ValueError` on an answer that is not HTTP/1.x.
    """
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError("not an HTTP/1.x answer")
        status = int(rest[:3])
        if status >= 200 or status == 101:
            break  # 1xx are interim answers, the real one follows
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip().lower()
    keep = "close" not in fields.get("connection", "") and (
        version != "HTTP/1.0" or "keep-alive" in fields.get("connection", "")
    )
    if status in (204, 304) or status < 200:
        return status, keep and status != 101
    if "chunked" in fields.get("transfer-encoding", ""):
        return status, keep and await _drop_chunked(reader)
    if "content-length" in fields:
        length = int(fields["content-length"])
        if length > RESPONSE_READ_LIMIT:
            return status, False
        await reader.readexactly(length)
        return status, keep
    await reader.read(RESPONSE_READ_LIMIT)  # delimited by the end of the connection
    return status, False


async def _drop_chunked(reader: asyncio.StreamReader) -> bool:
    """Read a chunked body away; False (do not reuse) when it is longer than the read limit."""
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                pass
            return True
        total += size
        if total > RESPONSE_READ_LIMIT:
            return False
        await reader.readexactly(size + 2)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):  # before ValueError: a failed verification is both
        return f"TLS failed: {type(exc).__name__} ({exc.reason})"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the receiver closed the connection"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "the answer's head is too long"
    if isinstance(exc, ValueError):
        return "the answer is not HTTP"
    return type(exc).__name__
