"""`GET /mj/admin/usage` (every key's, or one's) and `GET /mj/usage` (the calling key's own).

Both read the ledger (`broker.usage`): tasks and images finished in a range, with totals and
groupings by day, action, mode, status, api key and account. The range is `from` and `to`, each a
day `YYYY-MM-DD` in the operator's timezone (`to` included) or epoch milliseconds (`to` excluded);
by default the last 30 days, today included.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from broker.api.context import ApiContext, api_key_name, context_of
from broker.api.paths import route_paths
from broker.api.schema import GET, responses
from broker.models import ReturnCode, SubmitResult
from broker.usage import Usage, parse_bound, usage

__all__ = ["DEFAULT_DAYS", "USAGE_HANDLERS", "BadRange", "usage_of"]

AnyRequest = Request[Any, Any, Any]

#: the range when none is given: this many days, today the last
DEFAULT_DAYS = 30


class BadRange(ValueError):
    """The range's query values say no range, or too long a one."""


async def usage_of(
    ctx: ApiContext, *, since: str | None, until: str | None, api_key: str | None, now_ms: int
) -> Usage:
    """The usage of a range given as query values (None = the default range); `BadRange` says
    what is wrong with them."""
    timezone = ctx.settings.timezone
    zone = ZoneInfo(timezone)
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    try:
        start = (
            parse_bound(since, zone, end=False)
            if since
            else parse_bound((today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(), zone, end=False)
        )
        end = parse_bound(until, zone, end=True) if until else parse_bound(today.isoformat(), zone, end=True)
        return await asyncio.to_thread(
            usage, ctx.ledger, since=start, until=end, timezone=timezone, api_key=api_key
        )
    except ValueError as exc:
        raise BadRange(f"usage range: {exc}") from None


async def _answer(
    ctx: ApiContext, since: str | None, until: str | None, api_key: str | None
) -> Response[Usage]:
    try:
        return Response(await usage_of(ctx, since=since, until=until, api_key=api_key, now_ms=ctx.clock()))
    except BadRange as exc:
        # a query the route cannot take: HTTP 400 with code 4, as a body it cannot take
        reply = SubmitResult(code=ReturnCode.VALIDATION_ERROR, description=str(exc))
        return cast(Response[Usage], Response(reply, status_code=400))


_RESPONSES = {
    **responses(GET),
    400: ResponseSpec(
        data_container=SubmitResult,
        description="from/to are not days (YYYY-MM-DD) nor epoch ms, the range is empty or too long: code 4.",
        generate_examples=False,
    ),
}


_FROM = Parameter(query="from", required=False, description="first day YYYY-MM-DD, or epoch ms")
_TO = Parameter(query="to", required=False, description="last day YYYY-MM-DD (included), or epoch ms")


@get(
    "/mj/admin/usage",
    summary="Usage of every api key (admin): tasks and images by day, action, mode, status, key, account",
    responses=_RESPONSES,
)
async def admin_usage(
    request: AnyRequest,
    since: str | None = _FROM,
    until: str | None = _TO,
    api_key: str | None = Parameter(query="apiKey", required=False, description="one api key's name"),
) -> Response[Usage]:
    return await _answer(context_of(request), since, until, api_key or None)


@get(
    route_paths("/mj/usage"),
    summary="Usage of the calling api key: tasks and images by day, action, mode, status",
    responses=_RESPONSES,
)
async def own_usage(
    request: AnyRequest, since: str | None = _FROM, until: str | None = _TO
) -> Response[Usage]:
    # With no api keys configured the API is open and nobody has a key: the figures are everyone's.
    return await _answer(context_of(request), since, until, api_key_name(request))


USAGE_HANDLERS = [admin_usage, own_usage]
