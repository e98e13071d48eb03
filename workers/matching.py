"""Find the task a parsed gateway event is about.

The order follows the reference (discord-protocol.md §4.4), strongest key first:

1. ``nonce``: the bridge indexes it (with its SUBMITTED write) before sending the interaction;
2. message id: the worker binds the start/progress/final message ids as it sees them;
3. interaction id: INTERACTION_SUCCESS links it to the nonce; later messages carry it in
   ``interaction_metadata.id``;
4. referenced message (+ image index): a U/V/zoom/pan result replies to its parent's message; the
   target is the parent's child task, found among the account's running tasks;
5. job hash (the uuid of the image), indexed when a task finishes;
6. prompt: the oldest running task of the account whose normalised prompt equals the event's, within
   the account's time window; a second pass ignores ``--`` parameters.

An event that none of these finds is counted and logged at debug, never attached to a guess.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from broker import keys
from broker.clock import Clock
from broker.models import Task, TaskAction, TaskStatus
from broker.queues import AccountQueues
from broker.store import TaskStore
from workers.parser import Change

__all__ = ["Match", "Matcher", "normalise_prompt"]

log = logging.getLogger(__name__)


_LINK = re.compile(r"<(https?://[^>\s]+)>")
_SPACES = re.compile(r"\s+")
# Index kinds whose value names one task forever (a job hash can be reused by a child job).
_STABLE_IDS = frozenset({"nonce", "message", "interaction"})
# How many tasks and ids a worker remembers: the tasks in flight, a few MB.
_REMEMBERED_TASKS = 4096
_REMEMBERED_IDS = 16384
# Kinds whose message is worth a prompt search; the others only match by ids.
_PROMPT_KINDS = frozenset({"start", "progress", "done"})
# Parser actions that can land on a task of another action (a blend final reads as IMAGINE, a
# reroll as IMAGINE/REROLL, a remix as VARIATION).
_COMPATIBLE: dict[TaskAction, frozenset[TaskAction]] = {
    TaskAction.IMAGINE: frozenset({TaskAction.IMAGINE, TaskAction.BLEND, TaskAction.REROLL}),
    TaskAction.REROLL: frozenset({TaskAction.REROLL, TaskAction.IMAGINE, TaskAction.VARIATION}),
    TaskAction.BLEND: frozenset({TaskAction.BLEND, TaskAction.IMAGINE}),
    TaskAction.VARIATION: frozenset({TaskAction.VARIATION, TaskAction.REROLL}),
    TaskAction.VIDEO: frozenset({TaskAction.VIDEO, TaskAction.VIDEO_EXTEND}),
}
# Only a video job's own messages may land on a video task, even when no task of the message's action
# is running (the prompt search's fallback): an extend first brings one video up, a message with the
# video's prompt and hash that is a step of the extend, not its result.
_VIDEO_ONLY = frozenset({TaskAction.VIDEO, TaskAction.VIDEO_EXTEND})


def normalise_prompt(prompt: str, *, drop_params: bool = False) -> str:
    """Compare form of a prompt: ``<url>`` unwrapped, spaces collapsed, optionally ``--params`` cut."""
    text = _LINK.sub(r"\1", prompt)
    if drop_params:
        # Midjourney puts every parameter after the prompt text, so the first " --" ends the words.
        cut = f" {text}".find(" --")
        text = text[: max(cut - 1, 0)] if cut >= 0 else text
    return _SPACES.sub(" ", text).strip().lower()


class Match:
    """The task an event belongs to and the key that found it (for logs and tests)."""

    __slots__ = ("by", "task")

    def __init__(self, task: Task, by: str) -> None:
        self.task = task
        self.by = by


class Matcher:
    """Looks tasks up by the keys of a `Change`.

    :param store: the task store (indexes and records).
    :param queues: the account queues (which tasks of an account are running).
    :param window_ms: per account id, how far back a prompt match may look (the account timeout).
    :param clock: epoch milliseconds.
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        queues: AccountQueues,
        window_ms: Callable[[str], int],
        clock: Clock,
    ) -> None:
        self.store = store
        self.queues = queues
        self.redis: aioredis.Redis = store.redis
        self.window_ms = window_ms
        self.clock = clock
        #: in-process count of unmatched events, by kind
        self.unmatched: dict[str, int] = {}
        self._ids: dict[tuple[str, str], str] = {}
        self._tasks: dict[str, Task] = {}

    async def match(self, account: str, change: Change, *, weak: bool = True) -> Match | None:
        """The task of `change`; with ``weak=False`` only by ids (nonce, message, interaction).

        The weak keys (reference, hash, prompt) can only tell tasks apart by what earlier events
        bound, so a caller applying events concurrently tries them last.
        """
        ids = [
            (by, value)
            for by, value in (
                ("nonce", change.nonce),
                ("message", change.message_id),
                ("interaction", change.interaction_id),
            )
            if value
        ]
        known = await self._known(ids)
        if known is not None:
            return known
        found = await self.store.find_first(ids)
        if found is not None:
            by, first = found
            self.remember(first, [(kind, value) for kind, value in ids if kind == by])
            return Match(first, by)
        if not weak:
            return None
        if change.referenced_message_id:
            task = await self._child_of(account, change)
            if task is not None:
                return Match(task, "reference")
        by_hash = await self._indexed("hash", change.hash) if change.hash else None
        if by_hash is not None and not by_hash.status.is_terminal:
            return Match(by_hash, "hash")
        if change.prompt is not None and change.kind in _PROMPT_KINDS:
            # A finished task with this hash may be the parent of the job reporting (some results
            # reuse the parent's uuid): a live task with the same prompt is the better match.
            task = await self._by_prompt(account, change)
            if task is not None:
                return Match(task, "prompt")
        return Match(by_hash, "hash") if by_hash is not None else None

    def remember(self, task: Task | None, ids: Sequence[tuple[str, str]]) -> None:
        """Keep this process's latest copy of `task` and ids (nonce, message, interaction) of it.

        Those ids never move to another task, so they are safe to remember. The copy may go stale
        (another process writes the task): `TaskStore.update` only takes it as a first guess.
        """
        if task is None:
            return
        _put(self._tasks, task.id, task, _REMEMBERED_TASKS)
        for kind, value in ids:
            if kind in _STABLE_IDS:
                _put(self._ids, (kind, value), task.id, _REMEMBERED_IDS)

    def knows(self, id_: tuple[str, str], task_id: str) -> bool:
        """Whether this process already saw (kind, value) indexed to `task_id`."""
        return self._ids.get(id_) == task_id

    async def _known(self, ids: Sequence[tuple[str, str]]) -> Match | None:
        for by, value in ids:
            task_id = self._ids.get((by, value))
            if task_id is None:
                continue
            task = self._tasks.get(task_id) or await self.store.get(task_id)
            if task is not None:
                self.remember(task, ())
                return Match(task, by)
        return None

    async def count_unmatched(self, account: str, change: Change) -> None:
        self.unmatched[change.kind] = self.unmatched.get(change.kind, 0) + 1
        await self.redis.incr(keys.UNMATCHED_EVENTS)
        log.debug(
            "unmatched %s %s event on account %s (message %s, nonce %s)",
            change.kind,
            change.event,
            account,
            change.message_id,
            change.nonce,
        )

    async def _indexed(self, kind: str, value: str) -> Task | None:
        found = await self.store.find_first([(kind, value)])
        return found[1] if found else None

    async def _running(self, account: str) -> list[tuple[Task, int]]:
        slots = await self.queues.running(account)
        if not slots:
            return []
        tasks = {t.id: t for t in await self.store.get_many([task_id for task_id, _ in slots])}
        return [(tasks[task_id], at) for task_id, at in slots if task_id in tasks]

    async def _child_of(self, account: str, change: Change) -> Task | None:
        """The running task started from the referenced (parent) message, with the same image index."""
        parent_id = await self.store.find("message", change.referenced_message_id or "")
        if parent_id is None:
            return None
        candidates = [
            task
            for task, _ in await self._running(account)
            if task.parent_id == parent_id and not task.status.is_terminal
        ]
        if change.action is not None:
            wanted = _COMPATIBLE.get(change.action, frozenset({change.action}))
            candidates = [t for t in candidates if t.action in wanted]
        if change.index is not None:
            exact = [t for t in candidates if t.properties.index == change.index]
            candidates = exact or [t for t in candidates if t.properties.index is None]
        if len(candidates) > 1:
            candidates = [t for t in candidates if _same_button(t, change)] or candidates
        # Several siblings from the same button are interchangeable; different buttons are a guess.
        if len({t.custom_id for t in candidates}) > 1:
            return None
        return _oldest_started(candidates)

    async def _by_prompt(self, account: str, change: Change) -> Task | None:
        prompt = change.prompt or ""
        since = self.clock() - self.window_ms(account)
        running = [
            task
            for task, at in await self._running(account)
            if task.status in (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS) and at >= since
        ]
        if change.action is not None:
            wanted = _COMPATIBLE.get(change.action, frozenset({change.action}))
            running = [t for t in running if t.action in wanted] or [
                t for t in running if t.action not in _VIDEO_ONLY
            ]
        for drop_params in (False, True):
            target = normalise_prompt(prompt, drop_params=drop_params)
            if not target:
                continue
            found = [t for t in running if target in _task_prompts(t, drop_params=drop_params)]
            if found:
                return _oldest_started(found)
        return None


