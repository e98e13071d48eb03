"""`broker.image_fetch.ImageFetcher` against real loopback servers: the guard on every hop, the size
cap, the image check. The servers listen on loopback, so each test's guard allows exactly their port."""

from __future__ import annotations

import gzip
import io
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from PIL import Image
from trap import Trap
from workers_support import FixedDns

from broker.image_fetch import FetchRefused, ImageFetcher
from broker.url_guard import UrlGuard


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(out, format="PNG")
    return out.getvalue()


PNG = _png()
CAP = 4096


class Site:
    """An HTTP server on 127.0.0.1 with the paths the tests need; counts the requests per path."""

    def __init__(self) -> None:
        self.port = 0
        self.hits: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name == "image.png":
            return web.Response(body=PNG, content_type="image/png")
        if name == "page.html":
            return web.Response(text="<html>a page, not an image</html>", content_type="text/html")
        if name == "missing.png":
            return web.Response(status=404)
        if name.startswith("hop"):  # hop3 -> hop2 -> hop1 -> hop0 -> the image
            left = int(name[3:])
            target = "image.png" if left == 0 else f"hop{left - 1}"
            raise web.HTTPFound(f"/{target}")
        if name == "to-internal":
            raise web.HTTPFound(request.query["to"])
        if name == "declared-big.png":
            return web.Response(body=PNG + b"\0" * CAP, content_type="image/png")
        if name == "streamed-big.png":  # no Content-Length: the cap is counted while reading
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(64):
                await response.write(b"\0" * 1024)
            await response.write_eof()
            return response
        if name == "bomb.png":  # small on the wire, far past the cap once decoded
            body = gzip.compress(PNG + b"\0" * (CAP * 64))
            return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "image/png"})
        return web.Response(status=500)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Dns(FixedDns):
    """FixedDns whose unknown names fail as getaddrinfo does."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await super().resolve(host, port, family)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    server = Site()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    server = Trap("127.0.0.2")
    await server.start()
    yield server
    await server.stop()
    assert server.connections == 0, "an internal address was fetched"


@pytest.fixture
async def fetcher(site: Site) -> AsyncIterator[ImageFetcher]:
    dns = Dns({"site.test": ["127.0.0.1"], "rebind.test": ["93.184.216.34", "127.0.0.2"]})
    made = ImageFetcher(
        UrlGuard([f"127.0.0.1:{site.port}"]), max_bytes=CAP, max_redirects=4, timeout_seconds=5, resolver=dns
    )
    yield made
    await made.close()


async def _refused(fetcher: ImageFetcher, url: str) -> str:
    with pytest.raises(FetchRefused) as caught:
        await fetcher.fetch(url)
    return caught.value.reason


async def test_an_allowed_image_is_fetched_by_address_or_name(fetcher: ImageFetcher, site: Site) -> None:
    assert await fetcher.fetch(site.url("image.png")) == (PNG, "png")
    assert await fetcher.fetch(f"http://site.test:{site.port}/image.png") == (PNG, "png")


async def test_redirects_are_followed_and_each_hop_checked(
    fetcher: ImageFetcher, site: Site, trap: Trap
) -> None:
    assert await fetcher.fetch(site.url("hop3")) == (PNG, "png")
    assert await _refused(fetcher, site.url("hop4")) == "image link redirected more than 4 times"
    to = f"http://127.0.0.2:{trap.port}/x.png"
    reason = await _refused(fetcher, site.url(f"to-internal?to={to}"))
    origin = f"http://127.0.0.2:{trap.port}"
    assert reason == f"refused: image link {origin}: host 127.0.0.2 is loopback (not in url_guard.allow)"
    # a redirect to a name that resolves inside is refused where it is resolved
    reason = await _refused(fetcher, site.url(f"to-internal?to=http://rebind.test:{trap.port}/x.png"))
    assert reason.endswith("host rebind.test resolves to 127.0.0.2 (loopback, not in url_guard.allow)")
    assert site.hits["to-internal"] == 2


async def test_a_port_of_an_allowed_address_that_is_not_listed_is_refused(
    fetcher: ImageFetcher, site: Site
) -> None:
    reason = await _refused(fetcher, f"http://127.0.0.1:{site.port + 1}/image.png")
    assert "host 127.0.0.1 is loopback (not in url_guard.allow)" in reason


async def test_bodies_past_the_cap_are_refused_declared_streamed_or_compressed(
    fetcher: ImageFetcher, site: Site
) -> None:
    for name in ("declared-big.png", "streamed-big.png", "bomb.png"):
        reason = await _refused(fetcher, site.url(name))
        assert reason == f"image link http://127.0.0.1:{site.port} is larger than {CAP} bytes", name


async def test_answers_that_are_not_images_are_refused(fetcher: ImageFetcher, site: Site) -> None:
    origin = f"http://127.0.0.1:{site.port}"
    assert await _refused(fetcher, site.url("page.html")) == (
        f"image link {origin} is not a PNG, JPEG, WebP or GIF image"
    )
    assert await _refused(fetcher, site.url("missing.png")) == f"image link {origin} answered HTTP 404"


async def test_check_host_refuses_internal_names_and_lets_unknown_ones_pass(fetcher: ImageFetcher) -> None:
    with pytest.raises(FetchRefused, match=r"resolves to 127\.0\.0\.2 \(loopback"):
        await fetcher.check_host("https://rebind.test/a.png")
    with pytest.raises(FetchRefused, match=r"host 10\.0\.0\.1 is private"):
        await fetcher.check_host("https://10.0.0.1/a.png")
    await fetcher.check_host("https://unknown.test/a.png")  # Midjourney's resolver, not ours
