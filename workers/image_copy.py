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

A video task (``videoUrls``: VIDEO, VIDEO_EXTEND, a video's U) is copied the same way, each mp4
through `ImageFetcher.fetch_video` (``video/mp4``, capped at ``images.max_video_bytes``), refreshed
when expired, and kept whole (``video1.mp4``..): no quarters, no thumbnail.

A copy that fails or times out is no failure of the task: `Copied.error` says why, and the task
succeeds with Discord's URL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
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
from broker.image_store import ImageStore, Manifest, StoredFile, new_token, store_key
from broker.models import ImageUrl, Task, VideoUrl
from workers.image_render import render_copy, stored_file, warm_up

__all__ = ["Copied", "ImageCopier", "image_urls", "is_grid", "link_expired", "video_urls"]

log = logging.getLogger(__name__)

#: statuses with which a CDN says a link is no longer valid (Discord: 404 "This content is no
#: longer available.")
_EXPIRED_STATUSES = frozenset({403, 404, 410})
_GRID_BUTTON = "MJ::JOB::upsample::"
_T = TypeVar("_T")
#: how long a task's URL token is kept for the copies of it (all made while it finishes: minutes)
_TOKEN_MS = 86_400_000


class Copied(msgspec.Struct, frozen=True, kw_only=True):
    """What one copy gave: the store's URLs, or why there are none."""

    image_url: str | None = None
    image_urls: list[ImageUrl] | None = None
    thumbnail_url: str | None = None
    #: a video task's stored videos (``imageUrl`` is then the first, as ``videoUrl`` is)
    video_urls: list[VideoUrl] | None = None
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


def image_urls(
    base_url: str, task_id: str, *, quarters: int, token: str = ""
) -> tuple[str, list[ImageUrl], str]:
    """imageUrl, imageUrls and thumbnailUrl of a stored task (served by `broker.api.image_routes`)."""
    image = f"{base_url}/mj/image/{store_key(task_id, token)}"
    parts = [ImageUrl(url=f"{image}/{n}") for n in range(1, quarters + 1)] or [ImageUrl(url=image)]
    return image, parts, f"{image}/thumbnail"


def video_urls(base_url: str, task_id: str, *, count: int, token: str = "") -> tuple[str, list[VideoUrl]]:
    """videoUrl and videoUrls of a stored video task (served by `broker.api.image_routes`)."""
    first = f"{base_url}/mj/video/{store_key(task_id, token)}"
    return first, [VideoUrl(url=f"{first}/{n}") for n in range(1, count + 1)]


def _video_files(videos: list[bytes]) -> list[tuple[StoredFile, bytes]]:
    return [(stored_file(f"video{n}.mp4", data), data) for n, data in enumerate(videos, start=1)]


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

    async def warm_up(self) -> None:
        """Do once, at start, what the first copy would otherwise pay on the SUCCESS hook's path."""
        await asyncio.to_thread(warm_up)

    async def copy(self, task: Task) -> Copied:
        """Copy `task`'s image (its `imageUrl`, Discord's) or videos (its `videoUrls`); never raises
        for a copy that fails."""
        settings = self.settings()
        timeout = settings.images.copy_timeout_seconds
        videos = [v.url for v in task.video_urls or ()] or ([task.video_url] if task.video_url else [])
        what = "videos" if videos else "image"
        try:
            async with asyncio.timeout(timeout) as scope:
                deadline = scope.when() or 0.0
                if videos:
                    manifest = await self._videos(task, videos, deadline=deadline)
                else:
                    manifest = await self._image(task, task.image_url or "", deadline=deadline)
        except TimeoutError:
            return self._failed(task, what, f"the copy took longer than {timeout:g} s")
        except FetchRefused as exc:
            return self._failed(task, what, exc.reason)
        except (OSError, ValueError, RedisError) as exc:
            return self._failed(task, what, f"the store could not be written ({type(exc).__name__})")
        base = settings.image_base_url()
        if videos:
            first, stored = video_urls(base, task.id, count=len(manifest.videos), token=manifest.token)
            return Copied(image_url=first, video_urls=stored)
        image, parts, thumbnail = image_urls(
            base, task.id, quarters=len(manifest.quarters), token=manifest.token
        )
        return Copied(image_url=image, image_urls=parts, thumbnail_url=thumbnail)

    async def _image(self, task: Task, url: str, *, deadline: float) -> Manifest:
        settings = self.settings()
        data, ext = await self._download(task, url, self.fetcher.fetch, deadline=deadline)
        files, _, _ = await asyncio.to_thread(
            render_copy, data, ext, grid=is_grid(task), thumbnail_px=settings.images.thumbnail_px
        )
        manifest = Manifest(
            image=files[0][0],
            quarters=[f for f, _ in files[1:-1]],
            thumbnail=files[-1][0],
            stored_ms=self.clock(),
            token=await self._token(task),
        )
        await self._save(task, files, manifest)
        return manifest

    async def _videos(self, task: Task, urls: list[str], *, deadline: float) -> Manifest:
        cap = self.settings().images.max_video_bytes

        async def fetch(url: str) -> bytes:
            return await self.fetcher.fetch_video(url, max_bytes=cap)

        videos = await asyncio.gather(*(self._download(task, url, fetch, deadline=deadline) for url in urls))
        files = await asyncio.to_thread(_video_files, list(videos))  # their digests: megabytes
        manifest = Manifest(
            videos=[f for f, _ in files], stored_ms=self.clock(), token=await self._token(task)
        )
        await self._save(task, files, manifest)
        return manifest

    async def _token(self, task: Task) -> str:
        """The copy's URL token: one per task, whichever copy of it draws first.

        The same task can be copied twice at once (the event worker adds a finishing entry again
        for each event of a task still finishing); each copy writes the manifest, and the task keeps
        the URLs of whichever writes SUCCESS: both must carry the same token.
        """
        drawn = new_token()
        earlier = await self.redis.set(keys.image_token(task.id), drawn, nx=True, get=True, px=_TOKEN_MS)
        return earlier.decode() if earlier else drawn

    async def _save(self, task: Task, files: list[tuple[StoredFile, bytes]], manifest: Manifest) -> None:
        # noted before written: a copy is never left behind by a crash between the two
        expires = self.clock() + int(self.settings().tasks.retention_days * 86_400_000)
        await self.redis.zadd(keys.stored_images(task.id), {task.id: expires}, gt=True)
        await self.store.save(task.id, files, manifest)

    def _failed(self, task: Task, what: str, why: str) -> Copied:
        log.warning("task %s: %s not copied into the store: %s", task.id, what, why)
        return Copied(error=f"{what} not stored: {why}")

    async def _download(
        self, task: Task, url: str, fetch: Callable[[str], Awaitable[_T]], *, deadline: float
    ) -> _T:
        if link_expired(url, self.clock()):
            return await fetch(await self._refresh(task, url, deadline=deadline))
        try:
            return await fetch(url)
        except FetchRefused as exc:
            if exc.status not in _EXPIRED_STATUSES:
                raise
        return await fetch(await self._refresh(task, url, deadline=deadline))

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