# What a result message says about the button that made it (discord-protocol.md §4.2, §5).
_BUTTON_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bPan (Left|Right|Up|Down)\b"), "pan_{0}"),
    (re.compile(r"\bVariations \(Strong\)"), "high_variation"),
    (re.compile(r"\bVariations \(Subtle\)"), "low_variation"),
    (re.compile(r"\bVariations \(Region\)"), "Inpaint"),
    (re.compile(r"\bUpscaled \((Subtle|Creative)\)"), "_2x_{0}"),
    (re.compile(r"--zoom 2\b"), "Outpaint::50"),
    (re.compile(r"--zoom 1\.5\b"), "Outpaint::75"),
)


def _same_button(task: Task, change: Change) -> bool:
    """False when the result's wording names a different button than the one the task pressed."""
    text = f"{change.prompt or ''} {change.content or ''}"
    custom_id = task.custom_id or ""
    for pattern, fragment in _BUTTON_HINTS:
        found = pattern.search(text)
        if found:
            wanted = fragment.format(*(g.lower() for g in found.groups()))
            if wanted.lower() not in custom_id.lower():
                return False
    return True


def _put(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """Insert as the newest entry, dropping the oldest beyond `limit`."""
    cache.pop(key, None)
    cache[key] = value
    if len(cache) > limit:
        del cache[next(iter(cache))]


def _task_prompts(task: Task, *, drop_params: bool) -> set[str]:
    texts = (task.properties.final_prompt, task.prompt_en, task.prompt)
    return {normalise_prompt(t, drop_params=drop_params) for t in texts if t}


def _oldest_started(tasks: Sequence[Task]) -> Task | None:
    if not tasks:
        return None
    return min(tasks, key=lambda t: (t.start_time or 0, t.submit_time or 0, t.id))
