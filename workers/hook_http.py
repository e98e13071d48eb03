"""The HTTP side of a hook delivery: one POST through aiohttp, its status or a short reason.

`HookPoster` owns the worker's aiohttp session; `workers.delivery` decides what to send and when.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from broker.config import HookSettings
from broker.url_guard import UrlGuard, UrlRefused

__all__ = ["RESPONSE_READ_LIMIT", "HookPoster"]

#: how much of an answer is read (and ignored); a longer one is not worth keeping the connection for
RESPONSE_READ_LIMIT = 65_536
DNS_TTL_SECONDS = 30
#: idle connections older than this are closed rather than reused (receivers drop idle ones anyway)
IDLE_SECONDS = 30.0
#: RFC 8305's connection attempt delay: the next address of a name is tried this long after the last
HAPPY_EYEBALLS_DELAY_S = 0.25
#: what stays as it is in a request target (reserved characters and escapes); the rest is %-encoded
_URL_SAFE = "/:@!$&'()*+,;=-._~%?"


def _encode(url: str) -> URL:
    """`url` as sent: path and query %-encoded as browsers do (escapes kept), the host in IDNA."""
    parts = urlsplit(url)
    origin = str(URL(urlunsplit((parts.scheme, parts.netloc, "", "", ""))))  # yarl: IDNA, userinfo
    target = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_URL_SAFE)
    # encoded: sent as written here (yarl would otherwise normalise escapes, %2F to / in a query)
    return URL(origin + target, encoded=True)


def _os_reason(error: OSError) -> str:
    if type(error) is OSError and error.errno:  # no subclass for this errno: name the errno
        return errno.errorcode.get(error.errno, "OSError")
    return type(error).__name__


def _dns_reason(error: OSError) -> str:
    return f"cannot resolve the host ({error.strerror or _os_reason(error)})"


def _tls_reason(error: BaseException) -> str:
    return f"TLS failed: {type(error).__name__} ({getattr(error, 'reason', None) or 'handshake'})"


def _reason(exc: Exception) -> str:
    """A short reason for a request that got no status; never aiohttp's message (it holds the URL)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _tls_reason(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return _tls_reason(exc.os_error)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the proxy answered HTTP {exc.status}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the proxy ({_os_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _dns_reason(exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({_os_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "timed out connecting"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the receiver closed the connection"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "the answer is not HTTP"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    return type(exc).__name__


