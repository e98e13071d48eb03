"""The hook POST (`workers.hook_http.HookPoster`, aiohttp) against real loopback servers: plain and TLS
receivers, answers that are huge, redirect or are not HTTP, the address guard, connect timeouts per
address, and the environment's proxy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import pytest
from workers_support import FixedDns

from broker.config import HookSettings, parse_settings
from broker.redis_server import free_port
from broker.url_guard import UrlGuard, UrlRefused
from workers.hook_http import HookPoster

TLS = Path(__file__).parents[1] / "tls"
#: every receiver of this file listens on loopback: what the HTTP tests allow
LOOPBACK = UrlGuard(["127.0.0.0/8"])
HUGE = 2**30
ANSWERS = {
    "/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    "/error": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
    "/redirect": b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n",
    "/garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
}


class RawReceiver:
    """A loopback HTTP/1.1 server answering each path with fixed bytes; ``/huge`` streams a 1 GiB
    body, ``/close-early`` hangs up without answering."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.port = 0
        self.huge_sent = 0
        self.huge_done = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                target = head[0].split(" ")[1]
                fields = {
                    k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
                }
                body = await reader.readexactly(int(fields["content-length"]))
                self.requests.append((target, fields, body))
                path = target.split("?")[0]
                if path == "/close-early":
                    break
                if path == "/huge":
                    await self._stream(writer)
                    break
                writer.write(ANSWERS[path])
                await writer.drain()
                if path == "/garbage":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE)
        chunk = b"x" * 65_536
        try:
            while self.huge_sent < HUGE:
                writer.write(chunk)
                await writer.drain()  # blocks while the client does not read
                self.huge_sent += len(chunk)
        except ConnectionError:
            pass
        finally:
            self.huge_done.set()


class ForwardProxy:
    """A loopback HTTP proxy: answers absolute-form requests itself and tunnels CONNECT."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _version = head[0].split(" ", 2)
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            length = next(
                int(v) for k, _, v in (f.partition(":") for f in head) if k.lower() == "content-length"
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _served_tls() -> ssl.SSLContext:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(TLS / "localhost.crt", TLS / "localhost.key")
    return served


Server = TypeVar("Server", RawReceiver, ForwardProxy)


@contextlib.asynccontextmanager
async def _serving(server: Server, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


@pytest.fixture
async def raw() -> AsyncIterator[RawReceiver]:
    async with _serving(RawReceiver()) as server:
        yield server


@pytest.fixture
async def tls_raw() -> AsyncIterator[RawReceiver]:
    async with _serving(RawReceiver(), tls=_served_tls()) as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with _serving(ForwardProxy()) as server:
        yield server


@contextlib.asynccontextmanager
async def posting(
    settings: HookSettings | None = None,
    *,
    dns: FixedDns | None = None,
    tls: ssl.SSLContext | None = None,
    guard: UrlGuard | None = LOOPBACK,
) -> AsyncIterator[HookPoster]:
    """A poster with the address guard on, closed before the servers stop. The receivers here all
    listen on loopback, so the guard allows 127/8 unless told otherwise (None: the settings' own)."""
    poster = HookPoster(settings or HookSettings(), guard=guard, resolver=dns, tls=tls)
    try:
        yield poster
    finally:
        await poster.close()


async def _post(poster: HookPoster, url: str, headers: Mapping[str, str] | None = None) -> str | None:
    async with asyncio.timeout(5):
        return await poster.post(url, b'{"id":"1"}', headers or {"Content-Type": "application/json"})


def _trusting() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=TLS / "localhost.crt")


# ---------------------------------------------------------------- the request


async def test_the_post_carries_body_headers_and_basic_auth_from_the_url(raw: RawReceiver) -> None:
    async with posting() as poster:
        assert await _post(poster, f"http://127.0.0.1:{raw.port}/ok?key=1") is None
        assert await _post(poster, f"http://me:s%40cret@127.0.0.1:{raw.port}/ok") is None
    (target, fields, body), (_, authed, _) = raw.requests
    assert (target, body) == ("/ok?key=1", b'{"id":"1"}')
    assert fields["host"] == f"127.0.0.1:{raw.port}" and fields["content-type"] == "application/json"
    assert fields["user-agent"] == "mjbroker"
    assert "authorization" not in fields
    assert authed["authorization"] == "Basic " + base64.b64encode(b"me:s@cret").decode()


async def test_non_ascii_paths_queries_and_host_names_are_encoded(raw: RawReceiver) -> None:
    dns = FixedDns({"xn--bcher-kva.test": ["127.0.0.1"]})
    async with posting(dns=dns) as poster:
        assert await _post(poster, f"http://bücher.test:{raw.port}/ok?q=é ü&k=%2F") is None
    target, fields, _ = raw.requests[0]
    assert target == "/ok?q=%C3%A9%20%C3%BC&k=%2F"  # UTF-8 %-encoded, escapes kept as they were
    assert fields["host"] == f"xn--bcher-kva.test:{raw.port}"
    assert dns.lookups == ["xn--bcher-kva.test"]


