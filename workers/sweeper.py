"""End tasks that would otherwise wait forever, and repair slots left behind by a crash.

Run every ``tasks.sweep_seconds`` by one of the worker processes (`workers.main.Worker`). For every
configured account:

- running tasks past ``timeout_minutes`` -> FAILURE with the reason that fits (`overdue_reason`),
  and the slot is released. The clock of a sent task starts at its ``startTime``, which the bridge
  sets right before the send; a rate-limit wait never counts: a task parked by a 429 counts from
  its ``rateLimitedUntil``, one not sent yet from the later of its slot and the account's
  RATE_LIMITED end;
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
from broker.account_status import limited_until
from broker.clock import Clock
from broker.config import Account, Settings
from broker.models import Task, TaskStatus
from broker.queues import AccountQueues
from broker.store import TaskStore

__all__ = ["SweepReport", "Sweeper", "overdue_reason"]

log = logging.getLogger(__name__)

_DEFAULT_ACCOUNT = Account(id="-", guild_id="", channel_id="")
_LIVE_BATCH = 500
#: live tasks looked at per shard and sweep (the shards share `_LIVE_BATCH`)
_LIVE_SHARD_BATCH = -(-_LIVE_BATCH // keys.SHARDS)
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
        running = await self.queues.running(account.id)
        if not running:
            return
        fields = await self.store.redis.hmget(keys.account_status(account.id), ["state", "until_ms"])
        account_limit = limited_until(fields)
        now = self.clock()
        for task_id, slot_ms in running:
            task = await self.store.get(task_id)
            if task is not None and not task.status.is_terminal:
                reason = overdue_reason(
                    task,
                    account=account,
                    slot_ms=slot_ms,
                    account_limited_until=account_limit,
                    now=now,
                )
                if reason is None:
                    continue
                # only the revision judged: one sent or moved on since it was read waits for the next sweep
                if not await self.store.fail(task_id, reason, judged=task):
                    continue
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
                    if not await self.store.fail(task_id, reason, judged=task):
                        return  # it moved since it was read (got a slot, was sent): next sweep
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
        # Each shard's oldest, in one round trip (a command per shard: a cluster routes each alone).
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for live in keys.LIVE_TASKS:
                pipe.zrangebyscore(
                    live,
                    "-inf",
                    now - int(shortest * 60_000),
                    start=0,
                    num=_LIVE_SHARD_BATCH,
                    withscores=True,
                )
            shards = await pipe.execute()
        gone: list[str] = []
        for member, seen in (row for rows in shards for row in rows):
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
            if age >= limit * 60_000 and await self.store.fail(task_id, reason, judged=task):
                report.timed_out.append(task_id)
        if gone:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for task_id in gone:
                    pipe.zrem(keys.live_tasks(task_id), task_id)
                await pipe.execute()


def overdue_reason(
    task: Task,
    *,
    account: Account,
    slot_ms: int,
    account_limited_until: int,
    now: int,
) -> str | None:
    """Why a task holding a slot must fail now, or None while it is in time (pure).

    A deleted progress message only changes the reason, not the moment: Midjourney deletes it just
    before it posts the result, and a lagging worker (or a Redis outage) may apply the deletion long
    before the result, so failing on the deletion alone would fail finished jobs.

    :param slot_ms: when the task got its slot.
    :param account_limited_until: epoch ms when the account's RATE_LIMITED state ends (0: not limited).
    """
    limit_ms = int(account.timeout_minutes * 60_000)
    within = _minutes(account.timeout_minutes)
    props = task.properties
    if task.status == TaskStatus.NOT_START:  # it had a slot, but was not sent yet
        if now - max(slot_ms, account_limited_until) < limit_ms:
            return None
        return (
            f"Task was not sent to Discord within {within}: account {account.id} is not taking work "
            f"(see /mj/account/{account.id}/fetch)"
        )
    if props.rate_limited_until is not None:  # parked by a 429: its clock has not started
        if now - max(props.rate_limited_until, account_limited_until) < limit_ms:
            return None
        waited = max(0, props.rate_limited_until - (task.start_time or slot_ms)) / 1000
        return (
            f"rate limited by Discord for {waited:.0f} s, then not sent within {within}: "
            f"account {account.id} is not taking work (see /mj/account/{account.id}/fetch)"
        )
    if now - (task.start_time or slot_ms) < limit_ms:
        return None
    if props.message_deleted_time is not None:
        return f"the job's message was deleted before the job finished (no result within {within})"
    if task.status == TaskStatus.SUBMITTED and not (props.progress_message_id or props.message_id):
        return f"the bot never acknowledged the job: no message from it within {within} of sending"
    if task.progress:
        return f"Task timed out after {within} (at {task.progress})"
    return f"Task timed out after {within}"
