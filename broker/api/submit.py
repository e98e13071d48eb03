"""`/mj/submit/*` and `/mj/insight-face/swap`: validate at the door, build the task, admit it."""

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
from broker.admission import Admitted, wanted_modes
from broker.api.context import ApiContext, api_key_name, context_of
from broker.api.images import decode_image
from broker.api.paths import route_paths, speed_mode
from broker.api.types import (
    ActionRequest,
    BlendRequest,
    ChangeRequest,
    DescribeRequest,
    ImagineRequest,
    ModalRequest,
    ShortenRequest,
    SimpleChangeRequest,
    SwapFaceRequest,
    UploadRequest,
)
from broker.bridge_calls import call_bridge, new_call
from broker.errors import ParentNotFound, ParentNotReady, QueueFull, ValidationFailed
from broker.models import BotType, SubmitResult, Task, TaskAction, TaskProperties, TaskStatus

__all__ = ["SUBMIT_HANDLERS"]

AnyRequest = Request[Any, Any, Any]

_MAX_STATE = 255
_MAX_HOOK = 2000
_MAX_IMAGES = 5
_ZOOM = re.compile(r"(?<!\S)--zoom\s+([0-9]*\.?[0-9]+)(?!\S)")


# -- shared checks --------------------------------------------------------------------------------


def _common(ctx: ApiContext, state: str | None, hook: str | None) -> str | None:
    """Check `state` and `notifyHook`; return the effective hook URL."""
    if state is not None and len(state) > _MAX_STATE:
        raise ValidationFailed(f"state is longer than {_MAX_STATE} characters")
    if hook:
        if len(hook) > _MAX_HOOK:
            raise ValidationFailed(f"notifyHook is longer than {_MAX_HOOK} characters")
        lowered = hook[:8].lower()
        if not (lowered.startswith("http://") or lowered.startswith("https://")) or len(hook) < 10:
            raise ValidationFailed("notifyHook must be an http or https URL")
        return hook
    return ctx.settings.hooks.default_url or None


def _prompt(ctx: ApiContext, prompt: str | None, *, required: bool = True) -> str:
    text = (prompt or "").strip()
    if required and not text:
        raise ValidationFailed("prompt must not be blank")
    limit = ctx.settings.tasks.max_prompt_chars
    if len(text) > limit:
        raise ValidationFailed(f"prompt is longer than {limit} characters")
    return text


def _images(ctx: ApiContext, items: list[str], what: str) -> dict[str, bytes]:
    """Decode images into blobs named "0.png", "1.jpg", ... in order."""
    blobs: dict[str, bytes] = {}
    limit = ctx.settings.tasks.max_image_bytes
    for i, item in enumerate(items):
        data, ext = decode_image(item, max_bytes=limit, what=f"{what}[{i}]")
        blobs[f"{i}.{ext}"] = data
    return blobs


def _reply(admitted: Admitted) -> SubmitResult:
    task, code = admitted.task, admitted.code
    props: dict[str, Any] = {"discordInstanceId": admitted.account.channel_id}
    if code == 22:
        props["numberOfQueues"] = admitted.position
        return SubmitResult(
            code=22,
            description=f"In queue, there are {admitted.position} tasks ahead",
            result=task.id,
            properties=props,
        )
    if code == 21:
        props["finalPrompt"] = task.prompt
        props["remix"] = True
        return SubmitResult(
            code=21, description="Waiting for window confirm", result=task.id, properties=props
        )
    return SubmitResult(code=1, description="Submit success", result=task.id, properties=props)


async def _submit_new(
    request: AnyRequest,
    ctx: ApiContext,
    *,
    action: TaskAction,
    prompt: str | None,
    description: str,
    bot_type: BotType,
    state: str | None,
    hook: str | None,
    account_filter: Any,
    blobs: dict[str, bytes] | None = None,
    image_urls: list[str] | None = None,
    blend_dimensions: str | None = None,
) -> SubmitResult:
    task_id = ctx.admitter.new_id()
    task = Task(
        id=task_id,
        action=action,
        prompt=prompt,
        prompt_en=prompt,
        description=description.replace("{id}", task_id),
        state=state,
        submit_time=ctx.clock(),
        properties=TaskProperties(
            notify_hook=hook,
            attachments=list(blobs) if blobs else None,
            image_urls=image_urls or None,
            bot_type=bot_type.value,
            blend_dimensions=blend_dimensions,
        ),
        bot_type=bot_type,
        api_key_name=api_key_name(request),
    )
    modes = wanted_modes(speed_mode(request.scope["path"]), account_filter, prompt)
    admitted = await ctx.admitter.submit(task, blobs=blobs, account_filter=account_filter, modes=modes)
    return _reply(admitted)


# -- new tasks ------------------------------------------------------------------------------------


