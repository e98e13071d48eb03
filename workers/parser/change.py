"""What the parser says about one gateway event: `Change`, its `Kind` and the bot's `ErrorInfo`."""

from __future__ import annotations

from typing import Literal

import msgspec

from broker.models import BotType, Button, SpeedMode, TaskAction

__all__ = ["Change", "ErrorInfo", "Kind"]

Kind = Literal["start", "progress", "done", "describe", "shorten", "error", "queued", "modal", "ignore"]


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the bot said went wrong (or, for ``queued``, what it said about the wait)."""

    title: str
    description: str


class Change(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What one gateway event means for a task.

    The first thirteen fields are the CLI line; the rest are for the workers only.
    """

    kind: Kind
    action: TaskAction | None = None
    #: percent from ``(N%)``; None when paused/stopped/waiting or not a progress message
    progress: int | None = None
    #: the bot-normalised prompt between the ``**`` (becomes properties.finalPrompt)
    prompt: str | None = None
    mode: SpeedMode | None = None
    #: N of ``Image #N`` / ``Upscaling image #N`` or of a modal custom_id
    index: int | None = None
    #: job uuid (§4.3), or the seed DM's job id
    hash: str | None = None
    message_id: str | None = None
    nonce: str | None = None
    image_url: str | None = None
    custom_ids: list[str] = msgspec.field(default_factory=list)
    prompts: list[str] = msgspec.field(default_factory=list)
    error: ErrorInfo | None = None
    # ---- not printed by the CLI ----
    #: the dispatch type this came from
    event: str = ""
    #: message `flags`, sent back as `message_flags` when clicking its buttons
    message_flags: int | None = None
    #: every component with a custom_id, in message order (buttons, select menus, modal inputs)
    buttons: list[Button] = msgspec.field(default_factory=list)
    #: INTERACTION_* / modal `d.id`, or the message's interaction_metadata.id / interaction.id
    interaction_id: str | None = None
    #: interaction_metadata.name / interaction.name (imagine, blend, describe, shorten, show, info...)
    interaction_name: str | None = None
    #: 2 slash command, 3 button, 5 modal submit
    interaction_type: int | None = None
    referenced_message_id: str | None = None
    channel_id: str | None = None
    guild_id: str | None = None
    author_id: str | None = None
    bot: BotType | None = None
    #: the mentioned requesting user, from ``<@U>``
    user_id: str | None = None
    content: str | None = None
    embed_title: str | None = None
    #: raw describe/shorten/notice text
    embed_description: str | None = None
    modal_custom_id: str | None = None
    modal_title: str | None = None
    iframe_path: str | None = None
    #: "Waiting to start", "paused" or "Stopped"
    status_text: str | None = None
    stealth: bool = False
    #: from the ✉️ seed DM; `hash` holds its job id
    seed: str | None = None
    #: the message's video files (mp4), in order: a video result's `videoUrls`
    video_urls: list[str] = msgspec.field(default_factory=list)
