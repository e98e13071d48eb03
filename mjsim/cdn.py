"""Fake CDN: deterministic Pillow renders of job images and storage of uploaded files."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from mjsim.state import SimState

__all__ = [
    "TILE",
    "CdnEntry",
    "attachment_payload",
    "cdn_path",
    "file_body",
    "publish",
    "render",
    "signed_query",
]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

#: Edge of one rendered tile in pixels; kept tiny so rendering never bounds throughput.
TILE = 128

#: What the CDN keeps at a path: uploaded bytes, or the (render seed, layout) of an image drawn on request.
CdnEntry = bytes | tuple[str, str]

_CONTENT_TYPES = {
    "png": "image/png",
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "mp4": "video/mp4",
}


def _palette(seed: str) -> list[tuple[int, int, int]]:
    digest = hashlib.sha256(seed.encode()).digest()
    return [(digest[i], digest[i + 1], digest[i + 2]) for i in range(0, 30, 3)]


def _tile(seed: str, index: int, size: int) -> Image.Image:
    colours = _palette(f"{seed}#{index}")
    img = Image.new("RGB", (size, size), colours[0])
    draw = ImageDraw.Draw(img)
    a, b = colours[1], colours[2]
    q = size // 4
    draw.ellipse((q, q, size - q, size - q), fill=a)
    draw.rectangle((0, size - q, size, size), fill=b)
    return img


#: Distinct looks per layout/format. Seeds are hashed into this many buckets so the render cache
#: warms up after a few dozen jobs and rendering never bounds event throughput.
LOOKS = 48


def render(seed: str, layout: str, fmt: str) -> bytes:
    """Render an image for ``seed``: ``layout`` "grid" (2x2 tiles) or "single"; ``fmt`` png/webp/jpeg.

    Same arguments give the same bytes, so a prompt always looks the same (different prompts may
    share one of ``LOOKS`` looks).
    """
    bucket = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % LOOKS
    return _render_look(bucket, layout, fmt)


@lru_cache(maxsize=4 * LOOKS)
def _render_look(bucket: int, layout: str, fmt: str) -> bytes:
    seed = f"look-{bucket}"
    if layout == "grid":
        img = Image.new("RGB", (TILE * 2, TILE * 2))
        for i in range(4):
            img.paste(_tile(seed, i, TILE), ((i % 2) * TILE, (i // 2) * TILE))
    else:
        img = _tile(seed, 0, TILE * 2)
    buf = io.BytesIO()
    pil_fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(fmt, fmt.upper())
    # compress_level=1 / method=0: size barely matters here, speed does.
    if pil_fmt == "PNG":
        img.save(buf, format="PNG", compress_level=1)
    elif pil_fmt == "WEBP":
        img.save(buf, format="WEBP", quality=50, method=0)
    else:
        img.save(buf, format=pil_fmt)
    return buf.getvalue()


def content_type(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower()
    return _CONTENT_TYPES.get(ext, "application/octet-stream")


def cdn_path(channel_id: str, attachment_id: str, filename: str, *, ephemeral: bool = False) -> str:
    prefix = "ephemeral-attachments" if ephemeral else "attachments"
    return f"/{prefix}/{channel_id}/{attachment_id}/{filename}"


def signed_query(path: str, *, now: float | None = None) -> str:
    """Discord-style signed query ``?ex=<hex>&is=<hex>&hm=<hex>&`` (not verified on read)."""
    issued = int(now if now is not None else time.time())
    hm = hashlib.sha256(f"{path}{issued}".encode()).hexdigest()
    return f"?ex={issued + 86400:x}&is={issued:x}&hm={hm}&"


def attachment_payload(
    *,
    base_url: str,
    path: str,
    attachment_id: str,
    filename: str,
    size: int,
    width: int,
    height: int,
    query: str | None = None,
) -> Payload:
    """An attachment object as Discord sends it inside messages (`query`: its signed query)."""
    url = base_url + path + (query if query is not None else signed_query(path))
    return {
        "id": attachment_id,
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url,
        "width": width,
        "height": height,
        "content_type": content_type(filename),
        "ephemeral": path.startswith("/ephemeral-"),
        "placeholder": "",
        "placeholder_version": 1,
    }


def file_body(entry: CdnEntry, path: str) -> bytes:
    """The bytes served for ``entry`` at ``path``; a rendered image takes its format from the extension."""
    if isinstance(entry, bytes):
        return entry
    seed, layout = entry
    return render(seed, layout, path.rsplit(".", 1)[-1].lower())


def publish(
    state: SimState, channel_id: str, filename: str, entry: CdnEntry, *, ephemeral: bool = False
) -> Payload:
    """Serve ``entry`` under a new attachment id; return the attachment object that points at it.

    Rendered images are ``TILE * 2`` pixels square; uploads are echoed without dimensions (0 x 0).
    """
    attachment_id = state.ids.snowflake()
    path = cdn_path(channel_id, attachment_id, filename, ephemeral=ephemeral)
    state.files[path] = entry
    edge = 0 if isinstance(entry, bytes) else TILE * 2
    return attachment_payload(
        base_url=state.base_url,
        path=path,
        attachment_id=attachment_id,
        filename=filename,
        size=len(file_body(entry, path)),
        width=edge,
        height=edge,
        query=state.cdn_links.query(path, lifetime_s=state.settings.cdn_link_seconds),
    )
