"""What the status page shows, gathered in one pass: accounts, queues, latest tasks, failing hook
receivers and usage (today's, and tasks per day over the last 30 days).

Live state comes from Redis (account status and load, unfinished tasks, the hook outbox, receiver
failures recorded by the workers), history from the ledger, read in a thread.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from broker import hook_receivers, keys
from broker.api.accounts import account_views
from broker.api.context import ApiContext
from broker.api.types import AccountView
from broker.config import Account
from broker.hook_receivers import ReceiverFailure
from broker.models import Task
from broker.usage import Usage, day_start, usage

__all__ = ["CHART_DAYS", "LATEST_TASKS", "RECEIVER_WINDOW_MS", "Snapshot", "snapshot"]

#: days in the tasks-per-day chart, today the last
CHART_DAYS = 30
#: tasks in the "latest tasks" list
LATEST_TASKS = 24
#: a receiver shows as failing while its last failure is this recent
RECEIVER_WINDOW_MS = 3_600_000


class Snapshot(msgspec.Struct, kw_only=True):
    now_ms: int
    #: the admin key signed in; None when no keys are configured (the page is open)
    key: str | None
    worker_alive: bool
    accounts: list[tuple[Account, AccountView]]
    #: hook deliveries due or in flight (the outbox's backlog)
    hooks_due: int
    tasks: list[Task]
    receivers: list[ReceiverFailure]
    today: Usage
    month: Usage


async def snapshot(ctx: ApiContext, *, key: str | None) -> Snapshot:
    """Everything the page shows, read now."""
    settings = ctx.settings
    now = ctx.clock()
    zone = ZoneInfo(settings.timezone)
    today = datetime.fromtimestamp(now / 1000, zone).date()
    day_end = day_start(today + timedelta(days=1), zone)
    today_start = day_start(today, zone)
    month_start = day_start(today - timedelta(days=CHART_DAYS - 1), zone)

    def from_ledger() -> tuple[Usage, Usage, list[Task]]:
        ledger = ctx.ledger
        return (
            usage(ledger, since=today_start, until=day_end, timezone=settings.timezone),
            usage(ledger, since=month_start, until=day_end, timezone=settings.timezone, groups=False),
            ledger.latest(LATEST_TASKS),
        )

    history = asyncio.create_task(asyncio.to_thread(from_ledger))
    views = await account_views(ctx)
    unfinished = await ctx.queues.unfinished_of([a.id for a in settings.accounts])
    live = await ctx.store.get_many(unfinished[:LATEST_TASKS])
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for due in keys.HOOKS_DUE:
            pipe.zcard(due)
        hooks_due = sum(await pipe.execute())
    receivers = await hook_receivers.failing(ctx.redis, since=now - RECEIVER_WINDOW_MS)
    day, month, finished = await history
    by_id = {t.id: t for t in finished}
    by_id.update({t.id: t for t in live})  # Redis holds the newer state of a task in both
    tasks = sorted(by_id.values(), key=lambda t: t.submit_time or 0, reverse=True)[:LATEST_TASKS]
    configs = {a.id: a for a in settings.accounts}
    return Snapshot(
        now_ms=now,
        key=key,
        worker_alive=await ctx.workers.alive(),
        accounts=[(configs[v.id], v) for v in views if v.id in configs],
        hooks_due=hooks_due,
        tasks=tasks,
        receivers=receivers,
        today=day,
        month=month,
    )
