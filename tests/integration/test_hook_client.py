"""`workers.hook_client.HookClient` against a raw loopback server answering in every HTTP/1.x framing."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from broker.redis_server import free_port
from workers.hook_client import HookClient, HookHttpError

ANSWERS = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "/chunked": (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    ),
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "/until-eof": b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the connection",
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    "/big": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000,
    "/error": b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
    "/garbage": b"SSH-2.0-OpenSSH\r\n\r\n",
    "/stale": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # then closes without saying so
}
CLOSE_AFTER = {"/close", "/until-eof", "/garbage", "/stale"}


class RawServer:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = head[0].split(" ")[1]
                fields = {
                    k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
                }
                body = await reader.readexactly(int(fields["content-length"]))
                self.requests.append((path, fields, body))
                writer.write(ANSWERS[path.split("?")[0]])
                await writer.drain()
                if path.split("?")[0] in CLOSE_AFTER:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    listener = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    raw.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield raw


@pytest.fixture
async def client() -> AsyncIterator[HookClient]:
    hook_client = HookClient(allow_private=True)
    yield hook_client
    await hook_client.close()


def _url(server: RawServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def test_request_carries_body_headers_and_query(server: RawServer, client: HookClient) -> None:
    status = await client.post(
        _url(server, "/length?key=1"), b'{"id":"1"}', {"Content-Type": "application/json"}
    )
    assert status == 200
    await client.post(_url(server, "/length?q=é ü&k=%2F"), b"{}", {})
    await client.post(f"http://me:s%40cret@127.0.0.1:{server.port}/length", b"{}", {})
    path, fields, body = server.requests[0]
    assert (path, body) == ("/length?key=1", b'{"id":"1"}')
    assert server.requests[1][0] == "/length?q=%C3%A9%20%C3%BC&k=%2F"  # non-ASCII encoded, escapes kept
    assert "authorization" not in fields
    assert server.requests[2][1]["authorization"] == "Basic " + base64.b64encode(b"me:s@cret").decode()
    assert fields["host"] == f"127.0.0.1:{server.port}" and fields["content-type"] == "application/json"


async def test_framed_answers_keep_the_connection(server: RawServer, client: HookClient) -> None:
    statuses = [
        await client.post(_url(server, p), b"{}", {}) for p in ("/length", "/chunked", "/interim", "/error")
    ]
    assert statuses == [200, 201, 204, 503]
    assert server.connections == 1


async def test_answers_that_end_the_connection_are_not_reused(server: RawServer, client: HookClient) -> None:
    for path in ("/close", "/until-eof", "/big"):
        assert await client.post(_url(server, path), b"{}", {}) == 200
    assert await client.post(_url(server, "/length"), b"{}", {}) == 200
    assert server.connections == 4


async def test_a_kept_connection_the_receiver_dropped_is_retried_on_a_fresh_one(
    server: RawServer, client: HookClient
) -> None:
    assert await client.post(_url(server, "/stale"), b"{}", {}) == 200
    await asyncio.sleep(0.05)  # the receiver has closed it; the client may not have noticed
    assert await client.post(_url(server, "/length"), b"{}", {}) == 200
    assert [r[0] for r in server.requests] == ["/stale", "/length"]


async def test_no_http_answer_or_no_receiver_is_an_error_with_a_reason(
    server: RawServer, client: HookClient
) -> None:
    with pytest.raises(HookHttpError, match="not HTTP"):
        await client.post(_url(server, "/garbage"), b"{}", {})
    with pytest.raises(HookHttpError, match="ConnectionRefusedError"):
        await client.post(f"http://127.0.0.1:{free_port()}/x", b"{}", {})


TLS = Path(__file__).parents[1] / "tls"


async def test_https_receivers_are_verified_by_name_and_certificate(server: RawServer) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(TLS / "localhost.crt", TLS / "localhost.key")
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=served)
    port = listener.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=TLS / "localhost.crt")
    async with listener:
        verified = HookClient(allow_private=True, tls=trusting)
        system = HookClient(allow_private=True)
        try:
            assert await verified.post(f"https://localhost:{port}/length", b"{}", {}) == 200
            assert server.requests[-1][1]["host"] == f"localhost:{port}"
            with pytest.raises(HookHttpError, match="SSLCertVerificationError"):
                await system.post(f"https://localhost:{port}/length", b"{}", {})
        finally:
            await verified.close()
            await system.close()


class _ListedResolver(AbstractResolver):
    """Answers every name with fixed addresses, in order (as getaddrinfo may put ::1 first)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_every_address_of_a_name_is_tried_in_order(server: RawServer) -> None:
    # nothing listens on 127.0.0.2 at this port; the receiver does on 127.0.0.1
    client = HookClient(resolver=_ListedResolver("127.0.0.2", "127.0.0.1"))
    try:
        assert await client.post(f"http://receiver.test:{server.port}/length", b"{}", {}) == 200
        assert server.requests[-1][1]["host"] == f"receiver.test:{server.port}"
    finally:
        await client.close()
    nowhere = HookClient(resolver=_ListedResolver("127.0.0.2"))
    try:
        with pytest.raises(HookHttpError, match="ConnectionRefusedError"):
            await nowhere.post(f"http://receiver.test:{server.port}/length", b"{}", {})
    finally:
        await nowhere.close()
