"""`GET /mj/admin/tasks`: finished tasks from the SQLite ledger, filtered and paged.

Filters (query string, all optional, combined with "and"): `status`, `action`, `account` (the
account id), `apiKey` (the api key's name), `from` and `to` (the submit time's bounds, both
included: epoch milliseconds or ISO 8601, e.g. `2026-12-01T10:00:00Z`; a time without a zone is
UTC). Paging: `page` (from 1) and `size` (at most `MAX_PAGE_SIZE`). Newest submit first. Each item
is the task's JSON as `/mj/task/{id}/fetch` gives it; live tasks are not in the ledger yet.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.params import Parameter

from broker.api.context import context_of
from broker.errors import ValidationFailed, echo
from broker.models import TaskAction, TaskStatus

__all__ = ["ADMIN_TASK_HANDLERS", "MAX_PAGE_SIZE", "parse_time"]

AnyRequest = Request[Any, Any, Any]

MAX_PAGE_SIZE = 100
_DEFAULT_PAGE_SIZE = 20


def parse_time(value: str, what: str) -> int:
    """Epoch ms from epoch ms digits or an ISO 8601 time (UTC when it has no zone); code 4 else."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"{what}: expected epoch milliseconds or ISO 8601, got {echo(value)}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _member(enum: Any, value: str, what: str) -> str:
    try:
        return str(enum(value.upper()))
    except ValueError:
        known = ", ".join(str(m) for m in enum)
        raise ValidationFailed(f"{what}: unknown value {echo(value)} (one of {known})") from None


@get("/mj/admin/tasks", include_in_schema=False)
async def list_ledger_tasks(
    request: AnyRequest,
    status: str | None = None,
    action: str | None = None,
    account: str | None = None,
    api_key: Annotated[str | None, Parameter(query="apiKey")] = None,
    since: Annotated[str | None, Parameter(query="from")] = None,
    until: Annotated[str | None, Parameter(query="to")] = None,
    page: int = 1,
    size: int = _DEFAULT_PAGE_SIZE,
) -> Response[Any]:
    if page < 1:
        raise ValidationFailed("page: starts at 1")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"size: 1 to {MAX_PAGE_SIZE}")
    where: dict[str, str] = {}
    if status:
        where["status"] = _member(TaskStatus, status, "status")
    if action:
        where["action"] = _member(TaskAction, action, "action")
    if account:
        where["account_id"] = account
    if api_key:
        where["api_key_name"] = api_key
    since_ms = parse_time(since, "from") if since else None
    until_ms = parse_time(until, "to") if until else None
    ledger = context_of(request).ledger
    total, items = await asyncio.to_thread(
        ledger.page,
        where=where,
        since_ms=since_ms,
        until_ms=until_ms,
        offset=(page - 1) * size,
        limit=size,
    )
    # The stored JSON is served as it is, as /fetch does.
    body = f'{{"page":{page},"size":{size},"total":{total},"items":[{",".join(items)}]}}'
    return Response(body.encode(), media_type="application/json")


ADMIN_TASK_HANDLERS = [list_ledger_tasks]
