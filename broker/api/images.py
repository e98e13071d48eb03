"""Images sent as base64 or data-URLs: decode, recognise by their magic bytes, bound their size."""

from __future__ import annotations

import base64
import binascii

from broker.errors import InvalidImage

__all__ = ["decode_image"]

_WEBP = (b"RIFF", b"WEBP")


def _kind(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == _WEBP[0] and data[8:12] == _WEBP[1]:
        return "webp"
    return None


def decode_image(text: str | None, *, max_bytes: int, what: str = "image") -> tuple[bytes, str]:
    """(bytes, extension) of a `data:image/png;base64,...` URL or bare base64.

    Raises `InvalidImage` (code 4) for anything that is not a PNG, JPEG, WebP or GIF of at most
    `max_bytes` bytes; the message names `what` ("base64Array[1]", "maskBase64").
    """
    if not text or not text.strip():
        raise InvalidImage(f"{what} is empty")
    payload = text.strip()
    if payload.startswith("data:"):
        header, comma, payload = payload.partition(",")
        if not comma or not header.endswith(";base64"):
            raise InvalidImage(f"{what} is not a base64 data-URL")
    payload = "".join(payload.split())
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise InvalidImage(f"{what} is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{what} is not valid base64") from None
    if len(data) > max_bytes:
        raise InvalidImage(f"{what} is larger than {max_bytes} bytes")
    kind = _kind(data)
    if kind is None:
        raise InvalidImage(f"{what} is not a PNG, JPEG, WebP or GIF image")
    return data, kind
