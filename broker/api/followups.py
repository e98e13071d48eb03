"""Follow-ups of a finished task: `/mj/submit/action`, the legacy `/change` and `/simple-change`, and
`/mj/submit/modal` for a task that waits for its modal (code 21)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, post

from broker.actions import (
    MODAL_MASK,
    MODAL_ZOOM,
    build_child,
    legacy_custom_id,
    parse_simple_change,
    plan_action,
    remix_for,
)
from broker.admission import Admitted
from broker.api.context import ApiContext, api_key_name, context_of
from broker.api.door import (
    admitted_reply,
    check_common,
    check_prompt,
    check_prompt_links,
    english,
    require_worker,
)
from broker.api.images import decode_image
from broker.api.imagine_all import imagine_all
from broker.api.paths import route_paths, speed_mode
from broker.api.schema import POST, responses
from broker.api.types import ActionRequest, ChangeRequest, ModalRequest, SimpleChangeRequest
from broker.errors import ParentNotReady, QueueFull, TaskNotFound, ValidationFailed
from broker.models import ReturnCode, SubmitResult, Task, TaskStatus
from broker.translation import Translated

__all__ = ["FOLLOWUP_HANDLERS"]

AnyRequest = Request[Any, Any, Any]

_ERRORS = responses(POST)

_ZOOM = re.compile(r"(?<!\S)--zoom\s+([0-9]*\.?[0-9]+)(?!\S)")


async def _press(
    request: AnyRequest,
    ctx: ApiContext,
    parent: Task,
    custom_id: str,
    *,
    state: str | None,
    hook: str | None,
    enable_remix: bool = False,
    require_button: bool = True,
) -> SubmitResult:
    account = ctx.settings.account(parent.instance_id or "")
    remix = bool(account) and remix_for(
        parent.bot_type,
        remix=account.remix if account else False,
        niji_remix=account.niji_remix if account else False,
    )
    plan = plan_action(
        parent, custom_id, remix=remix, enable_remix=enable_remix, require_button=require_button
    )
    if plan.bookmark:
        # ❤️ creates no task: the reply carries the parent's id, as midjourney-proxy does.
        return SubmitResult(code=ReturnCode.SUCCESS, description="Submit success", result=parent.id)
    await require_worker(ctx)
    live = await ctx.admitter.account_of(parent)
    mode = ctx.admitter.followup_mode(parent, live, speed_mode(request.scope["path"]))
    if plan.picks:
        return await imagine_all(
            ctx, parent, plan, account=live, state=state, hook=hook, api_key=api_key_name(request), mode=mode
        )
    child = build_child(
        parent,
        plan,
        task_id=ctx.admitter.new_id(),
        now=ctx.clock(),
        custom_id=custom_id,
        state=state,
        notify_hook=hook,
        api_key_name=api_key_name(request),
        # trueai's RemixAutoSubmit: a client that did not ask for the dialog gets the job run with
        # the parent's prompt, as if remix were off, instead of a code-21 task it never answers
        auto_submit=live.remix_auto_submit and not enable_remix,
    )
    child = msgspec.structs.replace(child, request_mode=mode)
    return admitted_reply(await ctx.admitter.submit_followup(child, account=live))


async def _parent(ctx: ApiContext, task_id: str) -> Task:
    if not task_id.strip():
        raise ValidationFailed("taskId must not be blank")
    parent = await ctx.store.get(task_id) if len(task_id) <= 64 else None
    if parent is None:
        raise TaskNotFound(task_id)
    return parent


@post(
    route_paths("/mj/submit/action"),
    status_code=200,
    summary="Press a button of a finished task",
    responses=_ERRORS,
)
async def action(request: AnyRequest, data: ActionRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    parent = await _parent(ctx, data.task_id)
    return await _press(
        request,
        ctx,
        parent,
        data.custom_id,
        state=data.state,
        hook=hook,
        enable_remix=bool(data.enable_remix),
    )


@post(route_paths("/mj/submit/change"), status_code=200, summary="Legacy U/V/R on a task", responses=_ERRORS)
async def change(request: AnyRequest, data: ChangeRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    parent = await _parent(ctx, data.task_id)
    if parent.status != TaskStatus.SUCCESS:
        raise ParentNotReady(parent.id, parent.status, TaskStatus.SUCCESS)
    custom_id = legacy_custom_id(parent, data.action, data.index)
    return await _press(request, ctx, parent, custom_id, state=data.state, hook=hook, require_button=False)


@post(
    route_paths("/mj/submit/simple-change"),
    status_code=200,
    summary="Legacy '<taskId> U1'",
    responses=_ERRORS,
)
async def simple_change(request: AnyRequest, data: SimpleChangeRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    task_id, act, index = parse_simple_change(data.content)
    parent = await _parent(ctx, task_id)
    if parent.status != TaskStatus.SUCCESS:
        raise ParentNotReady(parent.id, parent.status, TaskStatus.SUCCESS)
    custom_id = legacy_custom_id(parent, act, index)
    return await _press(request, ctx, parent, custom_id, state=data.state, hook=hook, require_button=False)


@post(
    route_paths("/mj/submit/modal"),
    status_code=200,
    summary="Answer the modal of a code-21 task",
    responses=_ERRORS,
)
async def modal(request: AnyRequest, data: ModalRequest) -> SubmitResult:
    ctx = context_of(request)
    check_common(ctx, data.state, data.notify_hook)
    task = await _parent(ctx, data.task_id)
    if task.status != TaskStatus.MODAL:
        raise ParentNotReady(task.id, task.status, TaskStatus.MODAL)
    kind = task.properties.modal_kind
    prompt = check_prompt(ctx, data.prompt, required=False) or (task.prompt or "")
    if not prompt and kind != MODAL_MASK:
        raise ValidationFailed("prompt must not be blank")
    if kind == MODAL_ZOOM:
        match = _ZOOM.search(prompt)
        if match is None or not 1 <= float(match.group(1)) <= 2:
            raise ValidationFailed(
                "custom zoom needs --zoom between 1 and 2 in the prompt, e.g. 'a cat --zoom 1.5'"
            )
    translated = await english(ctx, prompt) if prompt else Translated(prompt)
    ctx.admitter.banned.check(translated.text, prompt)
    check_prompt_links(ctx, prompt)
    blobs: dict[str, bytes] = {}
    if kind == MODAL_MASK:
        if not data.mask_base64:
            raise ValidationFailed("Vary (Region) needs maskBase64 (a PNG data-URL)")
        mask, ext = decode_image(
            data.mask_base64, max_bytes=ctx.settings.tasks.max_image_bytes, what="maskBase64"
        )
        if ext != "png":
            raise ValidationFailed("maskBase64 must be a PNG")
        blobs["mask.png"] = mask
    await require_worker(ctx)
    account = await ctx.admitter.account_of(task)
    await ctx.store.put_blobs(task.id, blobs)

    def answer(current: Task) -> Task | None:
        # compare-and-set: of two concurrent /modal calls only one moves the task out of MODAL
        if current.status != TaskStatus.MODAL:
            return None
        props = msgspec.structs.replace(
            current.properties, prompt_en=translated.text, translation_error=translated.error
        )
        return msgspec.structs.replace(
            current, status=TaskStatus.NOT_START, prompt=prompt, prompt_en=translated.text, properties=props
        )

    update = await ctx.store.update(task.id, answer)
    if not update.changed or update.task is None:
        raise ParentNotReady(task.id, update.task.status if update.task else "gone", TaskStatus.MODAL)
    admission = await ctx.admitter.admit_existing(update.task, account=account)
    if admission.code == ReturnCode.QUEUE_REJECTED:
        # back to the modal state, so the client can answer again once the queue has room
        await ctx.store.transition(task.id, TaskStatus.MODAL)
        raise QueueFull(account.channel_id)
    return admitted_reply(Admitted(update.task, admission.code, admission.position, account))


FOLLOWUP_HANDLERS = [action, change, simple_change, modal]
