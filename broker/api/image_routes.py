"""`GET /mj/image/{key}`, `/mj/image/{key}/{n}` (n = 1..4), `/mj/image/{key}/thumbnail`,
`/mj/video/{key}` (the first video) and `/mj/video/{key}/{n}` (n = 1..the task's videos).

`key` is ``<task id>.<token>``: the token is random, kept in the copy's manifest
(`broker.image_store.Manifest.token`), so a copy's URL cannot be guessed from its task id (ids are
timestamps). A copy made before tokens existed has none and is served at the bare task id, the URL
its task was given; a copy with a token is served only with it.

The image store's copies (`broker.image_store`), served without an api key (the URLs go into
tasks, hooks and web pages) and with what browsers, players and CDNs expect of static files:

- a strong ETag per file (a digest of its bytes) and ``If-None-Match`` -> 304;
- ``HEAD`` -> the headers a GET would get (Content-Length, ETag, ...), no body and no read of the
  file (each route takes both methods; the door drops the body of a HEAD's error answer too);
- a file past `_CHUNK` (a video) is read from the store in chunks of that size while it is sent,
  and a range only as far as it goes: a player seeking in a 60 MB video costs the web no 60 MB;
- ``Cache-Control: public, max-age=31536000, immutable``: a stored copy never changes;
- single byte ranges (``Range: bytes=a-b``, ``a-``, ``-n``) -> 206 with ``Content-Range``, an
  unsatisfiable one -> 416, ``If-Range`` with another ETag -> the whole file; several ranges in one
  request are answered with the whole file (RFC 9110 allows it);
- CORS for any origin (front ends draw results into a canvas), on every answer, and preflights
  answered here: the door (`broker.api.auth`) hands these paths (`STORE_PATHS`) to `store_door`.

The routes are left out of the OpenAPI schema: they are static files, not API operations (no api
key, image bodies), and listed in the README. An unknown task, an id that is not one (`..`,
slashes, absolute paths never name a file: see `broker.image_store.valid_task_id`), a wrong or
missing token, or a part the task has not -> 404, code 4.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import HttpMethod, Request, Response, route
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from broker.api.context import context_of
from broker.errors import NotFound, TaskNotFound, echo
from broker.image_store import ImageStore, Manifest, StoredFile, split_key

__all__ = ["IMAGE_HANDLERS", "STORE_PATHS", "Unsatisfiable", "byte_range", "store_door"]

AnyRequest = Request[Any, Any, Any]

#: the paths the door hands to `store_door`
STORE_PATHS = ("/mj/image/", "/mj/video/")
#: files larger than this are sent in reads of this size
_CHUNK = 1 << 20
_METHODS = [HttpMethod.GET, HttpMethod.HEAD]
_CACHE = "public, max-age=31536000, immutable"
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"ETag, Content-Length, Content-Range, Accept-Ranges"),
]
_PREFLIGHT = [
    *_CORS,
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"range, if-none-match, if-range"),
    (b"access-control-max-age", b"86400"),
]
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Unsatisfiable(Exception):
    """A Range that selects no byte of the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single-range ``Range`` header, or None to send the whole file.

    Raises `Unsatisfiable` for a range that starts past the end (or a zero-length suffix).
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges, or another unit: the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        raise Unsatisfiable
    if end < start:
        return None  # invalid: ignored, as RFC 9110 says
    return start, end


async def store_door(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The door of the store's paths: no api key, CORS for any origin, preflights and HEAD answered."""
    method = scope.get("method")
    if method == "OPTIONS":
        await send({"type": "http.response.start", "status": 204, "headers": _PREFLIGHT})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    head = method == "HEAD"

    async def with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_CORS]
        elif head and message["type"] == "http.response.body":
            # an error's JSON body (404) too: HEAD answers carry none
            message = {
                "type": "http.response.body",
                "body": b"",
                "more_body": message.get("more_body", False),
            }
        await send(message)

    await app(scope, receive, with_cors)


