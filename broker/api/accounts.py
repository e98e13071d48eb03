"""`/mj/account/*`: the configured accounts with their live status; never their tokens."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from broker import keys
from broker.api.context import ApiContext, context_of
from broker.api.paths import route_paths
from broker.api.schema import GET, GET_BY_ID, responses
from broker.api.types import AccountView
from broker.choice import closed_reason, local_time
from broker.config import Account
from broker.errors import AccountNotFound

__all__ = ["ACCOUNT_HANDLERS", "account_views"]

AnyRequest = Request[Any, Any, Any]


#: what an account's `statusReason` says while no worker process is alive
NO_WORKER = "no worker running: tasks are not followed nor timed out, and submits answer code 9"


async def _views(ctx: ApiContext, accounts: list[Account]) -> list[AccountView]:
    if not accounts:
        return []
    worker = await ctx.workers.alive()
    now = local_time(ctx.clock(), ctx.settings.timezone)
    limited = [a for a in accounts if a.daily_limit]
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for account in accounts:
            pipe.hmget(keys.account_status(account.id), ["state", "reason", "relax_only"])
            pipe.zcard(keys.account_running(account.id))
            pipe.zcard(keys.account_waiting(account.id))
        for account in limited:
            pipe.get(keys.account_day_count(account.id, now.day))
        rows: list[Any] = await pipe.execute()
    counts = {a.id: int(c or 0) for a, c in zip(limited, rows[3 * len(accounts) :], strict=True)}
    views = []
    for i, a in enumerate(accounts):
        (state, reason, relax_only), running, waiting = rows[3 * i], rows[3 * i + 1], rows[3 * i + 2]
        count = counts.get(a.id)
        closed = closed_reason(a, now, reached=count is not None and count >= a.daily_limit)
        views.append(
            AccountView(
                id=a.id,
                guild_id=a.guild_id,
                channel_id=a.channel_id,
                user_agent=a.user_agent,
                enable=a.enabled,
                core_size=a.core_size,
                queue_size=a.queue_size,
                timeout_minutes=a.timeout_minutes,
                properties={
                    "modes": [str(m) for m in a.modes],
                    "remix": a.remix,
                    "nijiRemix": a.niji_remix,
                    "bots": [str(b) for b in a.bots],
                    "remark": a.remark,
                    "weight": a.weight,
                    "defaultMode": str(a.default_mode),
                    "autoRelax": a.auto_relax,
                    "remixAutoSubmit": a.remix_auto_submit,
                    # the fast hours are used up: the account runs RELAX tasks only (auto_relax)
                    "relaxOnly": relax_only == b"1",
                    # False while no worker process is alive (submits then answer code 9)
                    "workerRunning": worker,
                },
                status=state.decode() if state else None,
                status_reason=_reason(reason.decode() if reason else None, worker=worker),
                running=int(running),
                waiting=int(waiting),
                daily_limit=a.daily_limit,
                daily_count=count,
                work_hours=a.work_hours,
                weight=a.weight,
                open_now=closed is None,
                closed_reason=closed,
            )
        )
    return views


async def account_views(ctx: ApiContext) -> list[AccountView]:
    """Every configured account with its live status and load (the status page's too)."""
    return await _views(ctx, list(ctx.settings.accounts))


def _reason(reason: str | None, *, worker: bool) -> str | None:
    if worker:
        return reason
    return f"{NO_WORKER}; {reason}" if reason else NO_WORKER


@get(route_paths("/mj/account/list"), summary="All configured accounts", responses=responses(GET))
async def account_list(request: AnyRequest) -> list[AccountView]:
    ctx = context_of(request)
    return await _views(ctx, list(ctx.settings.accounts))


@get(
    route_paths("/mj/account/{account_id:str}/fetch"),
    summary="One account by id or channel id (HTTP 404 with code 4 when unknown)",
    responses=responses(GET_BY_ID),
)
async def account_fetch(request: AnyRequest, account_id: str) -> AccountView:
    ctx = context_of(request)
    found = [a for a in ctx.settings.accounts if account_id in (a.id, a.channel_id)][:1]
    views = await _views(ctx, found)
    if not views:
        raise AccountNotFound(account_id)
    return views[0]


ACCOUNT_HANDLERS = [account_list, account_fetch]
