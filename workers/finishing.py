"""Tasks whose result is in but which need one more step before SUCCESS (and its hook).

A describe or shorten whose result is to be given in Chinese is written as IN_PROGRESS at 100%
with `properties.finishing` set (`workers.apply`), and its id goes on the finishing stream. This
consumer translates the result (`broker.translation`: bounded by `translation.timeout_seconds`) and
writes SUCCESS with `finalZhPrompt`, so the SUCCESS hook carries it. It runs off the event stream:
a slow translator holds up no one else's progress, and entries of a killed worker are claimed by
another like every stream's (`workers.consumer.StreamConsumer`). A translation that fails still ends
the task SUCCESS, with `properties.translationError` saying why.

The image store of a later issue is the second step of this kind: the SUCCESS hook then waits for
the stored copy the same way.
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
from broker.translation import Translator
from workers.consumer import TRANSIENT, Entry

__all__ = ["TRANSLATE_RESULT", "Finisher", "finishing_step"]

log = logging.getLogger(__name__)

#: the step: translate finalPrompt into finalZhPrompt
TRANSLATE_RESULT = "translate"
_RUNNING = (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS)


def finishing_step(settings: Settings, task: Task) -> str | None:
    """The step a describe or shorten result of `task` needs before SUCCESS, or None."""
    if task.properties.result_language == "zh" and settings.translation.provider != "none":
        return TRANSLATE_RESULT
    return None


class Finisher:
    """The handler of the finishing stream: each task of a batch is finished concurrently."""

    def __init__(self, store: TaskStore, translator: Translator, *, clock: Clock) -> None:
        self.store = store
        self.translator = translator
        self.clock = clock

    async def __call__(self, entries: Sequence[Entry]) -> None:
        ids = list(dict.fromkeys(fields[b"id"].decode() for _, fields in entries if b"id" in fields))
        await asyncio.gather(*(self._finish(task_id) for task_id in ids))

    async def _finish(self, task_id: str) -> None:
        try:
            task = await self.store.get(task_id)
            if task is None or not task.properties.finishing or task.status not in _RUNNING:
                return  # finished already (a replayed entry), or failed meanwhile
            translated = await self.translator.to_chinese(task.properties.final_prompt or "")
            now = self.clock()

            def succeed(t: Task) -> Task | None:
                if not t.properties.finishing or t.status not in _RUNNING:
                    return None
                props = replace(
                    t.properties,
                    finishing=None,
                    final_zh_prompt=None if translated.error else translated.text,
                    translation_error=translated.error or t.properties.translation_error,
                )
                return replace(t, status=TaskStatus.SUCCESS, properties=props, finish_time=now)

            await self.store.update(task_id, succeed, current=task)
        except TRANSIENT:
            raise  # the batch stays pending and is read again
        except Exception:
            # a bug must not block the stream; the task then times out with its own reason
            log.exception("finishing task %s failed", task_id)
