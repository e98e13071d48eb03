"""`/health` and `/ready`: what a load balancer or an orchestrator asks, without an api key.

`/health` is liveness: the web process answers. `/ready` says whether a submit would be served
end to end: Redis answers, a worker is alive (`broker.heartbeat`), and at least one configured
account is held by a live bridge (its lease, which a dead bridge's expires within
`bridge.lease_seconds`). A Redis Cluster is ready when every primary of its slot map answers and
says ``cluster_state:ok``. Not ready is HTTP 503 with the reason. Neither names more than account ids.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get
from redis.exceptions import RedisError

from broker import keys
from broker.api.context import context_of
from broker.clock import now_ms
from broker.cluster_checks import cluster_problem
from broker.heartbeat import workers_alive
from broker.redis_cluster import BoundedCluster

__all__ = ["HEALTH_HANDLERS", "Readiness"]


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    #: why not, or None when ready
    reason: str | None = None
    redis: bool = False
    worker: bool = False
    #: the configured accounts a live bridge holds now
    accounts_held: list[str] = msgspec.field(default_factory=list)


@get("/health", include_in_schema=False, media_type=MediaType.TEXT)
async def health() -> str:
    return "ok"


async def readiness(request: Request[Any, Any, Any]) -> Readiness:
    ctx = context_of(request)
    ids = [a.id for a in ctx.settings.accounts]
    state = Readiness(ready=False)
    try:
        if isinstance(ctx.redis, BoundedCluster) and (problem := await cluster_problem(ctx.redis)):
            state.reason = f"Redis Cluster down ({problem})"
            return state
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.ping()
            for account_id in ids:
                pipe.exists(keys.account_lease(account_id))
            _, *held = await pipe.execute()
        state.redis = True
        state.worker = await workers_alive(ctx.redis, now=now_ms()) > 0
    except (RedisError, OSError) as exc:
        down = "Redis Cluster down" if isinstance(ctx.redis, BoundedCluster) else "Redis unreachable"
        state.reason = f"{down} ({type(exc).__name__})"
        return state
    state.accounts_held = [account_id for account_id, h in zip(ids, held, strict=True) if h]
    if not state.worker:
        state.reason = "no worker running"
    elif not state.accounts_held:
        state.reason = "no account is held by a live bridge" if ids else "no account configured"
    state.ready = state.reason is None
    return state


@get("/ready", include_in_schema=False)
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    state = await readiness(request)
    return Response(state, status_code=200 if state.ready else 503, media_type=MediaType.JSON)


HEALTH_HANDLERS = [health, ready]
