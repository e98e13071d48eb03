"""`/mj/submit/video`: a video from a start frame, or the extend of a finished video (trueai's body).

Checked at the door (code 4, nothing stored): a start frame for a new video, motion low|high, a batch
size of 1, 2 or 4, a known videoType; an extend names a finished VIDEO / VIDEO_EXTEND task and one of
its videos. The frames: base64 is decoded and stored with the task (the bridge uploads it), one of our
own image URLs goes into the prompt as it is, any other URL is checked by the URL guard here and
downloaded through it by the bridge (`broker.video`).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, post

from broker.actions import ActionPlan, build_child
from broker.api.context import ApiContext, api_key_name, context_of
from broker.api.door import (
    MAX_URL,
    admitted_reply,
    check_common,
    check_link,
    check_prompt,
    check_prompt_links,
    english,
    require_worker,
)
from broker.api.images import decode_image
from broker.api.own_images import stored_image
from broker.api.paths import route_paths, speed_mode
from broker.api.schema import POST, responses
from broker.api.types import VideoRequest
from broker.discord import ButtonKind, parse_custom_id
from broker.eligibility import wanted_modes
from broker.errors import ParentNotReady, TaskNotFound, ValidationFailed
from broker.models import BotType, SubmitResult, Task, TaskAction, TaskProperties, TaskStatus
from broker.video import BATCH_SIZES, DEFAULT_BATCH, MOTIONS, VIDEO_TYPES, VideoSpec, is_own_image_url

__all__ = ["VIDEO_HANDLERS"]

AnyRequest = Request[Any, Any, Any]

_ERRORS = responses(POST)
_LINK = re.compile(r"https?://\S+$", re.IGNORECASE)
#: tasks whose result is a set of videos that can be extended
_VIDEO_PARENTS = frozenset({TaskAction.VIDEO, TaskAction.VIDEO_EXTEND})
_REAL_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


def _options(data: VideoRequest) -> VideoSpec:
    motion = (data.motion or "low").strip().lower()
    if motion not in MOTIONS:
        raise ValidationFailed("motion must be 'low' or 'high'")
    batch = DEFAULT_BATCH if data.batch_size is None else data.batch_size
    if batch not in BATCH_SIZES:
        raise ValidationFailed("batchSize must be 1, 2 or 4")
    if data.video_type is not None and data.video_type not in VIDEO_TYPES:
        raise ValidationFailed(f"videoType must be one of {', '.join(VIDEO_TYPES)}")
    return VideoSpec(motion=motion, loop=bool(data.loop), batch_size=batch, video_type=data.video_type)


def _own(ctx: ApiContext, url: str) -> bool:
    """One of our own images (see `broker.video.is_own_image_url`)."""
    settings = ctx.settings
    base = settings.discord.cdn_url.split("://", 1)[-1].split("/", 1)[0].lower()
    return is_own_image_url(
        url,
        cdn_hosts={base, *_REAL_CDN_HOSTS},
        channel_ids={a.channel_id for a in settings.accounts},
    )


async def _frame(
    ctx: ApiContext, value: str, role: str, what: str, blobs: dict[str, bytes]
) -> tuple[str | None, str | None]:
    """(own URL, link to fetch) of a frame; base64 and images of our store go into `blobs` as
    ``<role>.<ext>``."""
    text = value.strip()
    if text.lower().startswith(("http://", "https://")):
        if not _LINK.match(text) or len(text) > MAX_URL:
            raise ValidationFailed(f"{what} must be an http or https URL of at most {MAX_URL} characters")
        if _own(ctx, text):
            return text, None
        stored = await stored_image(ctx, text, what)
        if stored is not None:
            blobs[f"{role}.{stored[1]}"] = stored[0]
            return None, None
        check_link(ctx, text, what)
        return None, text
    raw, ext = decode_image(text, max_bytes=ctx.settings.tasks.max_image_bytes, what=what)
    blobs[f"{role}.{ext}"] = raw
    return None, None


@post(route_paths("/mj/submit/video"), status_code=200, summary="Make or extend a video", responses=_ERRORS)
async def video(request: AnyRequest, data: VideoRequest) -> SubmitResult:
    ctx = context_of(request)
    hook = check_common(ctx, data.state, data.notify_hook)
    prompt = check_prompt(ctx, data.prompt)
    spec = _options(data)
    check_prompt_links(ctx, prompt)
    action = (data.action or "").strip().lower()
    if action == "extend":
        return await _extend(request, ctx, data, prompt, spec, hook)
    translated = await english(ctx, prompt)
    if action:
        raise ValidationFailed("action must be 'extend', or left out for a new video")
    if data.task_id or data.index is not None:
        raise ValidationFailed("taskId and index go with action 'extend'")
    if not data.image or not data.image.strip():
        raise ValidationFailed("a video needs a start frame: image (an image URL or base64)")
    blobs: dict[str, bytes] = {}
    start_url, start_link = await _frame(ctx, data.image, "start", "image", blobs)
    end_url = end_link = None
    if data.end_image and data.end_image.strip():
        end_url, end_link = await _frame(ctx, data.end_image, "end", "endImage", blobs)
    spec.start_url, spec.start_link, spec.end_url, spec.end_link = start_url, start_link, end_url, end_link
    await require_worker(ctx)
    task_id = ctx.admitter.new_id()
    task = Task(
        id=task_id,
        action=TaskAction.VIDEO,
        prompt=prompt,
        prompt_en=translated.text,
        description=f"/video {prompt}",
        state=data.state,
        submit_time=ctx.clock(),
        properties=TaskProperties(
            notify_hook=hook,
            prompt_en=translated.text,
            translation_error=translated.error,
            attachments=list(blobs) or None,
            bot_type=BotType.MID_JOURNEY.value,
            video=spec,
        ),
        bot_type=BotType.MID_JOURNEY,
        api_key_name=api_key_name(request),
    )
    modes = wanted_modes(speed_mode(request.scope["path"]), data.account_filter, prompt)
    admitted = await ctx.admitter.submit(
        task, blobs=blobs or None, account_filter=data.account_filter, modes=modes
    )
    return admitted_reply(admitted)


async def _extend(
    request: AnyRequest,
    ctx: ApiContext,
    data: VideoRequest,
    prompt: str,
    spec: VideoSpec,
    hook: str | None,
) -> SubmitResult:
    task_id = (data.task_id or "").strip()
    if not task_id:
        raise ValidationFailed("an extend needs taskId (the finished video task) and index")
    if data.index is None:
        raise ValidationFailed("an extend needs index (which video of the task, from 0)")
    parent = await ctx.store.get(task_id) if len(task_id) <= 64 else None
    if parent is None:
        raise TaskNotFound(task_id)
    if parent.action not in _VIDEO_PARENTS:
        raise ValidationFailed(
            f"task {parent.id} ({parent.action}) is not a video: only a video can be extended"
        )
    if parent.status != TaskStatus.SUCCESS:
        raise ParentNotReady(parent.id, parent.status, TaskStatus.SUCCESS)
    # The parent's own U buttons say how many videos it has: index N is the button N+1.
    upscales = {
        parsed.arg: b.custom_id
        for b in parent.buttons
        if (parsed := parse_custom_id(b.custom_id)) is not None and parsed.kind is ButtonKind.VIDEO_UPSCALE
    }
    custom_id = upscales.get(str(data.index + 1)) if 0 <= data.index < 64 else None
    if custom_id is None:
        count = len(upscales)
        raise ValidationFailed(
            f"index must be 0 to {count - 1} for task {parent.id} ({count} videos)"
            if count
            else f"task {parent.id} has no videos to extend"
        )
    spec.index = data.index + 1
    translated = await english(ctx, prompt)
    ctx.admitter.banned.check(translated.text, prompt)
    await require_worker(ctx)
    account = await ctx.admitter.account_of(parent)
    mode = ctx.admitter.followup_mode(parent, account, speed_mode(request.scope["path"]))
    plan = ActionPlan(
        action=TaskAction.VIDEO_EXTEND,
        index=spec.index,
        prompt=prompt,
        description=f"/video extend {parent.id} {data.index}",
    )
    child = build_child(
        parent,
        plan,
        task_id=ctx.admitter.new_id(),
        now=ctx.clock(),
        custom_id=custom_id,
        state=data.state,
        notify_hook=hook,
        api_key_name=api_key_name(request),
    )
    properties = msgspec.structs.replace(child.properties, video=spec)
    child = msgspec.structs.replace(
        child, prompt_en=translated.text, properties=properties, request_mode=mode
    )
    return admitted_reply(await ctx.admitter.submit_followup(child, account=account))


VIDEO_HANDLERS = [video]
