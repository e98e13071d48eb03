"""Copy a finished task's image into the image store (`broker.image_store`): the "store" finishing step.

Run by `workers.finishing.Finisher` before SUCCESS is written, so the SUCCESS hook already carries
the stable URLs. One copy, bounded by ``images.copy_timeout_seconds``:

1. Download the Discord URL through `broker.image_fetch.ImageFetcher` (the URL guard, the size
   cap ``tasks.max_image_bytes``, Pillow's verify).
2. A link that has expired (its ``ex=`` is past, or the CDN answers 403/404/410) is refreshed by
   the bridge that holds the task's account (`broker.bridge_calls`, kind "refresh": Discord's
   ``POST /attachments/refresh-urls``), then downloaded again. The bridge asks, not this worker:
   the account's REST identity (token, client headers, TLS fingerprint, rate-limit buckets) lives
   in its discord.py-self client, and a second client on the same token from another process is
   what Discord's abuse checks look for. Workers hold no Discord session.
3. Cut a grid into its quarters and make the thumbnail (`workers.image_render`, in a thread).
4. Note the copy for retention (`workers.image_retention`), then write the files and the manifest.

A copy that fails or times out is no failure of the task: `Copied.error` says why, and the task
succeeds with Discord's URL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker import keys
from broker.bridge_calls import call_bridge, new_call
from broker.clock import Clock
from broker.config import Settings
from broker.errors import BrokerError
from broker.image_fetch import FetchRefused, ImageFetcher
from broker.image_store import ImageStore, Manifest
from broker.models import ImageUrl, Task
from workers.image_render import render_copy

__all__ = ["Copied", "ImageCopier", "image_urls", "is_grid", "link_expired"]

log = logging.getLogger(__name__)

#: statuses with which a CDN says a link is no longer valid (Discord: 404 "This content is no
#: longer available.")
_EXPIRED_STATUSES = frozenset({403, 404, 410})
_GRID_BUTTON = "MJ::JOB::upsample::"


class Copied(msgspec.Struct, frozen=True, kw_only=True):
    """What one copy gave: the store's URLs, or why there are none."""

    image_url: str | None = None
    image_urls: list[ImageUrl] | None = None
    thumbnail_url: str | None = None
    error: str | None = None


def is_grid(task: Task) -> bool:
    """Whether the result is a 2x2 grid: it has the U1..U4 buttons."""
    return any(button.custom_id.startswith(_GRID_BUTTON) for button in task.buttons)


def link_expired(url: str, now_ms: int) -> bool:
    """Whether a signed CDN link (``ex=<hex epoch seconds>``) has expired."""
    try:
        ex = parse_qs(urlsplit(url).query).get("ex") or []
        return bool(ex) and int(ex[0], 16) * 1000 <= now_ms
    except ValueError:
        return False


def image_urls(base_url: str, task_id: str, *, quarters: int) -> tuple[str, list[ImageUrl], str]:
    """imageUrl, imageUrls and thumbnailUrl of a stored task (served by `broker.api.image_routes`)."""
    image = f"{base_url}/mj/image/{task_id}"
    parts = [ImageUrl(url=f"{image}/{n}") for n in range(1, quarters + 1)] or [ImageUrl(url=image)]
    return image, parts, f"{image}/thumbnail"


class ImageCopier:
    """Copies results into the store.

    :param store: the image store.
    :param fetcher: guarded, capped downloads.
    :param redis: bridge calls (link refresh) and the retention set.
    :param settings: the settings in force (`images`, `tasks.retention_days`).
    """

    def __init__(
        self,
        store: ImageStore,
        fetcher: ImageFetcher,
        redis: aioredis.Redis,
        *,
        settings: Callable[[], Settings],
        clock: Clock,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.redis = redis
        self.settings = settings
        self.clock = clock

    async def copy(self, task: Task) -> Copied:
        """Copy `task`'s image (its `imageUrl`, Discord's); never raises for a copy that fails."""
        settings = self.settings()
        timeout = settings.images.copy_timeout_seconds
        url = task.image_url or ""
        try:
            async with asyncio.timeout(timeout) as scope:
                data, ext = await self._download(task, url, deadline=scope.when() or 0.0)
                files, _, _ = await asyncio.to_thread(
                    render_copy, data, ext, grid=is_grid(task), thumbnail_px=settings.images.thumbnail_px
                )
                manifest = Manifest(
                    image=files[0][0],
                    quarters=[f for f, _ in files[1:-1]],
                    thumbnail=files[-1][0],
                    stored_ms=self.clock(),
                )
                # noted before written: a copy is never left behind by a crash between the two
                expires = self.clock() + int(settings.tasks.retention_days * 86_400_000)
                await self.redis.zadd(keys.stored_images(task.id), {task.id: expires}, gt=True)
                await self.store.save(task.id, files, manifest)
        except TimeoutError:
            return self._failed(task, f"the copy took longer than {timeout:g} s")
        except FetchRefused as exc:
            return self._failed(task, exc.reason)
        except (OSError, ValueError, RedisError) as exc:
            return self._failed(task, f"the store could not be written ({type(exc).__name__})")
        image, parts, thumbnail = image_urls(
            settings.image_base_url(), task.id, quarters=len(manifest.quarters)
        )
        return Copied(image_url=image, image_urls=parts, thumbnail_url=thumbnail)

    def _failed(self, task: Task, why: str) -> Copied:
        log.warning("task %s: image not copied into the store: %s", task.id, why)
        return Copied(error=f"image not stored: {why}")

    async def _download(self, task: Task, url: str, *, deadline: float) -> tuple[bytes, str]:
        if link_expired(url, self.clock()):
            url = await self._refresh(task, url, deadline=deadline)
            return await self.fetcher.fetch(url)
        try:
            return await self.fetcher.fetch(url)
        except FetchRefused as exc:
            if exc.status not in _EXPIRED_STATUSES:
                raise
        return await self.fetcher.fetch(await self._refresh(task, url, deadline=deadline))

    async def _refresh(self, task: Task, url: str, *, deadline: float) -> str:
        """A fresh link for `url`, from the bridge that holds the task's account."""
        if not task.instance_id:
            raise FetchRefused("the link has expired and the task has no account to refresh it")
        # the bridge's answer is awaited until shortly before the copy's own bound (`deadline`, on
        # the loop's clock), so that a bridge that never answers is what the task is told
        left = deadline - asyncio.get_running_loop().time()
        call = new_call("refresh", urls=[url], timeout=max(0.2, left - min(0.5, left / 4)))
        try:
            fresh = await call_bridge(self.redis, task.instance_id, call)
        except BrokerError as exc:
            raise FetchRefused(f"the link has expired and was not refreshed: {exc}") from None
        if not isinstance(fresh, list) or len(fresh) != 1:
            raise FetchRefused("the link has expired and the bridge gave no fresh one")
        log.info("task %s: expired CDN link refreshed", task.id)
        return fresh[0]