class HookPoster:
    """POSTs hooks over one aiohttp session (keep-alive connections per receiver).

    :param settings: hooks settings (connect timeout, proxy).
    :param guard: which addresses receivers may have (`broker.url_guard`; default: no exception,
        or none at all with the deprecated ``hooks.allow_private_addresses``).
    :param resolver: looks names up (default: getaddrinfo in a thread); wrapped in the guard's
        `broker.url_guard.GuardedResolver`.
    :param tls: how https receivers are verified (default: the system's CAs, host names checked).

    How each rule is kept, through aiohttp's public API:

    - **Guard**: `UrlGuard.check_url` first (scheme, metadata names, IP literals, which aiohttp
      does not resolve); then the guarded resolver is the connector's, so the addresses checked are the ones
      connected to, and its DNS cache holds checked answers only (a rebinding name is refused when
      it re-resolves).
    - **No redirects** (``allow_redirects=False``); no cookies kept (`aiohttp.DummyCookieJar`); no
      netrc and no environment read by aiohttp (``trust_env=False``: netrc would hand the operator's
      credentials to receivers).
    - **Size cap**: the answer is read up to `RESPONSE_READ_LIMIT` bytes so the connection can be
      reused; past that the response is closed, connection and all. aiohttp stops reading from the
      socket once about two ``read_bufsize`` are buffered, so a longer body is never read in full.
    - **Per receiver**: `workers.receiver_slots`, above the client (a cap with a short queue).
    - **TLS**: the system's CAs and the host name checked (`ssl.create_default_context`).
    - **Basic auth**: aiohttp sends ``user:password@`` of the URL as an Authorization header.
    - **Non-ASCII**: paths and queries are %-encoded as UTF-8 (`_encode`), host names by yarl (IDNA).
    - **Connecting**: the addresses of a name are raced as RFC 8305 says: the next one is started
      `HAPPY_EYEBALLS_DELAY_S` after the previous one (at once when it fails), the earlier attempts
      still running, and the first connection wins. ``hooks.connect_timeout_seconds`` bounds each
      race, TLS handshake included (aiohttp's ``sock_connect``); when it runs out the first address
      is dropped and the rest raced again. So an address that never answers costs 0.25 s, not the
      request timeout, for the live one behind it; a name whose addresses all hang fails within
      about ``connect_timeout_seconds`` times their number; and ``hooks.request_timeout_seconds``
      bounds the whole request, connecting included.
    - **Proxy** (``hooks.use_env_proxy``): the request goes to the proxy of HTTP_PROXY or
      HTTPS_PROXY unless NO_PROXY names the host (`broker.config.ProxyEnvironment.proxy_for`).
      Then the proxy, not this client, connects to the receiver: the hook's host is resolved and
      checked here before the request is sent, but the proxy resolves it again, and what it
      connects to (a name that rebinds between the two lookups) is the proxy's responsibility:
      give it its own deny list for internal addresses. The proxy's own address passes the guard
      like any other: one on loopback or the LAN must be listed in ``url_guard.allow``.
    """

    def __init__(
        self,
        settings: HookSettings,
        *,
        guard: UrlGuard | None = None,
        resolver: AbstractResolver | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.guard = guard or UrlGuard(allow_all=settings.allow_private_addresses)
        self._inner = resolver
        self._tls = tls
        self._resolver: AbstractResolver | None = None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> tuple[aiohttp.ClientSession, AbstractResolver]:
        # Built at first use: the default resolver and the session need the running loop.
        if self._session is None or self._resolver is None:
            self._resolver = self.guard.resolver(self._inner or ThreadedResolver())
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                ttl_dns_cache=DNS_TTL_SECONDS,
                limit=max(self.settings.concurrency, 1),
                limit_per_host=0,  # `workers.receiver_slots` caps each receiver, with a queue
                keepalive_timeout=IDLE_SECONDS,
                ssl=self._tls or ssl.create_default_context(),
                happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(sock_connect=self.settings.connect_timeout_seconds),
                headers={"User-Agent": "mjbroker"},
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                read_bufsize=RESPONSE_READ_LIMIT,
                trust_env=False,
            )
        return self._session, self._resolver

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """POST `body` to `url`: None on a 2xx answer, else a short reason that never holds the URL.

        Raises `broker.url_guard.UrlRefused` when the host or an address it resolves to is
        refused. Not bounded in time by itself: the caller holds the request timeout.
        """
        self.guard.check_url(url, what="the hook URL")
        session, resolver = self._client()
        try:
            target = _encode(url)
        except ValueError:
            return "the hook URL cannot be encoded"
        proxy = None
        if self.settings.use_env_proxy:
            proxy = self.settings.env_proxy.proxy_for(target.scheme, target.raw_host or "")
        try:
            if proxy is not None and not self.guard.allow_all:
                # The proxy connects, not this client: check the name before handing it over.
                await resolver.resolve(target.raw_host or "", target.port or 0, socket.AF_UNSPEC)
            async with session.post(
                target, data=body, headers=headers, allow_redirects=False, proxy=proxy
            ) as response:
                read = 0
                async for chunk in response.content.iter_any():
                    read += len(chunk)
                    if read > RESPONSE_READ_LIMIT:
                        response.close()  # not worth reading on: drop the connection instead
                        break
                status = response.status
        except UrlRefused:
            raise
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, UrlRefused):
                raise exc.os_error from None
            return _reason(exc)
        except socket.gaierror as exc:  # looking the host up for the proxy
            return _dns_reason(exc)
        except (aiohttp.ClientError, OSError) as exc:
            return _reason(exc)
        return None if 200 <= status < 300 else f"HTTP {status}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:
            await self._resolver.close()
