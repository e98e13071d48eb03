"""The video parts of a bot message: its video files, and which video action the message reports.

A video job's messages follow the imagine pattern; what tells them apart (after trueai's parser,
reference/discord-protocol.md §4.2, §5) is ``--video`` in the prompt, and for one video brought up
from a set (``video_virtual_upscale``) the Extend buttons under it, which carry its number N.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from broker.discord import ButtonKind, parse_custom_id
from broker.discord_types import Attachment
from broker.models import TaskAction

__all__ = ["video_action", "video_files"]

_VIDEO_PARAM = re.compile(r"(?:^|\s)--video(?:\s|$)", re.IGNORECASE)


def video_files(attachments: Sequence[Attachment] | None) -> list[str]:
    """The URLs of a message's video attachments (mp4), in message order."""
    out: list[str] = []
    for attachment in attachments or ():
        url = attachment.url or attachment.proxy_url
        name = (attachment.filename or url or "").split("?", 1)[0].lower()
        if url and ((attachment.content_type or "").startswith("video/") or name.endswith(".mp4")):
            out.append(url)
    return out


def video_action(prompt: str, custom_ids: Sequence[str]) -> tuple[TaskAction, int | None] | None:
    """(action, index) of a video message: UPSCALE N for one video of a set, VIDEO for a video job;
    None for anything else."""
    for custom_id in custom_ids:
        parsed = parse_custom_id(custom_id)
        if parsed is not None and parsed.kind is ButtonKind.ANIMATE_EXTEND:
            return TaskAction.UPSCALE, int(parsed.arg) if parsed.arg.isdigit() else None
    if _VIDEO_PARAM.search(prompt):
        return TaskAction.VIDEO, None
    return None