async def test_framed_answers_keep_one_connection_and_statuses_are_told_apart(raw: RawReceiver) -> None:
    async with posting() as poster:
        outcomes = [
            await _post(poster, f"http://127.0.0.1:{raw.port}{p}") for p in ANSWERS if p != "/garbage"
        ]
    assert outcomes == [None, None, None, "HTTP 503", "HTTP 302"]
    assert raw.connections == 1


async def test_redirects_are_not_followed(raw: RawReceiver) -> None:
    async with posting() as poster:
        assert await _post(poster, f"http://127.0.0.1:{raw.port}/redirect") == "HTTP 302"
    assert [target for target, _, _ in raw.requests] == ["/redirect"]


async def test_a_huge_answer_is_not_read_in_full(raw: RawReceiver) -> None:
    async with posting() as poster:
        assert await _post(poster, f"http://127.0.0.1:{raw.port}/huge") is None
        async with asyncio.timeout(5):
            await raw.huge_done.wait()  # the client hung up instead of reading on
    # what the kernel buffers on loopback, far below the gigabyte on offer
    assert raw.huge_sent < 32 * 2**20


async def test_an_answer_that_is_not_http_or_none_at_all_gives_a_short_reason(raw: RawReceiver) -> None:
    async with posting() as poster:
        assert await _post(poster, f"http://127.0.0.1:{raw.port}/garbage?token=t") == "the answer is not HTTP"
        closed = await _post(poster, f"http://127.0.0.1:{raw.port}/close-early?token=t")
        refused = await _post(poster, f"http://127.0.0.1:{free_port()}/x?token=t")
    assert closed == "the receiver closed the connection"
    assert refused == "cannot connect (ConnectionRefusedError)"


# ---------------------------------------------------------------- TLS


async def test_https_receivers_are_verified_by_certificate_and_host_name(tls_raw: RawReceiver) -> None:
    other_name = FixedDns({"receiver.test": ["127.0.0.1"]})
    async with (
        posting(tls=_trusting()) as trusting,
        posting() as system,
        posting(dns=other_name, tls=_trusting()) as misnamed,
    ):
        assert await _post(trusting, f"https://localhost:{tls_raw.port}/ok") is None
        assert tls_raw.requests[-1][1]["host"] == f"localhost:{tls_raw.port}"
        unknown_ca = await _post(system, f"https://localhost:{tls_raw.port}/ok")
        wrong_name = await _post(misnamed, f"https://receiver.test:{tls_raw.port}/ok")
    assert unknown_ca == "TLS failed: SSLCertVerificationError (CERTIFICATE_VERIFY_FAILED)"
    assert wrong_name == "TLS failed: SSLCertVerificationError (CERTIFICATE_VERIFY_FAILED)"
    assert len(tls_raw.requests) == 1


# ---------------------------------------------------------------- the address guard


async def test_the_guard_refuses_metadata_and_link_local_addresses_named_or_resolved(
    raw: RawReceiver,
) -> None:
    dns = FixedDns({"rebind.test": ["127.0.0.1", "169.254.169.254"], "lan.test": ["169.254.10.1"]})
    async with posting(dns=dns) as poster:
        with pytest.raises(UrlRefused, match=r"^the hook URL: host 169\.254\.169\.254 is cloud metadata"):
            await _post(poster, "http://169.254.169.254/latest/meta-data/")
        with pytest.raises(UrlRefused, match=r"^host rebind\.test resolves to 169\.254\.169\.254 \(cloud"):
            await _post(poster, f"http://rebind.test:{raw.port}/ok")
        with pytest.raises(UrlRefused, match=r"resolves to 169\.254\.10\.1 \(link-local, not in url_guard"):
            await _post(poster, f"http://lan.test:{raw.port}/ok")
    assert raw.requests == []


async def test_the_guard_refuses_loopback_not_on_the_allow_list(raw: RawReceiver) -> None:
    dns = FixedDns({"receiver.test": ["127.0.0.1"]})
    async with posting(dns=dns, guard=UrlGuard([f"127.0.0.1:{raw.port + 1}"])) as poster:
        with pytest.raises(UrlRefused, match=r"^the hook URL: host 127\.0\.0\.1 is loopback"):
            await _post(poster, f"http://127.0.0.1:{raw.port}/ok")
        with pytest.raises(UrlRefused, match=r"^host receiver\.test resolves to 127\.0\.0\.1 \(loopback"):
            await _post(poster, f"http://receiver.test:{raw.port}/ok")
    assert raw.requests == []
    async with posting(dns=dns, guard=UrlGuard([f"127.0.0.1:{raw.port}"])) as poster:
        assert await _post(poster, f"http://receiver.test:{raw.port}/ok") is None
    assert len(raw.requests) == 1


async def test_allow_private_addresses_lifts_the_guard(raw: RawReceiver) -> None:
    dns = FixedDns({"rebind.test": ["127.0.0.1", "169.254.169.254"]})
    async with posting(HookSettings(allow_private_addresses=True), dns=dns, guard=None) as poster:
        # the guard would refuse the whole name; loopback answers first, so nothing else is tried
        assert await _post(poster, f"http://rebind.test:{raw.port}/ok") is None
    assert len(raw.requests) == 1


