"""Event-to-hook latency: when the bridge received the event behind each task revision a hook carries.

The applier notes, for each write an event caused, ``(task, revision) -> event.at`` (the epoch ms the
bridge received it); the hook delivery that makes the receiver accept a revision takes the notes of
that revision and the older ones (a delivery overtaken by a newer revision carries their changes
too) and observes ``now - at`` for each in ``mjbroker_event_to_hook_seconds``.

The notes live in the worker's memory, not in Redis: the hot path pays no round trip for a metric.
So a delivery is measured when the worker that applied the event also delivers its hook: always
with one worker process, about one delivery in N with N of them (which one is not tied to how long
it took, so the histogram stays a fair sample). Notes of tasks without a hook are dropped oldest
first past `MAX_TASKS`.
"""

from __future__ import annotations

__all__ = ["MAX_TASKS", "EventTimes"]

#: tasks whose notes are kept at most
MAX_TASKS = 4096


class EventTimes:
    """In-memory notes of which event (receive time) produced which task revision."""

    def __init__(self, *, max_tasks: int = MAX_TASKS) -> None:
        self.max_tasks = max_tasks
        self._notes: dict[str, list[tuple[int, int]]] = {}

    def note(self, task_id: str, revision: int, event_at_ms: int) -> None:
        notes = self._notes.get(task_id)
        if notes is None:
            if len(self._notes) >= self.max_tasks:
                del self._notes[next(iter(self._notes))]
            notes = self._notes[task_id] = []
        notes.append((revision, event_at_ms))

    def take(self, task_id: str, revision: int) -> list[int]:
        """The receive times of the events behind `revision` and older ones, forgotten once taken."""
        notes = self._notes.get(task_id)
        if not notes:
            return []
        taken = [at for rev, at in notes if rev <= revision]
        rest = [(rev, at) for rev, at in notes if rev > revision]
        if rest:
            self._notes[task_id] = rest
        else:
            del self._notes[task_id]
        return taken
