"""Checks every submit route makes at the door, and the reply of an admission."""

from __future__ import annotations

from typing import Any

from broker.admission import Admitted
from broker.api.context import ApiContext
from broker.api.images import decode_image
from broker.errors import NoWorker, ValidationFailed
from broker.models import ReturnCode, SubmitResult
from broker.translation import Translated
from broker.url_guard import UrlGuard, UrlRefused, prompt_urls

__all__ = [
    "MAX_IMAGES",
    "MAX_URL",
    "admitted_reply",
    "check_common",
    "check_link",
    "check_prompt",
    "check_prompt_links",
    "decode_images",
    "require_worker",
]

MAX_STATE = 255
#: longest notifyHook or image link accepted
MAX_URL = 2000
MAX_IMAGES = 5


def check_common(ctx: ApiContext, state: str | None, hook: str | None) -> str | None:
    """Check `state` and `notifyHook`; return the effective hook URL."""
    if state is not None and len(state) > MAX_STATE:
        raise ValidationFailed(f"state is longer than {MAX_STATE} characters")
    if hook:
        if len(hook) > MAX_URL:
            raise ValidationFailed(f"notifyHook is longer than {MAX_URL} characters")
        lowered = hook[:8].lower()
        if not (lowered.startswith("http://") or lowered.startswith("https://")) or len(hook) < 10:
            raise ValidationFailed("notifyHook must be an http or https URL")
        _guarded(ctx.settings.hook_guard(), hook, "notifyHook")
        return hook
    return ctx.settings.hooks.default_url or None


async def require_worker(ctx: ApiContext) -> None:
    """Refuse new work (code 9) while no worker process is alive: nothing would follow it."""
    if not await ctx.workers.alive():
        raise NoWorker()


def check_prompt(ctx: ApiContext, prompt: str | None, *, required: bool = True) -> str:
    text = (prompt or "").strip()
    if required and not text:
        raise ValidationFailed("prompt must not be blank")
    limit = ctx.settings.tasks.max_prompt_chars
    if len(text) > limit:
        raise ValidationFailed(f"prompt is longer than {limit} characters")
    return text


async def english(ctx: ApiContext, prompt: str) -> Translated:
    """The prompt Midjourney gets: its Chinese prose in English (`broker.translation`).

    A failed translation sends the prompt as written (the task's properties say why), or refuses the
    request when `translation.required` is set.
    """
    translated = await ctx.translator.to_english(prompt)
    if translated.error and ctx.settings.translation.required:
        raise ValidationFailed(f"{translated.error}; the prompt was not submitted (translation.required)")
    return translated


def check_link(ctx: ApiContext, url: str, what: str) -> None:
    """Refuse (code 4) a link we or Midjourney will fetch when the URL guard refuses it without DNS;
    a name is checked where it is fetched (the bridge fails the task then)."""
    _guarded(ctx.settings.link_guard(), url, what)


def _guarded(guard: UrlGuard, url: str, what: str) -> None:
    """`guard`'s refusal of `url` as far as it can tell without DNS, as a code-4 answer."""
    try:
        guard.check_url(url, what=what)
    except UrlRefused as exc:
        raise ValidationFailed(str(exc)) from None


def check_prompt_links(ctx: ApiContext, prompt: str) -> None:
    """`check_link` on every URL of a prompt (image prompts, --sref/--cref values)."""
    for url in prompt_urls(prompt):
        if len(url) > MAX_URL:
            raise ValidationFailed(f"a URL in the prompt is longer than {MAX_URL} characters")
        check_link(ctx, url, "image prompt URL")


def decode_images(ctx: ApiContext, items: list[str], what: str) -> dict[str, bytes]:
    """Decode images into blobs named "0.png", "1.jpg", ... in order."""
    blobs: dict[str, bytes] = {}
    limit = ctx.settings.tasks.max_image_bytes
    for i, item in enumerate(items):
        data, ext = decode_image(item, max_bytes=limit, what=f"{what}[{i}]")
        blobs[f"{i}.{ext}"] = data
    return blobs


def admitted_reply(admitted: Admitted) -> SubmitResult:
    """The reply to an admitted task: 1 started, 22 queued with the place, 21 waiting for its modal."""
    task, code = admitted.task, admitted.code
    props: dict[str, Any] = {"discordInstanceId": admitted.account.channel_id}
    if code == ReturnCode.IN_QUEUE:
        props["numberOfQueues"] = admitted.position
        return SubmitResult(
            code=code,
            description=f"In queue, there are {admitted.position} tasks ahead",
            result=task.id,
            properties=props,
        )
    if code == ReturnCode.EXISTED:
        props["finalPrompt"] = task.prompt
        props["remix"] = True
        return SubmitResult(
            code=code, description="Waiting for window confirm", result=task.id, properties=props
        )
    return SubmitResult(
        code=ReturnCode.SUCCESS, description="Submit success", result=task.id, properties=props
    )
