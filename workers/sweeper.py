"""End tasks that would otherwise wait forever, and repair slots left behind by a crash.

Run every ``tasks.sweep_seconds`` (an arq cron job). For every configured account:

- running tasks older than ``timeout_minutes`` (since their ``startTime``, else since they got the
  slot) -> FAILURE ``Task timed out after N minutes`` (or, for a task the account's bridge never
  sent, a reason naming the account), and the slot is released;
- queued tasks older than ``queue_timeout_minutes`` (since ``submitTime``) -> FAILURE, released;
- running or queued ids whose record is terminal or gone -> released (a crash between a terminal
  write and its release);

and, over the ``live`` set kept by the changes handler (tasks in no queue):

- MODAL tasks whose modal was not submitted within the account timeout -> FAILURE;
- other non-terminal tasks in no queue (orphans of a crash during admission) -> FAILURE after the
  longer of the two timeouts; terminal or missing ids leave the set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec

from broker import keys
from broker.clock import Clock
from broker.config import Account, Settings
from broker.models import TaskStatus
from broker.queues import AccountQueues
from broker.store import TaskStore

__all__ = ["SweepReport", "Sweeper"]

log = logging.getLogger(__name__)

_DEFAULT_ACCOUNT = Account(id="-", guild_id="", channel_id="")
_LIVE_BATCH = 500
_WAITING_BATCH = 100


class SweepReport(msgspec.Struct, kw_only=True):
    """What one sweep did (for logs and tests)."""

    timed_out: list[str] = msgspec.field(default_factory=list)
    released: list[str] = msgspec.field(default_factory=list)


def _minutes(value: float) -> str:
    return f"{value:g} minute" + ("" if value == 1 else "s")


class Sweeper:
    """Fails overdue tasks and frees stale slots.

    :param store: task records.
    :param queues: account queues.
    :param settings: a callable returning the current settings (hot reload).
    :param clock: epoch milliseconds.
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        queues: AccountQueues,
        settings: Callable[[], Settings],
        clock: Clock,
    ) -> None:
        self.store = store
        self.queues = queues
        self.settings = settings
        self.clock = clock

    async def sweep(self) -> SweepReport:
        report = SweepReport()
        settings = self.settings()
        for account in settings.accounts:
            await self._sweep_running(account, report)
            await self._sweep_waiting(account, report)
        await self._sweep_live(settings, report)
        if report.timed_out or report.released:
            log.info("sweep: %d timed out, %d slots released", len(report.timed_out), len(report.released))
        return report

    async def _sweep_running(self, account: Account, report: SweepReport) -> None:
        now = self.clock()
        limit_ms = int(account.timeout_minutes * 60_000)
        for task_id, slot_ms in await self.queues.running(account.id):
            task = await self.store.get(task_id)
            if task is not None and not task.status.is_terminal:
                started = task.start_time or slot_ms
                if now - started < limit_ms:
                    continue
                reason = f"Task timed out after {_minutes(account.timeout_minutes)}"
                if task.status == TaskStatus.NOT_START:  # it had a slot, but was never sent
                    reason = (
                        f"Task was not sent to Discord within {_minutes(account.timeout_minutes)}: "
                        f"account {account.id} is not taking work (see /mj/account/{account.id}/fetch)"
                    )
                if await self.store.fail(task_id, reason):
                    report.timed_out.append(task_id)
            await self.queues.release(account.id, task_id, core_size=account.core_size)
            report.released.append(task_id)

    async def _sweep_waiting(self, account: Account, report: SweepReport) -> None:
        """Fail queued tasks past the queue timeout, oldest first.

        The queue is in admission order, so the scan stops at the first task still in time: a deep
        queue costs one batch read per sweep, not one read per task.
        """
        now = self.clock()
        limit_ms = int(account.queue_timeout_minutes * 60_000)
        while True:
            head = await self.queues.waiting(account.id, limit=_WAITING_BATCH - 1)
            if not head:
                return
            records = {t.id: t for t in await self.store.get_many(head)}
            expired = 0
            for task_id in head:
                task = records.get(task_id)
                if task is not None and not task.status.is_terminal:
                    if now - (task.submit_time or now) < limit_ms:
                        return
                    reason = (
                        f"Task waited in the queue for more than {_minutes(account.queue_timeout_minutes)}"
                    )
                    if await self.store.fail(task_id, reason):
                        report.timed_out.append(task_id)
                await self.queues.release(account.id, task_id, core_size=account.core_size)
                report.released.append(task_id)
                expired += 1
            if expired < len(head):
                return

    async def _sweep_live(self, settings: Settings, report: SweepReport) -> None:
        now = self.clock()
        shortest = min(
            (a.timeout_minutes for a in settings.accounts), default=_DEFAULT_ACCOUNT.timeout_minutes
        )
        rows = await self.store.redis.zrangebyscore(
            keys.LIVE_TASKS, "-inf", now - int(shortest * 60_000), start=0, num=_LIVE_BATCH, withscores=True
        )
        gone: list[str] = []
        for member, seen in rows:
            task_id = member.decode()
            task = await self.store.get(task_id)
            if task is None or task.status.is_terminal:
                gone.append(task_id)
                continue
            account = settings.account(task.instance_id or "") or _DEFAULT_ACCOUNT
            if await self.queues.holds(account.id, task_id):
                continue  # the running/waiting rules above own it
            age = now - max(int(seen), task.submit_time or 0)
            if task.status == TaskStatus.MODAL:
                limit = account.timeout_minutes
                reason = f"Modal not submitted within {_minutes(limit)}"
            else:
                limit = max(account.timeout_minutes, account.queue_timeout_minutes)
                reason = f"Task was not started within {_minutes(limit)}"
            if age >= limit * 60_000 and await self.store.fail(task_id, reason):
                report.timed_out.append(task_id)
        if gone:
            await self.store.redis.zrem(keys.LIVE_TASKS, *gone)
