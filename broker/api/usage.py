"""`GET /mj/admin/usage` (every key's, or one's) and `GET /mj/usage` (the calling key's own).

Both read the ledger (`broker.usage`): tasks and images finished in a range, with totals and
groupings by day, action, mode, status, api key and account. The range is given as days in the
operator's timezone (`from`, `to`: `YYYY-MM-DD`, both included) or as epoch milliseconds (`since`
included, `until` excluded), which win over the days; by default the last 30 days, today included.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from broker.api.context import ApiContext, api_key_name, context_of
from broker.api.paths import route_paths
from broker.api.schema import GET, responses
from broker.models import SubmitResult
from broker.usage import Usage, day_start, usage

__all__ = ["DEFAULT_DAYS", "USAGE_HANDLERS", "usage_of"]

AnyRequest = Request[Any, Any, Any]

#: the range when none is given: this many days, today the last
DEFAULT_DAYS = 30


async def usage_of(
    ctx: ApiContext,
    *,
    first: date | None = None,
    last: date | None = None,
    since: int | None = None,
    until: int | None = None,
    api_key: str | None,
) -> Usage:
    """The usage of a range: epoch ms `since`/`until`, else the days `first`..`last` (included),
    else the last `DEFAULT_DAYS` days."""
    timezone = ctx.settings.timezone
    zone = ZoneInfo(timezone)
    today = datetime.fromtimestamp(ctx.clock() / 1000, zone).date()
    if until is None:
        last = last or today
        until = day_start(last + timedelta(days=1), zone) if last < date.max else day_start(last, zone)
    if since is None:
        first = first or (today - timedelta(days=DEFAULT_DAYS - 1))
        since = day_start(first, zone)
    return await asyncio.to_thread(
        usage, ctx.ledger, since=since, until=until, timezone=timezone, api_key=api_key
    )


_FIRST = Parameter(
    query="from", required=False, description="first day (YYYY-MM-DD, in the operator's timezone)"
)
_LAST = Parameter(query="to", required=False, description="last day, included (YYYY-MM-DD)")
_SINCE = Parameter(
    query="since", required=False, ge=0, description="start in epoch ms, included (wins over from)"
)
_UNTIL = Parameter(
    query="until", required=False, ge=0, description="end in epoch ms, excluded (wins over to)"
)
_RESPONSES = {
    **responses(GET),
    400: ResponseSpec(
        data_container=SubmitResult,
        description="A query value of the wrong type (a day that is not YYYY-MM-DD, negative ms): code 4.",
        generate_examples=False,
    ),
}
_ADMIN_RESPONSES = {
    **_RESPONSES,
    403: ResponseSpec(
        data_container=SubmitResult,
        description="The api key's role is not admin: code 4.",
        generate_examples=False,
    ),
}


@get(
    "/mj/admin/usage",
    summary="Usage of every api key (admin): tasks and images by day, action, mode, status, key, account",
    responses=_ADMIN_RESPONSES,
)
async def admin_usage(
    request: AnyRequest,
    first: date | None = _FIRST,
    last: date | None = _LAST,
    since: int | None = _SINCE,
    until: int | None = _UNTIL,
    api_key: str | None = Parameter(query="apiKey", required=False, description="one api key's name"),
) -> Usage:
    ctx = context_of(request)
    return await usage_of(ctx, first=first, last=last, since=since, until=until, api_key=api_key or None)


@get(
    route_paths("/mj/usage"),
    summary="Usage of the calling api key: tasks and images by day, action, mode, status",
    responses=_RESPONSES,
)
async def own_usage(
    request: AnyRequest,
    first: date | None = _FIRST,
    last: date | None = _LAST,
    since: int | None = _SINCE,
    until: int | None = _UNTIL,
) -> Usage:
    # With no api keys configured the API is open and nobody has a key: the figures are everyone's.
    key = api_key_name(request)
    return await usage_of(context_of(request), first=first, last=last, since=since, until=until, api_key=key)


USAGE_HANDLERS = [admin_usage, own_usage]