@post(route_paths("/mj/submit/imagine"), status_code=200, summary="Imagine")
async def imagine(request: AnyRequest, data: ImagineRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    prompt = _prompt(ctx, data.prompt)
    items = [*(data.base64_array or []), *([data.base64] if data.base64 else [])]
    if len(items) > _MAX_IMAGES:
        raise ValidationFailed(f"at most {_MAX_IMAGES} reference images")
    return await _submit_new(
        request,
        ctx,
        action=TaskAction.IMAGINE,
        prompt=prompt,
        description=f"/imagine {prompt}",
        bot_type=data.bot_type or BotType.MID_JOURNEY,
        state=data.state,
        hook=hook,
        account_filter=data.account_filter,
        blobs=_images(ctx, items, "base64Array") if items else None,
    )


@post(route_paths("/mj/submit/describe"), status_code=200, summary="Describe an image")
async def describe(request: AnyRequest, data: DescribeRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    blobs = None
    urls = None
    if data.base64:
        raw, ext = decode_image(data.base64, max_bytes=ctx.settings.tasks.max_image_bytes, what="base64")
        blobs = {f"0.{ext}": raw}
    elif data.link:
        if not re.match(r"https?://\S+$", data.link) or len(data.link) > _MAX_HOOK:
            raise ValidationFailed("link must be an http or https URL")
        urls, ext = [data.link], "png"
    else:
        raise ValidationFailed("base64 or link is required")
    return await _submit_new(
        request,
        ctx,
        action=TaskAction.DESCRIBE,
        prompt=None,
        description=f"/describe {{id}}.{ext}",
        bot_type=data.bot_type or BotType.MID_JOURNEY,
        state=data.state,
        hook=hook,
        account_filter=data.account_filter,
        blobs=blobs,
        image_urls=urls,
    )


@post(route_paths("/mj/submit/blend"), status_code=200, summary="Blend 2 to 5 images")
async def blend(request: AnyRequest, data: BlendRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    if not 2 <= len(data.base64_array) <= _MAX_IMAGES:
        raise ValidationFailed(f"blend needs 2 to {_MAX_IMAGES} images in base64Array")
    blobs = _images(ctx, data.base64_array, "base64Array")
    return await _submit_new(
        request,
        ctx,
        action=TaskAction.BLEND,
        prompt=None,
        description=f"/blend {{id}} {len(blobs)}",
        bot_type=data.bot_type or BotType.MID_JOURNEY,
        state=data.state,
        hook=hook,
        account_filter=data.account_filter,
        blobs=blobs,
        blend_dimensions=data.dimensions.value,
    )


@post(route_paths("/mj/submit/shorten"), status_code=200, summary="Shorten a prompt")
async def shorten(request: AnyRequest, data: ShortenRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    prompt = _prompt(ctx, data.prompt)
    return await _submit_new(
        request,
        ctx,
        action=TaskAction.SHORTEN,
        prompt=prompt,
        description=f"/shorten {prompt}",
        bot_type=data.bot_type or BotType.MID_JOURNEY,
        state=data.state,
        hook=hook,
        account_filter=data.account_filter,
    )


@post(route_paths("/mj/insight-face/swap"), status_code=200, summary="Swap a face")
async def swap_face(request: AnyRequest, data: SwapFaceRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    source = data.source_base64 or data.source_url
    target = data.target_base64 or data.target_url
    if not source or not target:
        raise ValidationFailed(
            "a source (sourceBase64 or sourceUrl) and a target (targetBase64 or targetUrl) are required"
        )
    if source == target:
        raise ValidationFailed("source and target are the same image")
    blobs: dict[str, bytes] = {}
    urls: list[str] = []
    limit = ctx.settings.tasks.max_image_bytes
    for role, b64, url in (
        ("source", data.source_base64, data.source_url),
        ("target", data.target_base64, data.target_url),
    ):
        if b64:
            raw, ext = decode_image(b64, max_bytes=limit, what=f"{role}Base64")
            blobs[f"{role}.{ext}"] = raw
        elif url:
            if not re.match(r"https?://\S+$", url) or len(url) > _MAX_HOOK:
                raise ValidationFailed(f"{role}Url must be an http or https URL")
            urls.append(url)
    return await _submit_new(
        request,
        ctx,
        action=TaskAction.SWAP_FACE,
        prompt=None,
        description="/swap {id}",
        bot_type=BotType.INSIGHT_FACE,
        state=data.state,
        hook=hook,
        account_filter=data.account_filter,
        blobs=blobs or None,
        image_urls=urls or None,
    )


# -- follow-ups -----------------------------------------------------------------------------------


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
        return SubmitResult(code=1, description="Submit success", result=parent.id)
    live = await ctx.admitter.account_of(parent)
    child = build_child(
        parent,
        plan,
        task_id=ctx.admitter.new_id(),
        now=ctx.clock(),
        custom_id=custom_id,
        state=state,
        notify_hook=hook,
        api_key_name=api_key_name(request),
    )
    return _reply(await ctx.admitter.submit_followup(child, account=live))


async def _parent(ctx: ApiContext, task_id: str) -> Task:
    if not task_id.strip():
        raise ValidationFailed("taskId must not be blank")
    parent = await ctx.store.get(task_id) if len(task_id) <= 64 else None
    if parent is None:
        raise ParentNotFound(task_id)
    return parent


@post(route_paths("/mj/submit/action"), status_code=200, summary="Press a button of a finished task")
async def action(request: AnyRequest, data: ActionRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
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


@post(route_paths("/mj/submit/change"), status_code=200, summary="Legacy U/V/R on a task")
async def change(request: AnyRequest, data: ChangeRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    parent = await _parent(ctx, data.task_id)
    if parent.status != TaskStatus.SUCCESS:
        raise ParentNotReady(parent.id, parent.status, TaskStatus.SUCCESS)
    custom_id = legacy_custom_id(parent, data.action, data.index)
    return await _press(request, ctx, parent, custom_id, state=data.state, hook=hook, require_button=False)


@post(route_paths("/mj/submit/simple-change"), status_code=200, summary="Legacy '<taskId> U1'")
async def simple_change(request: AnyRequest, data: SimpleChangeRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = _common(ctx, data.state, data.notify_hook)
    task_id, act, index = parse_simple_change(data.content)
    parent = await _parent(ctx, task_id)
    if parent.status != TaskStatus.SUCCESS:
        raise ParentNotReady(parent.id, parent.status, TaskStatus.SUCCESS)
    custom_id = legacy_custom_id(parent, act, index)
    return await _press(request, ctx, parent, custom_id, state=data.state, hook=hook, require_button=False)


@post(route_paths("/mj/submit/modal"), status_code=200, summary="Answer the modal of a code-21 task")
async def modal(request: AnyRequest, data: ModalRequest) -> SubmitResult:
    ctx = context_of(request)
    _common(ctx, data.state, data.notify_hook)
    task = await _parent(ctx, data.task_id)
    if task.status != TaskStatus.MODAL:
        raise ParentNotReady(task.id, task.status, TaskStatus.MODAL)
    kind = task.properties.modal_kind
    prompt = _prompt(ctx, data.prompt, required=False) or (task.prompt or "")
    if not prompt and kind != MODAL_MASK:
        raise ValidationFailed("prompt must not be blank")
    if kind == MODAL_ZOOM:
        match = _ZOOM.search(prompt)
        if match is None or not 1 <= float(match.group(1)) <= 2:
            raise ValidationFailed(
                "custom zoom needs --zoom between 1 and 2 in the prompt, e.g. 'a cat --zoom 1.5'"
            )
    ctx.admitter.banned.check(prompt)
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
    account = await ctx.admitter.account_of(task)
    await ctx.store.put_blobs(task.id, blobs)

    def answer(current: Task) -> Task | None:
        # compare-and-set: of two concurrent /modal calls only one moves the task out of MODAL
        if current.status != TaskStatus.MODAL:
            return None
        return msgspec.structs.replace(current, status=TaskStatus.NOT_START, prompt=prompt, prompt_en=prompt)

    update = await ctx.store.update(task.id, answer)
    if not update.changed or update.task is None:
        raise ParentNotReady(task.id, update.task.status if update.task else "gone", TaskStatus.MODAL)
    admission = await ctx.admitter.admit_existing(update.task, account=account)
    if admission.code == 23:
        # back to the modal state, so the client can answer again once the queue has room
        await ctx.store.transition(task.id, TaskStatus.MODAL)
        raise QueueFull(account.channel_id)
    return _reply(Admitted(update.task, admission.code, admission.position, account))


# -- uploads --------------------------------------------------------------------------------------


@post(route_paths("/mj/submit/upload-discord-images"), status_code=200, summary="Upload images to Discord")
async def upload_discord_images(request: AnyRequest, data: UploadRequest) -> SubmitResult:
    ctx = context_of(request)
    if not data.base64_array:
        raise ValidationFailed("base64Array must not be empty")
    if len(data.base64_array) > 10:
        raise ValidationFailed("at most 10 images per upload")
    blobs = _images(ctx, data.base64_array, "base64Array")
    accounts = await ctx.admitter.choose(bot_type=BotType.MID_JOURNEY, account_filter=data.account_filter)
    call = new_call("upload", blob_names=list(blobs))
    await ctx.store.put_blobs(call.id, blobs)
    urls = await call_bridge(ctx.redis, accounts[0].id, call)
    result = urls if isinstance(urls, list) else [urls] if urls else []
    return SubmitResult(code=1, description="Submit success", result=result)


SUBMIT_HANDLERS = [
    imagine,
    describe,
    blend,
    shorten,
    swap_face,
    action,
    change,
    simple_change,
    modal,
    upload_discord_images,
]
