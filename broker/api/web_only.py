"""`/mj/submit/edits` and `/mj/submit/retexture`: answered code 4, never 404.

midjourney-proxy (trueai) runs both through a midjourney.com web account: the image editor and
retexture exist on the website only, and the Discord bot has no command or button for them. mjbroker
drives Discord accounts alone, which cannot stand in for a web account, so the routes exist to say
so in the API's own format instead of a bare 404 that a client would read as a wrong base URL.
The body is decoded like every other route's (a malformed one is a 400), whatever fields it holds.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post

from broker.api.paths import route_paths
from broker.api.schema import POST, responses
from broker.errors import ValidationFailed
from broker.models import SubmitResult

__all__ = ["WEB_ONLY_HANDLERS", "WebOnlyRequest", "web_only_reason"]

AnyRequest = Request[Any, Any, Any]


class WebOnlyRequest(msgspec.Struct, kw_only=True, rename="camel"):
    """The fields trueai's edits and retexture bodies carry; none is used, other keys are ignored."""

    prompt: str | None = None
    image: str | None = None
    mask_base64: str | None = None
    notify_hook: str | None = None
    state: str | None = None


def web_only_reason(what: str) -> str:
    """The code-4 description of a web-only action (`what`: "edits", "retexture")."""
    return (
        f"{what} needs a midjourney.com web account (Midjourney's web editor); this broker drives "
        "Discord accounts, which cannot stand in for one, and the Discord bot offers no such action"
    )


@post(
    route_paths("/mj/submit/edits"),
    status_code=200,
    summary="Image edits: code 4, needs a midjourney.com web account",
    responses=responses(POST),
)
async def edits(request: AnyRequest, data: WebOnlyRequest) -> SubmitResult:
    raise ValidationFailed(web_only_reason("edits"))


@post(
    route_paths("/mj/submit/retexture"),
    status_code=200,
    summary="Retexture: code 4, needs a midjourney.com web account",
    responses=responses(POST),
)
async def retexture(request: AnyRequest, data: WebOnlyRequest) -> SubmitResult:
    raise ValidationFailed(web_only_reason("retexture"))


WEB_ONLY_HANDLERS = [edits, retexture]
