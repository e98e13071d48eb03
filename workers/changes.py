"""React to task changes: free slots, append the ledger, schedule hooks, watch live tasks.

Every notable `TaskStore` write appends ``{id, rev}`` to its shard's `keys.changes_stream` (see
`broker.store`); `ChangeHandler` is the handler of their consumer group (`keys.CHANGES_GROUP`). For
each changed task it reads the current record (several changes of one task in a batch collapse into
one) and:

- when terminal: releases the task's account slot (idempotent; the next queued task becomes
  startable) and appends it to the SQLite ledger (one batch per read, in a thread);
- when it has a hook (``properties.notifyHook``, else ``hooks.default_url``) and has left
  NOT_START/MODAL: schedules a delivery of the current revision (as the Java original: no hook for
  creation or queueing);
- keeps the ``live`` sets of non-terminal tasks (one per shard), so the sweeper can find tasks
  that are in no account queue (MODAL, or orphans of a crash) and end them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from redis.asyncio.client import Pipeline

from broker import keys
from broker.clock import Clock
from broker.config import Settings
from broker.ledger import Ledger
from broker.lua import execute
from broker.models import Task, TaskStatus, decode_task
from broker.queues import SCRIPTS as QUEUE_SCRIPTS
from broker.queues import AccountQueues
from broker.store import TaskStore
from workers.consumer import Entry
from workers.delivery import HookDeliverer
from workers.outbox import SCRIPTS as HOOK_SCRIPTS

__all__ = ["ChangeHandler"]

log = logging.getLogger(__name__)

_NO_HOOK_YET = (TaskStatus.NOT_START, TaskStatus.MODAL)
# A task joins the live set in its first states; progress updates (the bulk of changes) skip the write.
_ENTERS_LIVE = (TaskStatus.NOT_START, TaskStatus.MODAL, TaskStatus.SUBMITTED)


class ChangeHandler:
    """Handles a batch of change-stream entries.

    :param store: task records.
    :param queues: account queues (slots are freed here).
    :param deliverer: schedules hook deliveries (and wakes the local delivery loop).
    :param ledger: the SQLite ledger, or None to skip it.
    :param settings: accounts (core sizes) and the default hook URL; a callable so hot reloads apply.
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        queues: AccountQueues,
        deliverer: HookDeliverer,
        ledger: Ledger | None,
        settings: Callable[[], Settings],
        clock: Clock,
    ) -> None:
        self.store = store
        self.queues = queues
        self.deliverer = deliverer
        self.ledger = ledger
        self.settings = settings
        self.clock = clock

    async def __call__(self, entries: Sequence[Entry]) -> None:
        task_ids: dict[str, None] = {}
        for _entry_id, fields in entries:
            raw_id = fields.get(b"id")
            if raw_id:
                task_ids[raw_id.decode()] = None
        if not task_ids:
            return
        ids = list(task_ids)
        records = await self.store.get_many_raw(ids, keep_missing=True)
        settings = self.settings()
        now = self.clock()
        finished: list[Task] = []
        live_add: dict[str, int] = {}
        live_remove: list[str] = []
        hooks: list[tuple[str, int, bytes | None]] = []
        for task_id, raw in zip(ids, records, strict=True):
            if raw is None:
                live_remove.append(task_id)  # deleted (e.g. rejected at admission)
                continue
            task = decode_task(raw)
            if task.status.is_terminal:
                finished.append(task)
                live_remove.append(task_id)
            elif task.status in _ENTERS_LIVE:
                live_add[task_id] = now
            if task.status not in _NO_HOOK_YET and (
                task.properties.notify_hook or settings.hooks.default_url
            ):
                hooks.append((task_id, task.revision, raw))
        # One round trip for the lot: slots (a queued task waits for one), hook schedules (a client
        # waits for them; each POST then runs on its own) and the live set. The ledger comes last,
        # off the hot path. All of it is redone if this process dies before the ack, and all of it
        # is idempotent (a release of a released id does nothing, a schedule of a wanted revision
        # wants it once: see broker.queues, workers.outbox), so the client resends it once when the
        # connection fails after sending. The same makes a change announced twice harmless.
        batch = self.deliverer.plan(hooks)

        def fill(pipe: Pipeline) -> None:
            for task in finished:
                if task.instance_id:
                    account = settings.account(task.instance_id)
                    core_size = account.core_size if account else 0
                    self.queues.queue_release(pipe, task.instance_id, task.id, core_size=core_size)
            batch.queue(pipe)
            for live, added in _by_shard(live_add).items():
                pipe.zadd(live, added, nx=True)
            for live, removed in _by_shard(dict.fromkeys(live_remove, 0)).items():
                pipe.zrem(live, *removed)

        batch.settle(await execute(self.store.redis, fill, [*QUEUE_SCRIPTS, *HOOK_SCRIPTS], resend=True))
        if finished and self.ledger is not None:
            await asyncio.to_thread(self.ledger.append, finished)


def _by_shard(tasks: dict[str, int]) -> dict[str, dict[str, int]]:
    """`tasks` (id -> score) split by the live set of each id's shard."""
    split: dict[str, dict[str, int]] = {}
    for task_id, score in tasks.items():
        split.setdefault(keys.live_tasks(task_id), {})[task_id] = score
    return split
