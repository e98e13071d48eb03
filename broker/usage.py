"""Usage figures from the ledger: tasks and images by day, action, mode, status, api key and account.

Every figure is a sum over ledger rows (one per finished task, `broker.ledger`) whose `finish_time`
falls in a time range, so the totals equal the rows and every grouping adds up to the totals. Days
are the operator's (`Settings.timezone`): their bounds are computed here, daylight saving included,
and SQLite only compares epoch milliseconds. The ledger is synchronous: async callers run `usage`
in a thread.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

from broker.ledger import Ledger

__all__ = ["MAX_DAYS", "MAX_MS", "Usage", "UsageRow", "clamp", "day_bounds", "day_start", "usage"]

#: the longest range one call may ask for (the per-day grouping has a row per day)
MAX_DAYS = 400
#: every query reads the ledger's covering index (`broker.ledger`), also when it filters by api key
#: (the planner would pick the key's index and then read each row, whose task JSON makes it large)
_SOURCE = "tasks indexed by idx_tasks_usage"
#: groupings: the JSON field and the ledger column behind it
_GROUPS = {
    "by_action": "action",
    "by_mode": "mode",
    "by_status": "status",
    "by_api_key": "api_key_name",
    "by_account": "account_id",
}


class UsageRow(msgspec.Struct, kw_only=True):
    #: the day (YYYY-MM-DD), action, mode, status, api key name or account id; null = not recorded
    key: str | None
    tasks: int
    images: int


class Usage(msgspec.Struct, kw_only=True, rename="camel"):
    """What one range of the ledger adds up to."""

    #: epoch ms, inclusive
    since: int
    #: epoch ms, exclusive
    until: int
    timezone: str
    #: the api key the figures are limited to; null = every key
    api_key: str | None
    total: UsageRow
    #: every day of the range, oldest first, days without tasks included (zeros)
    by_day: list[UsageRow]
    by_action: list[UsageRow]
    by_mode: list[UsageRow]
    by_status: list[UsageRow]
    by_api_key: list[UsageRow]
    by_account: list[UsageRow]


#: bounds are kept within the years 1970..9998 (a day past either has no epoch ms or no next day)
MAX_MS = 253_370_764_800_000


def day_start(day: date, zone: ZoneInfo) -> int:
    """Epoch ms of the first instant of `day` in `zone`, kept within [0, `MAX_MS`]."""
    if day >= date(9999, 1, 1):
        return MAX_MS
    if day < date(1970, 1, 1):  # before the epoch in every zone (and year 1 has no earlier UTC day)
        return 0
    return clamp(int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000))


def clamp(ms: int) -> int:
    return min(max(ms, 0), MAX_MS)


def day_bounds(since: int, until: int, zone: ZoneInfo) -> list[tuple[str, int, int]]:
    """The days (in `zone`) that [since, until) touches: (YYYY-MM-DD, start ms, end ms), clipped to it."""
    days: list[tuple[str, int, int]] = []
    if until <= since:
        return days
    day = datetime.fromtimestamp(since / 1000, zone).date()
    while True:
        start, end = day_start(day, zone), day_start(day + timedelta(days=1), zone)
        if start >= until:
            break
        days.append((day.isoformat(), max(start, since), min(end, until)))
        day += timedelta(days=1)
    return days


def usage(
    ledger: Ledger,
    *,
    since: int,
    until: int,
    timezone: str = "UTC",
    api_key: str | None = None,
    groups: bool = True,
) -> Usage:
    """Sums of the ledger's rows finished in [since, until), optionally of one api key only.

    :param since, until: epoch ms, kept within [0, `MAX_MS`]; a range longer than `MAX_DAYS` days
        is cut to its last `MAX_DAYS` days (the result's `since` says where it starts), and an
        empty one adds up to zero.
    :param timezone: IANA name whose days `by_day` counts.
    :param api_key: limit every figure to the tasks this api key submitted.
    :param groups: False leaves every grouping but `by_day` empty (the status page's chart).
    """
    since, until = clamp(since), clamp(until)
    since = max(since, until - MAX_DAYS * 86_400_000)
    zone = ZoneInfo(timezone)
    where = "finish_time >= ? and finish_time < ?"
    params: list[object] = [since, until]
    if api_key is not None:
        where += " and api_key_name = ?"
        params.append(api_key)
    total_sql = f"select count(*), coalesce(sum(images), 0) from {_SOURCE} where {where}"
    (count, images) = ledger.query(total_sql, params)[0]
    grouped: dict[str, list[UsageRow]] = {field: [] for field in _GROUPS}
    for field, column in _GROUPS.items() if groups else ():
        sql = (
            f"select {column}, count(*), coalesce(sum(images), 0) from {_SOURCE} where {where} "
            f"group by {column} order by count(*) desc, {column}"
        )
        grouped[field] = [UsageRow(key=k, tasks=n, images=i) for k, n, i in ledger.query(sql, params)]
    return Usage(
        since=since,
        until=until,
        timezone=timezone,
        api_key=api_key,
        total=UsageRow(key=None, tasks=count, images=images),
        by_day=_by_day(ledger, day_bounds(since, until, zone), where, params),
        **grouped,
    )


def _by_day(
    ledger: Ledger, days: list[tuple[str, int, int]], where: str, params: list[object]
) -> list[UsageRow]:
    # One range query per day: each reads only its slice of the covering index, so all of them
    # together read the range once (a join on a table of day bounds made SQLite compare every row
    # with every day).
    rows = []
    for day, lo, hi in days:
        count, images = ledger.query(
            f"select count(*), coalesce(sum(images), 0) from {_SOURCE} where {where}", [lo, hi, *params[2:]]
        )[0]
        rows.append(UsageRow(key=day, tasks=count, images=images))
    return rows
