"""Fetching an image a client named by URL (face-swap sources, describe links): guarded, capped, checked.

`ImageFetcher` is the one way the bridge downloads what a client points at:

- **Guard**: `broker.url_guard`: `UrlGuard.check_url` on the URL and on every redirect target, and
  the guarded resolver on the connector, so the addresses checked are the ones connected to.
- **Redirects** are followed by hand, at most ``url_guard.max_redirects`` hops, each one checked
  as the first URL was (aiohttp's own redirects would skip `check_url` for IP literals).
- **Size cap**: a body past ``tasks.max_image_bytes`` (declared or read) is refused; bytes are
  counted after content decoding, so a gzip bomb stops at the cap.
- **Type**: the body must open with Pillow as PNG, JPEG, WebP or GIF and pass ``verify()`` (in a
  thread: a large PNG's checks are no work for the event loop); a video
  (`ImageFetcher.fetch_video`, the image store's copy of a video task) must be served as
  ``video/mp4`` and start with an MP4 ``ftyp`` box.
- No cookies kept, no proxy or netrc from the environment (``trust_env=False``), one bounded time
  for the whole fetch (``url_guard.timeout_seconds``).

A refusal raises `FetchRefused` whose `reason` names the host, never the path or query, fit for a
task's ``failReason``.
"""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from PIL import Image, UnidentifiedImageError
from yarl import URL

from broker.errors import cut
from broker.url_guard import GuardedResolver, UrlGuard, UrlRefused

__all__ = ["ALLOWED_FORMATS", "FetchRefused", "ImageFetcher", "image_type"]

#: Pillow format name -> file extension of the images accepted from a link
ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: bound of the lookup of a host someone else fetches from (`ImageFetcher.check_host`)
_LOOKUP_TIMEOUT_S = 5.0


class FetchRefused(Exception):
    """A link that was not fetched, or whose answer is not an acceptable image; `reason` says why,
    `status` is the HTTP status that refused it, if one did."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _origin(url: str) -> str:
    """Scheme, host and port: what a reason may show of a client's URL (paths carry secrets)."""
    try:
        parts = urlsplit(url)
        return cut(f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}")
    except ValueError:
        return "(unparseable URL)"


def image_type(data: bytes) -> str | None:
    """The extension of `data` when it is a PNG, JPEG, WebP or GIF that Pillow can verify, else None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            ext = ALLOWED_FORMATS.get(image.format or "")
            if ext is None:
                return None
            image.verify()
            return ext
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


class ImageFetcher:
    """Downloads images from clients' links through the guard (one aiohttp session per process).

    :param guard: the address rule and the operator's exceptions (``url_guard.allow``).
    :param max_bytes: largest body accepted (``tasks.max_image_bytes``).
    :param max_redirects: redirects followed, each one checked again.
    :param timeout_seconds: bound of one whole fetch, redirects included.
    :param resolver: looks names up (default: getaddrinfo in a thread); its answers are guarded.
    :param tls: how https hosts are verified (default: the system's CAs, host names checked).
    """

    def __init__(
        self,
        guard: UrlGuard,
        *,
        max_bytes: int,
        max_redirects: int = 3,
        timeout_seconds: float = 30.0,
        resolver: AbstractResolver | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.timeout_seconds = timeout_seconds
        self._inner = resolver
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    def _guarded(self) -> GuardedResolver:
        if self._resolver is None:
            self._resolver = self.guard.resolver(self._inner)
        return self._resolver

    def _client(self) -> aiohttp.ClientSession:
        # Built at first use: the resolver and the session need the running loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._guarded(),
                ssl=self._tls or ssl.create_default_context(),
                limit=32,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": "mjbroker"},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def check_host(self, url: str) -> None:
        """Check a link someone else fetches (Midjourney, for a prompt's image URLs): the URL, then
        the addresses its host resolves to here. A lookup that fails is not a refusal: the fetcher's
        resolver is not ours. Raises `FetchRefused`."""
        try:
            self.guard.check_url(url, what=f"link {_origin(url)}")
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            async with asyncio.timeout(min(self.timeout_seconds, _LOOKUP_TIMEOUT_S)):
                await self._guarded().resolve(parts.hostname or "", port, socket.AF_UNSPEC)
        except UrlRefused as exc:
            raise FetchRefused(f"refused: {exc}") from None
        except (OSError, TimeoutError, ValueError):
            return

    async def fetch(self, url: str) -> tuple[bytes, str]:
        """The image at `url` and its extension ("png", "jpg", "webp", "gif"). Raises `FetchRefused`."""
        data, _ = await self._bounded(url, what="image", max_bytes=self.max_bytes)
        ext = await asyncio.to_thread(image_type, data)
        if ext is None:
            raise FetchRefused(f"image link {_origin(url)} is not a PNG, JPEG, WebP or GIF image")
        return data, ext

    async def fetch_video(self, url: str, *, max_bytes: int) -> bytes:
        """The MP4 video at `url`, at most `max_bytes` long. Raises `FetchRefused`."""
        data, content_type = await self._bounded(url, what="video", max_bytes=max_bytes)
        if content_type != "video/mp4" or data[4:8] != b"ftyp":
            raise FetchRefused(f"video link {_origin(url)} is not an MP4 video")
        return data

    async def _bounded(self, url: str, *, what: str, max_bytes: int) -> tuple[bytes, str]:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._download(url, what=what, max_bytes=max_bytes)
        except TimeoutError:
            raise FetchRefused(f"{what} link {_origin(url)} timed out") from None

    async def _download(self, url: str, *, what: str, max_bytes: int) -> tuple[bytes, str]:
        """The body at `url` and its media type (no parameters, lower case)."""
        session = self._client()
        for _hop in range(self.max_redirects + 1):
            origin = _origin(url)
            try:
                self.guard.check_url(url, what=f"{what} link {origin}")
                async with session.get(URL(url), allow_redirects=False) as response:
                    if response.status in _REDIRECTS and response.headers.get("Location"):
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise FetchRefused(
                            f"{what} link {origin} answered HTTP {response.status}", status=response.status
                        )
                    too_big = f"{what} link {origin} is larger than {max_bytes} bytes"
                    if (response.content_length or 0) > max_bytes:
                        raise FetchRefused(too_big)
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(65_536):
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchRefused(too_big)
                    return bytes(body), response.content_type.lower()
            except UrlRefused as exc:
                raise FetchRefused(f"refused: {exc}") from None
            except aiohttp.ClientConnectorDNSError as exc:
                if isinstance(exc.os_error, UrlRefused):
                    raise FetchRefused(f"refused: {what} link {origin}: {exc.os_error}") from None
                raise FetchRefused(f"{what} link {origin}: cannot resolve the host") from None
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise FetchRefused(f"{what} link {origin} unreachable ({type(exc).__name__})") from None
        raise FetchRefused(f"{what} link redirected more than {self.max_redirects} times")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()  # the connector does not own it: closed here
            self._resolver = None
