"""Tasks whose result is in but which need more steps before SUCCESS (and its hook).

A task whose result needs finishing is written as IN_PROGRESS at 100% with `properties.finishing`
naming its steps, joined by "+" (`workers.apply`), and its id goes on the finishing stream. This
consumer runs the steps concurrently and writes SUCCESS with all their results in one write, so the
SUCCESS hook carries them:

- "translate": a describe or shorten result to be given in Chinese is translated
  (`broker.translation`, bounded by `translation.timeout_seconds`) into `finalZhPrompt`;
- "store": a result with an image is copied into the image store (`workers.image_copy`, bounded by
  `images.copy_timeout_seconds`): `imageUrl`, `imageUrls` and `thumbnailUrl` become the store's
  stable URLs and Discord's goes to `properties.discordImageUrl`. Every SUCCESS with an image gets
  it while the store is on, describe's too (the described image's link expires like any other).

It runs off the event stream: a slow translator or CDN holds up no one else's progress, and entries
of a killed worker are claimed by another like every stream's (`workers.consumer.StreamConsumer`).
A step that fails still ends the task SUCCESS, with `properties.translationError` or
`properties.imageStoreError` saying why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from msgspec.structs import replace

from broker.clock import Clock
from broker.config import Settings
from broker.models import Task, TaskStatus
from broker.store import TaskStore
from broker.translation import Translated, Translator
from workers.consumer import TRANSIENT, Entry
from workers.image_copy import Copied, ImageCopier

__all__ = ["STORE_IMAGES", "TRANSLATE_RESULT", "Finisher", "finishing_step"]

log = logging.getLogger(__name__)

#: the step: translate finalPrompt into finalZhPrompt
TRANSLATE_RESULT = "translate"
#: the step: copy the image into the image store
STORE_IMAGES = "store"
_RUNNING = (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS)


def finishing_step(settings: Settings, task: Task) -> str | None:
    """The steps `task` (as it would be at SUCCESS) needs first, joined by "+", or None."""
    steps = []
    if task.properties.result_language == "zh" and settings.translation.provider != "none":
        steps.append(TRANSLATE_RESULT)
    if settings.images.enabled and task.image_url and not task.video_url:
        # videos are not stored yet: their imageUrl is the mp4's (see README, "Images that outlive")
        steps.append(STORE_IMAGES)
    return "+".join(steps) or None


class Finisher:
    """The handler of the finishing stream: each task of a batch is finished concurrently.

    :param copier: the image store's copier; None when the store is off (a "store" step left by a
        worker that had it on then succeeds with Discord's URL).
    :param concurrency: tasks finished at once at most, whatever the batches (a batch holds an entry
        of each shard's stream, and several consumers share the finisher); None: no bound.
    """

    def __init__(
        self,
        store: TaskStore,
        translator: Translator,
        *,
        clock: Clock,
        copier: ImageCopier | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.store = store
        self.translator = translator
        self.clock = clock
        self.copier = copier
        self._room = asyncio.Semaphore(concurrency) if concurrency else None

    async def __call__(self, entries: Sequence[Entry]) -> None:
        ids = list(dict.fromkeys(fields[b"id"].decode() for _, fields in entries if b"id" in fields))
        await asyncio.gather(*(self._bounded(task_id) for task_id in ids))

    async def _bounded(self, task_id: str) -> None:
        if self._room is None:
            await self._finish(task_id)
            return
        async with self._room:
            await self._finish(task_id)

    async def _finish(self, task_id: str) -> None:
        try:
            task = await self.store.get(task_id)
            if task is None or not task.properties.finishing or task.status not in _RUNNING:
                return  # finished already (a replayed entry), or failed meanwhile
            steps = task.properties.finishing.split("+")
            translated, copied = await asyncio.gather(self._translate(task, steps), self._copy(task, steps))
            now = self.clock()

            def succeed(t: Task) -> Task | None:
                if not t.properties.finishing or t.status not in _RUNNING:
                    return None
                props = t.properties
                if translated is not None:
                    props = replace(
                        props,
                        final_zh_prompt=None if translated.error else translated.text,
                        translation_error=translated.error or props.translation_error,
                    )
                if copied is not None and copied.image_url is not None:
                    props = replace(props, discord_image_url=t.image_url)
                    t = replace(
                        t,
                        image_url=copied.image_url,
                        image_urls=copied.image_urls,
                        thumbnail_url=copied.thumbnail_url,
                    )
                elif copied is not None:
                    props = replace(props, image_store_error=copied.error)
                props = replace(props, finishing=None)
                return replace(t, status=TaskStatus.SUCCESS, properties=props, finish_time=now)

            await self.store.update(task_id, succeed, current=task)
        except TRANSIENT:
            raise  # the batch stays pending and is read again
        except Exception:
            # a bug must not block the stream; the task then times out with its own reason
            log.exception("finishing task %s failed", task_id)

    async def _translate(self, task: Task, steps: list[str]) -> Translated | None:
        if TRANSLATE_RESULT not in steps:
            return None
        return await self.translator.to_chinese(task.properties.final_prompt or "")

    async def _copy(self, task: Task, steps: list[str]) -> Copied | None:
        if STORE_IMAGES not in steps or not task.image_url:
            return None
        if self.copier is None:
            return Copied(error="image not stored: the image store is off in this worker")
        return await self.copier.copy(task)
