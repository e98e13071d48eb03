"""Images of our own store named by URL in a request (a video's start or end frame).

A finished task's ``imageUrl`` is the store's URL once the store is on, and clients hand it back
(animate this grid's second image). Midjourney cannot fetch a store behind a private or loopback
address, and the URL guard rightly refuses to fetch one for the client; but the bytes are ours: they
are read from the store and uploaded like a base64 image.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from broker.api.context import ApiContext
from broker.errors import ValidationFailed
from broker.image_store import split_key

__all__ = ["stored_image"]

#: extension of each content type the store keeps images as
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


async def stored_image(ctx: ApiContext, url: str, what: str) -> tuple[bytes, str] | None:
    """(bytes, extension) of the stored image `url` names, or None when it is not a URL of the store.

    Raises `ValidationFailed` (code 4) for a URL of the store that names no stored image.
    """
    prefix = f"{ctx.settings.image_base_url()}/mj/image/"
    if ctx.images is None or not url.startswith(prefix):
        return None
    key, _, part = urlsplit(url).path.removeprefix(urlsplit(prefix).path).partition("/")
    task_id, token = split_key(key)
    manifest = await ctx.images.manifest(task_id)
    file = None
    if manifest is not None and hmac.compare_digest(token.encode(), manifest.token.encode()):
        file = manifest.part(part)
    data = await ctx.images.read(task_id, file) if file is not None else None
    if file is None or data is None or file.content_type not in _EXTENSIONS:
        raise ValidationFailed(f"{what}: the image store has no image at that URL")
    return data, _EXTENSIONS[file.content_type]
