"""`/mj/submit/*` for new tasks, `/mj/insight-face/swap` and image uploads: validate, build, admit."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, post

from broker.api.context import ApiContext, api_key_name, context_of
from broker.api.door import (
    MAX_IMAGES,
    MAX_URL,
    admitted_reply,
    check_common,
    check_link,
    check_prompt,
    check_prompt_links,
    decode_images,
    english,
    require_worker,
)
from broker.api.images import decode_image
from broker.api.paths import route_paths, speed_mode
from broker.api.schema import POST, responses
from broker.api.types import (
    BlendRequest,
    DescribeRequest,
    ImagineRequest,
    ShortenRequest,
    SwapFaceRequest,
    UploadRequest,
)
from broker.bridge_calls import call_bridge, new_call
from broker.eligibility import wanted_modes
from broker.errors import ValidationFailed
from broker.models import BotType, ReturnCode, SubmitResult, Task, TaskAction, TaskProperties

__all__ = ["SUBMIT_HANDLERS"]

AnyRequest = Request[Any, Any, Any]

_ERRORS = responses(POST)

_LINK = re.compile(r"https?://\S+$")


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
    language: str | None = None,
) -> SubmitResult:
    # bad mode flags are bad input: refused before anything is stored or sent
    modes = wanted_modes(speed_mode(request.scope["path"]), account_filter, prompt)
    await require_worker(ctx)
    translated = await english(ctx, prompt) if prompt else None
    prompt_en = translated.text if translated else prompt
    task_id = ctx.admitter.new_id()
    task = Task(
        id=task_id,
        action=action,
        prompt=prompt,
        prompt_en=prompt_en,
        description=description.replace("{id}", task_id),
        state=state,
        submit_time=ctx.clock(),
        properties=TaskProperties(
            notify_hook=hook,
            prompt_en=prompt_en,
            translation_error=translated.error if translated else None,
            attachments=list(blobs) if blobs else None,
            image_urls=image_urls or None,
            bot_type=bot_type.value,
            blend_dimensions=blend_dimensions,
            result_language=_result_language(ctx, action, language),
        ),
        bot_type=bot_type,
        api_key_name=api_key_name(request),
    )
    admitted = await ctx.admitter.submit(task, blobs=blobs, account_filter=account_filter, modes=modes)
    return admitted_reply(admitted)


def _result_language(ctx: ApiContext, action: TaskAction, asked: str | None) -> str | None:
    """ "zh" when a describe or shorten result is to be translated (asked, or `results_to_zh`)."""
    if action not in (TaskAction.DESCRIBE, TaskAction.SHORTEN) or asked == "en":
        return None
    return "zh" if asked in ("zh", "zh_cn") or ctx.settings.translation.results_to_zh else None


@post(route_paths("/mj/submit/imagine"), status_code=200, summary="Imagine", responses=_ERRORS)
async def imagine(request: AnyRequest, data: ImagineRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    prompt = check_prompt(ctx, data.prompt)
    check_prompt_links(ctx, prompt)
    items = [*(data.base64_array or []), *([data.base64] if data.base64 else [])]
    if len(items) > MAX_IMAGES:
        raise ValidationFailed(f"at most {MAX_IMAGES} reference images")
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
        blobs=decode_images(ctx, items, "base64Array") if items else None,
    )


@post(route_paths("/mj/submit/describe"), status_code=200, summary="Describe an image", responses=_ERRORS)
async def describe(request: AnyRequest, data: DescribeRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    blobs = None
    urls = None
    if data.base64:
        raw, ext = decode_image(data.base64, max_bytes=ctx.settings.tasks.max_image_bytes, what="base64")
        blobs = {f"0.{ext}": raw}
    elif data.link:
        if not _LINK.match(data.link) or len(data.link) > MAX_URL:
            raise ValidationFailed("link must be an http or https URL")
        check_link(ctx, data.link, "link")
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
        language=data.language,
    )


@post(route_paths("/mj/submit/blend"), status_code=200, summary="Blend 2 to 5 images", responses=_ERRORS)
async def blend(request: AnyRequest, data: BlendRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    if not 2 <= len(data.base64_array) <= MAX_IMAGES:
        raise ValidationFailed(f"blend needs 2 to {MAX_IMAGES} images in base64Array")
    blobs = decode_images(ctx, data.base64_array, "base64Array")
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


@post(route_paths("/mj/submit/shorten"), status_code=200, summary="Shorten a prompt", responses=_ERRORS)
async def shorten(request: AnyRequest, data: ShortenRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    prompt = check_prompt(ctx, data.prompt)
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
        language=data.language,
    )


@post(route_paths("/mj/insight-face/swap"), status_code=200, summary="Swap a face", responses=_ERRORS)
async def swap_face(request: AnyRequest, data: SwapFaceRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
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
            if not _LINK.match(url) or len(url) > MAX_URL:
                raise ValidationFailed(f"{role}Url must be an http or https URL")
            check_link(ctx, url, f"{role}Url")
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


# -- uploads --------------------------------------------------------------------------------------


@post(
    route_paths("/mj/submit/upload-discord-images"),
    status_code=200,
    summary="Upload images to Discord",
    responses=_ERRORS,
)
async def upload_discord_images(request: AnyRequest, data: UploadRequest) -> SubmitResult:
    ctx = context_of(request)
    if not data.base64_array:
        raise ValidationFailed("base64Array must not be empty")
    if len(data.base64_array) > 10:
        raise ValidationFailed("at most 10 images per upload")
    blobs = decode_images(ctx, data.base64_array, "base64Array")
    accounts = await ctx.admitter.choose(bot_type=BotType.MID_JOURNEY, account_filter=data.account_filter)
    call = new_call("upload", blob_names=list(blobs))
    await ctx.store.put_blobs(call.id, blobs)
    urls = await call_bridge(ctx.redis, accounts[0].id, call)
    result = urls if isinstance(urls, list) else [urls] if urls else []
    return SubmitResult(code=ReturnCode.SUCCESS, description="Submit success", result=result)


SUBMIT_HANDLERS = [imagine, describe, blend, shorten, swap_face, upload_discord_images]
