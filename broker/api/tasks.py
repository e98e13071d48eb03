"""`/mj/task/*`: fetch, lists, queue, image seed and cancel."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from broker import keys
from broker.api.cancel_running import cancel_running
from broker.api.context import ApiContext, context_of
from broker.api.paths import route_paths
from broker.api.schema import GET, GET_BY_ID, POST, responses
from broker.api.types import ListByIdsRequest
from broker.bridge_calls import call_bridge, new_call
from broker.errors import ParentNotReady, TaskNotFound, ValidationFailed
from broker.models import ReturnCode, SubmitResult, Task, TaskStatus, decode_task

__all__ = ["TASK_HANDLERS"]

AnyRequest = Request[Any, Any, Any]

_JSON = "application/json"
_MAX_IDS = 1000
#: longer ids are never ours (snowflakes): answered "not found" without asking Redis
_MAX_ID = 64
_LIST_LIMIT = 100
#: how far back /list looks in the changes stream for recently written tasks
_RECENT_CHANGES = 2000


def _array(raws: list[bytes]) -> bytes:
    return b"[" + b",".join(raws) + b"]"


@get(
    route_paths("/mj/task/{task_id:str}/fetch"),
    summary="A task (HTTP 404 with code 4 when unknown)",
    responses=responses(GET_BY_ID),
)
async def fetch(request: AnyRequest, task_id: str) -> Response[Task]:
    # The stored JSON is served as it is: no decode, no encode.
    raw = await context_of(request).store.get_raw(task_id) if len(task_id) <= _MAX_ID else None
    if raw is None:
        raise TaskNotFound(task_id)
    return Response(raw, media_type=_JSON)  # type: ignore[arg-type]


@post(
    [*route_paths("/mj/task/list-by-condition"), *route_paths("/mj/task/list-by-ids")],
    status_code=200,
    summary="Tasks by ids (unknown ids left out)",
    responses=responses(POST),
)
async def list_by_condition(request: AnyRequest, data: ListByIdsRequest) -> Response[list[Task]]:
    ids = list(dict.fromkeys(i for i in data.ids or [] if i and len(i) <= _MAX_ID))
    if len(ids) > _MAX_IDS:
        raise ValidationFailed(f"at most {_MAX_IDS} ids per call")
    raws = await context_of(request).store.get_many_raw(ids)
    return Response(_array(raws), media_type=_JSON)  # type: ignore[arg-type]


async def _queued_ids(ctx: ApiContext) -> list[str]:
    return await ctx.queues.unfinished_of([account.id for account in ctx.settings.accounts])


@get(
    route_paths("/mj/task/queue"), summary="Queued and running tasks, oldest first", responses=responses(GET)
)
async def queue(request: AnyRequest) -> list[Task]:
    ctx = context_of(request)
    tasks = await ctx.store.get_many(await _queued_ids(ctx))
    return sorted(tasks, key=lambda t: t.submit_time or 0)


@get(route_paths("/mj/task/list"), summary="The latest 100 tasks, newest first", responses=responses(GET))
async def list_tasks(request: AnyRequest) -> list[Task]:
    # "Latest" = queued/running tasks plus those written most recently (the changes stream), still
    # within Redis retention; older history lives in the SQLite ledger, which the web does not read.
    ctx = context_of(request)
    ids = await _queued_ids(ctx)
    # the latest of each shard's changes stream (task ids spread evenly over the shards)
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for stream in keys.CHANGES_STREAMS:
            pipe.xrevrange(stream, count=_RECENT_CHANGES // keys.SHARDS)
        shards = await pipe.execute()
    ids.extend(fields[b"id"].decode() for entries in shards for _, fields in entries)
    raws = await ctx.store.get_many_raw(list(dict.fromkeys(ids)))
    tasks = [decode_task(raw) for raw in raws]
    tasks.sort(key=lambda t: t.submit_time or 0, reverse=True)
    return tasks[:_LIST_LIMIT]


@get(
    route_paths("/mj/task/{task_id:str}/image-seed"),
    summary="The seed of a finished task (HTTP 404 with code 4 when unknown)",
    responses=responses(GET_BY_ID),
)
async def image_seed(request: AnyRequest, task_id: str) -> SubmitResult:
    ctx = context_of(request)
    task = await ctx.store.get(task_id) if len(task_id) <= _MAX_ID else None
    if task is None:
        raise TaskNotFound(task_id)
    if task.seed:
        return SubmitResult(code=ReturnCode.SUCCESS, description="Submit success", result=task.seed)
    if task.status != TaskStatus.SUCCESS:
        raise ParentNotReady(task.id, task.status, TaskStatus.SUCCESS)
    if not task.properties.message_hash:
        raise ValidationFailed(f"task {task.id} has no messageHash")
    account = await ctx.admitter.account_of(task)
    seed = await call_bridge(ctx.redis, account.id, new_call("seed", task_id=task.id))
    if not isinstance(seed, str) or not seed:
        raise ValidationFailed(f"no seed found for task {task.id}")
    await ctx.store.transition(task.id, TaskStatus.SUCCESS, seed=seed)
    return SubmitResult(code=ReturnCode.SUCCESS, description="Submit success", result=seed)


@post(
    route_paths("/mj/task/{task_id:str}/cancel"),
    status_code=200,
    summary="Cancel a task (not started: CANCEL; running: Cancel Job, then FAILURE 'cancelled')",
    responses=responses(POST),
)
async def cancel(request: AnyRequest, task_id: str) -> SubmitResult:
    ctx = context_of(request)
    task = await ctx.store.get(task_id) if len(task_id) <= _MAX_ID else None
    if task is None:
        raise TaskNotFound(task_id)
    if task.status in (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS):
        return await cancel_running(ctx, task)
    if task.status not in (TaskStatus.NOT_START, TaskStatus.MODAL):
        raise ValidationFailed(f"task {task.id} is {task.status} and cannot be cancelled")
    # InvalidTransition (the bridge took it meanwhile) becomes code 4 in the exception handler.
    await ctx.store.transition(task.id, TaskStatus.CANCEL, finish_time=ctx.clock(), fail_reason="Cancelled")
    account = ctx.settings.account(task.instance_id or "")
    if account is not None:
        await ctx.queues.release(account.id, task.id, core_size=account.core_size)
    return SubmitResult(code=ReturnCode.SUCCESS, description="Cancel success", result=task.id)


TASK_HANDLERS = [fetch, list_by_condition, queue, list_tasks, image_seed, cancel]
