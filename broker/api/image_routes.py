"""`GET /mj/image/{taskId}`, `/mj/image/{taskId}/{n}` (n = 1..4) and `/mj/image/{taskId}/thumbnail`.

The image store's copies (`broker.image_store`), served without an api key (the URLs go into
tasks, hooks and web pages) and with what browsers and CDNs expect of static images:

- a strong ETag per file (a digest of its bytes) and ``If-None-Match`` -> 304;
- ``Cache-Control: public, max-age=31536000, immutable``: a stored copy never changes;
- single byte ranges (``Range: bytes=a-b``, ``a-``, ``-n``) -> 206 with ``Content-Range``, an
  unsatisfiable one -> 416, ``If-Range`` with another ETag -> the whole file; several ranges in one
  request are answered with the whole file (RFC 9110 allows it);
- CORS for any origin (front ends draw results into a canvas), on every answer, and preflights
  answered here: the door (`broker.api.auth`) hands these paths to `image_door`.

The routes are left out of the OpenAPI schema: they are static files, not API operations (no api
key, image bodies), and listed in the README. An unknown task, an id that is not one (`..`,
slashes, absolute paths never name a file: see `broker.image_store.valid_task_id`) or a part the
task has not -> 404, code 4.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from broker.api.context import context_of
from broker.errors import NotFound, TaskNotFound, echo
from broker.image_store import StoredFile

__all__ = ["IMAGE_HANDLERS", "IMAGE_PATH", "Unsatisfiable", "byte_range", "image_door"]

AnyRequest = Request[Any, Any, Any]

IMAGE_PATH = "/mj/image/"
_CACHE = "public, max-age=31536000, immutable"
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"ETag, Content-Length, Content-Range, Accept-Ranges"),
]
_PREFLIGHT = [
    *_CORS,
    (b"access-control-allow-methods", b"GET, OPTIONS"),
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


async def image_door(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The door of the image paths: no api key, CORS for any origin, preflights answered."""
    if scope.get("method") == "OPTIONS":
        await send({"type": "http.response.start", "status": 204, "headers": _PREFLIGHT})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return

    async def with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *_CORS]
        await send(message)

    await app(scope, receive, with_cors)


async def _serve(request: AnyRequest, task_id: str, part: str) -> Response[bytes]:
    store = context_of(request).images
    manifest = await store.manifest(task_id) if store is not None else None
    if manifest is None:
        raise TaskNotFound(task_id)
    file: StoredFile | None = manifest.part(part)
    if file is None:
        raise NotFound(f"task {echo(task_id)} has no image {echo(part)}")
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
    data = await store.read(task_id, file) if store is not None else None
    if data is None:
        raise TaskNotFound(task_id)  # deleted since its manifest was read (retention)
    if span is None:
        return Response(data, media_type=file.content_type, headers=headers)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{file.size}"
    return Response(data[first : last + 1], status_code=206, media_type=file.content_type, headers=headers)


def _etags(header: str | None) -> list[str]:
    if not header:
        return []
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]


@get(
    "/mj/image/{task_id:str}",
    summary="The stored image of a task (a grid whole); no api key needed",
    include_in_schema=False,
)
async def image(request: AnyRequest, task_id: str) -> Response[bytes]:
    return await _serve(request, task_id, "")


@get(
    "/mj/image/{task_id:str}/{part:str}",
    summary="A quarter of a stored grid (1..4, as U1..U4), or `thumbnail` (a small WebP)",
    include_in_schema=False,
)
async def image_part(request: AnyRequest, task_id: str, part: str) -> Response[bytes]:
    return await _serve(request, task_id, part)


IMAGE_HANDLERS = [image, image_part]