# ---------------------------------------------------------------- connecting, address by address


@contextlib.contextmanager
def _blackhole(port: int) -> Iterator[None]:
    """127.0.0.2:`port` never answers: its accept queue is full, so the kernel drops new SYNs, as a
    firewall that drops would."""
    listener = socket.socket()
    listener.bind(("127.0.0.2", port))
    listener.listen(0)
    filler = socket.create_connection(("127.0.0.2", port), timeout=2)
    try:
        yield
    finally:
        filler.close()
        listener.close()


async def test_a_blackholed_first_address_does_not_hold_up_the_live_one(raw: RawReceiver) -> None:
    dns = FixedDns({"receiver.test": ["127.0.0.2", "127.0.0.1"]})
    # A connect timeout far longer than the test allows: only trying the next address early helps.
    settings = HookSettings(connect_timeout_seconds=5.0)
    with _blackhole(raw.port):
        async with posting(settings, dns=dns) as poster:
            started = time.monotonic()
            async with asyncio.timeout(1.5):
                assert await poster.post(f"http://receiver.test:{raw.port}/ok", b"{}", {}) is None
    assert time.monotonic() - started >= 0.2  # the first address was tried, and waited for a while
    assert len(raw.requests) == 1


async def test_an_address_that_never_answers_fails_after_the_connect_timeout(raw: RawReceiver) -> None:
    dns = FixedDns({"receiver.test": ["127.0.0.2"]})
    settings = HookSettings(connect_timeout_seconds=0.3, request_timeout_seconds=30.0)
    with _blackhole(raw.port):
        async with posting(settings, dns=dns) as poster, asyncio.timeout(2):
            reason = await poster.post(f"http://receiver.test:{raw.port}/ok", b"{}", {})
    assert reason == "timed out connecting"


# ---------------------------------------------------------------- the environment's proxy


def _proxy_settings(proxy: ForwardProxy, *, on: bool, no_proxy: str = "") -> HookSettings:
    environ = {"HTTP_PROXY": proxy.url, "https_proxy": proxy.url, "NO_PROXY": no_proxy}
    return parse_settings({"hooks": {"use_env_proxy": on}}, environ).hooks


async def test_the_environment_proxy_is_ignored_unless_the_setting_is_on(
    raw: RawReceiver, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy"):  # what aiohttp would read if it trusted the environment
        monkeypatch.setenv(name, proxy.url)
    async with posting(_proxy_settings(proxy, on=False)) as poster:
        assert await _post(poster, f"http://127.0.0.1:{raw.port}/ok") is None
    assert proxy.seen == [] and len(raw.requests) == 1


async def test_with_the_setting_on_hooks_go_through_the_proxy(raw: RawReceiver, proxy: ForwardProxy) -> None:
    dns = FixedDns({"receiver.test": ["127.0.0.1"]})
    async with posting(_proxy_settings(proxy, on=True), dns=dns) as poster:
        assert await _post(poster, f"http://receiver.test:{raw.port}/hook?k=1") is None
    assert proxy.seen == [f"POST http://receiver.test:{raw.port}/hook?k=1"]
    assert dns.lookups == ["receiver.test"]  # checked here before the proxy was asked
    assert raw.requests == []


async def test_https_hooks_are_tunnelled_through_the_proxy_and_still_verified(
    tls_raw: RawReceiver, proxy: ForwardProxy
) -> None:
    async with posting(_proxy_settings(proxy, on=True), tls=_trusting()) as poster:
        assert await _post(poster, f"https://localhost:{tls_raw.port}/ok") is None
    assert proxy.seen == [f"CONNECT localhost:{tls_raw.port}"]
    assert [target for target, _, _ in tls_raw.requests] == ["/ok"]


async def test_no_proxy_hosts_are_reached_directly(raw: RawReceiver, proxy: ForwardProxy) -> None:
    dns = FixedDns({"hooks.internal.test": ["127.0.0.1"]})
    async with posting(
        _proxy_settings(proxy, on=True, no_proxy="localhost,.internal.test"), dns=dns
    ) as poster:
        assert await _post(poster, f"http://hooks.internal.test:{raw.port}/ok") is None
    assert proxy.seen == [] and len(raw.requests) == 1


async def test_with_the_proxy_on_refused_hosts_are_still_refused(proxy: ForwardProxy) -> None:
    dns = FixedDns({"rebind.test": ["169.254.169.254"]})
    async with posting(_proxy_settings(proxy, on=True), dns=dns) as poster:
        with pytest.raises(UrlRefused, match=r"^host rebind\.test resolves to 169\.254\.169\.254"):
            await _post(poster, "http://rebind.test/hook")
        with pytest.raises(UrlRefused, match="cloud metadata"):
            await _post(poster, "http://169.254.169.254/latest/meta-data/")
        with pytest.raises(UrlRefused, match="cloud metadata service"):
            await _post(poster, "http://metadata.google.internal/computeMetadata/v1/")
    assert proxy.seen == []
