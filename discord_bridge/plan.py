"""What the bridge gathers for a task before its claim (`Plan`), and how its flows fail."""

from __future__ import annotations

from typing import Any

import msgspec

from broker.discord import MIDJOURNEY_ID
from broker.image_fetch import FetchRefused, ImageFetcher
from broker.models import SpeedMode
from broker.url_guard import prompt_urls
from discord_bridge.rest import DiscordError, Rejected, Uploaded

__all__ = ["FlowFailed", "LinkRefused", "Payload", "Plan", "check_prompt_links"]

Payload = dict[str, Any]


class FlowFailed(DiscordError):
    """A multi-step flow stopped after its first interaction (no modal, a captcha...)."""


class LinkRefused(Rejected):
    """A link of the client's was refused by the URL guard or is not an image: nothing was sent."""

    def __init__(self, reason: str) -> None:
        DiscordError.__init__(self, reason)
        self.status = 400
        self.code = None


async def check_prompt_links(fetcher: ImageFetcher, prompt: str) -> None:
    """Midjourney fetches the links of a prompt (imagine, video): their hosts pass the URL guard first."""
    for link in prompt_urls(prompt):
        try:
            await fetcher.check_host(link)
        except FetchRefused as exc:
            raise LinkRefused(f"image prompt {exc.reason}") from None


class Plan(msgspec.Struct, kw_only=True):
    """Everything `send` needs, gathered before the claim."""

    kind: str  #: "command" | "click" | "swap" | "extend" (a video's, `discord_bridge.video`)
    command: str | None = None
    application_id: str = MIDJOURNEY_ID
    options: list[Payload] = msgspec.field(default_factory=list)
    attachments: list[Payload] = msgspec.field(default_factory=list)
    #: imagine: the reference images' CDN URLs (stored on the task at the claim)
    image_urls: list[str] | None = None
    #: imagine: the prompt as sent (URLs + prompt)
    final_prompt: str | None = None
    mask: bytes | None = None
    face_source: Uploaded | None = None
    face_target: Uploaded | None = None
    face_idname: str = ""
    #: the account-wide mode to switch to before sending (buttons and describe, which carry no flag)
    switch_mode: SpeedMode | None = None