async def _serve(
    request: AnyRequest,
    key: str,
    part: str,
    pick: Callable[[Manifest, str], StoredFile | None],
    what: str,
) -> Response[Any]:
    store = context_of(request).images
    task_id, token = split_key(key)
    manifest = await store.manifest(task_id) if store is not None else None
    # a wrong or missing token gets the answer of an unknown task; compared in constant time
    if store is None or manifest is None or not hmac.compare_digest(token.encode(), manifest.token.encode()):
        raise TaskNotFound(task_id)
    file = pick(manifest, part)
    if file is None:
        raise NotFound(f"task {echo(task_id)} has no {what} {echo(part)}")
    headers = {"ETag": file.etag, "Cache-Control": _CACHE, "Accept-Ranges": "bytes"}
    if file.etag in _etags(request.headers.get("if-none-match")):
        return Response(b"", status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != file.etag:
        wanted = None  # the client's part is of another version: the whole file
    try:
        span = byte_range(wanted, file.size)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{file.size}"
        return Response(b"", status_code=416, headers=headers)
    status = 200
    first, last = 0, file.size - 1
    if span is not None:
        status = 206
        first, last = span
        headers["Content-Range"] = f"bytes {first}-{last}/{file.size}"
    length = last - first + 1
    if request.method == HttpMethod.HEAD:
        headers["Content-Length"] = str(length)
        return Response(b"", status_code=status, media_type=file.content_type, headers=headers)
    if length > _CHUNK:
        # a video: sent as read, a chunk at a time; a file gone meanwhile ends the body short
        headers["Content-Length"] = str(length)
        body = _chunks(store, task_id, file, first, last + 1)
        return Stream(body, status_code=status, media_type=file.content_type, headers=headers)
    if span is None:
        data = await store.read(task_id, file)
    else:
        data = await store.read_range(task_id, file, first, last + 1)
    if data is None:
        raise TaskNotFound(task_id)  # deleted since its manifest was read (retention)
    return Response(data, status_code=status, media_type=file.content_type, headers=headers)


async def _chunks(
    store: ImageStore, task_id: str, file: StoredFile, start: int, end: int
) -> AsyncIterator[bytes]:
    for at in range(start, end, _CHUNK):
        data = await store.read_range(task_id, file, at, min(at + _CHUNK, end))
        if not data:
            return
        yield data


def _etags(header: str | None) -> list[str]:
    if not header:
        return []
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]


@route(
    "/mj/image/{key:str}",
    summary="The stored image of a task (a grid whole); no api key needed",
    http_method=_METHODS,
    include_in_schema=False,
)
async def image(request: AnyRequest, key: str) -> Response[Any]:
    return await _serve(request, key, "", Manifest.part, "image")


@route(
    "/mj/image/{key:str}/{part:str}",
    summary="A quarter of a stored grid (1..4, as U1..U4), or `thumbnail` (a small WebP)",
    http_method=_METHODS,
    include_in_schema=False,
)
async def image_part(request: AnyRequest, key: str, part: str) -> Response[Any]:
    return await _serve(request, key, part, Manifest.part, "image")


@route(
    "/mj/video/{key:str}",
    summary="The first stored video of a video task; no api key needed",
    http_method=_METHODS,
    include_in_schema=False,
)
async def video(request: AnyRequest, key: str) -> Response[Any]:
    return await _serve(request, key, "", Manifest.video, "video")


@route(
    "/mj/video/{key:str}/{part:str}",
    summary="The nth stored video of a video task (1.., as U1.. number them)",
    http_method=_METHODS,
    include_in_schema=False,
)
async def video_part(request: AnyRequest, key: str, part: str) -> Response[Any]:
    return await _serve(request, key, part, Manifest.video, "video")


IMAGE_HANDLERS = [image, image_part, video, video_part]
