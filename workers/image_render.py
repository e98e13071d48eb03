"""What the image store keeps of one result: the image, a grid's quarters, a WebP thumbnail (pure)."""

from __future__ import annotations

import hashlib
import io

from PIL import Image

from broker.image_store import StoredFile

__all__ = ["CONTENT_TYPES", "Rendered", "render_copy", "stored_file", "warm_up"]

CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
}
#: the format of the quarters, by the grid's: a GIF's first frame is cut into PNGs
_QUARTER_FORMAT = {"png": ("PNG", "png"), "jpg": ("JPEG", "jpg"), "webp": ("WEBP", "webp")}

Rendered = list[tuple[StoredFile, bytes]]


def stored_file(name: str, data: bytes) -> StoredFile:
    ext = name.rsplit(".", 1)[-1]
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    return StoredFile(name=name, content_type=CONTENT_TYPES[ext], size=len(data), etag=etag)


def _encode(image: Image.Image, pil_format: str) -> bytes:
    buf = io.BytesIO()
    if pil_format == "JPEG":
        image.convert("RGB").save(buf, format="JPEG", quality=92)
    elif pil_format == "WEBP":
        # method 2 of 0-6: the copy is on the SUCCESS hook's path, and a tiny file is not the point
        image.save(buf, format="WEBP", quality=85, method=2)
    else:
        image.save(buf, format=pil_format, compress_level=1)
    return buf.getvalue()


def render_copy(data: bytes, ext: str, *, grid: bool, thumbnail_px: int) -> tuple[Rendered, int, int]:
    """The files of one copy: (image, quarters..., thumbnail), with the image's width and height.

    `data` is an image `broker.image_fetch.image_type` accepted as `ext`. A grid is cut into its
    four quarters, left to right then top to bottom (as U1..U4 number them), each half its width
    and height.
    """
    files: Rendered = [(stored_file(f"image.{ext}", data), data)]
    with Image.open(io.BytesIO(data)) as opened:
        opened.seek(0)
        image = opened.convert("RGBA") if opened.mode in ("P", "LA", "PA") else opened.copy()
    width, height = image.size
    if grid:
        pil_format, quarter_ext = _QUARTER_FORMAT.get(ext, ("PNG", "png"))
        half_w, half_h = width // 2, height // 2
        for n in range(4):
            left, top = (n % 2) * half_w, (n // 2) * half_h
            quarter = _encode(image.crop((left, top, left + half_w, top + half_h)), pil_format)
            files.append((stored_file(f"{n + 1}.{quarter_ext}", quarter), quarter))
    thumb = image.copy()
    thumb.thumbnail((thumbnail_px, thumbnail_px))
    small = _encode(thumb, "WEBP")
    files.append((stored_file("thumb.webp", small), small))
    return files, width, height


def warm_up() -> None:
    """Load what the first copy would: every Pillow plugin and the PNG, JPEG and WebP codecs.

    Pillow imports its format plugins on the first save to a format outside its few preloaded
    ones (the thumbnail's WebP): ~0.5 s of imports under the import lock, which held back every
    copy of the first second, and so their SUCCESS hooks (the image-store bench's p99).
    """
    Image.init()
    for fmt in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), "white").save(buf, format=fmt)
        ext = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[fmt]
        render_copy(buf.getvalue(), ext, grid=True, thumbnail_px=16)
