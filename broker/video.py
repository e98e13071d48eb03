"""Video on Discord accounts: what /mj/submit/video asked for, and the imagine prompt that asks for it.

Midjourney makes a video from an imagine whose prompt starts with the start frame's URL and carries
``--video 1``, ``--motion low|high``, optionally ``--end <url>`` (an end frame), ``--loop`` and ``--bs N``
(1 or 2 videos instead of 4); reference/mj-api.md §8. An extend presses the video's
``video_virtual_upscale`` button, then ``animate_<motion>_extend`` on the message it brings.

A start or end frame given as one of our own image URLs is used in the prompt as it is (Midjourney
fetches it, as it fetched it for the task that made it); anything else is downloaded through the URL
guard and uploaded like the other image inputs. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "BATCH_SIZES",
    "DEFAULT_BATCH",
    "MOTIONS",
    "VIDEO_TYPES",
    "VideoSpec",
    "is_own_image_url",
    "video_prompt",
]

MOTIONS: Final = ("low", "high")
BATCH_SIZES: Final = (1, 2, 4)
#: the bot makes four videos unless ``--bs`` asks for fewer
DEFAULT_BATCH: Final = 4
#: trueai's ``videoType``: SD (480p) or HD (720p). On a Discord account the resolution follows the
#: account's own video setting; the value is checked and kept on the task.
VIDEO_TYPES: Final = ("vid_1.1_i2v_480", "vid_1.1_i2v_720")


class VideoSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """What a VIDEO / VIDEO_EXTEND task asked for, kept in ``properties.video``."""

    motion: str = "low"
    loop: bool = False
    batch_size: int = DEFAULT_BATCH
    video_type: str | None = None
    #: start / end frame given as one of our own image URLs: put in the prompt as it is
    start_url: str | None = None
    end_url: str | None = None
    #: start / end frame given as anyone else's URL: downloaded (guarded) and uploaded by the bridge
    start_link: str | None = None
    end_link: str | None = None
    #: extend: which video of the parent (1-based, the N of ``video_virtual_upscale::N``)
    index: int | None = None


def _has(prompt: str, param: str) -> bool:
    return re.search(rf"(?:^|\s)--{param}(?:\s|$)", prompt, re.IGNORECASE) is not None


def video_prompt(prompt: str, spec: VideoSpec, *, start: str | None, end: str | None) -> str:
    """The imagine prompt of a video: ``<start> prompt --video 1 --motion m [--end <end>] [--loop] [--bs N]``.

    A parameter the client already wrote in the prompt is left as written, not repeated.
    """
    text = prompt.strip()
    parts = [start] if start and start not in text else []
    parts.append(text)
    if not _has(text, "video"):
        parts.append("--video 1")
    if not _has(text, "motion"):
        parts.append(f"--motion {spec.motion}")
    if end and not _has(text, "end"):
        parts.append(f"--end {end}")
    if spec.loop and not _has(text, "loop"):
        parts.append("--loop")
    if spec.batch_size != DEFAULT_BATCH and not _has(text, "bs"):
        parts.append(f"--bs {spec.batch_size}")
    return " ".join(p for p in parts if p)


def is_own_image_url(url: str, *, cdn_hosts: Collection[str], channel_ids: Collection[str]) -> bool:
    """Whether `url` is an image of ours: a Discord CDN attachment in one of our accounts' channels.

    Without the image store, a finished task's ``imageUrl`` is the Discord CDN URL of its attachment
    in the account's channel, so this is what a client gets back from us. (With the store, the web
    reads the store's URLs itself: `broker.api.own_images`.)
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        return False
    host = (parts.hostname or "").lower()
    netloc = host + (f":{port}" if port else "")
    if host not in cdn_hosts and netloc not in cdn_hosts:
        return False
    segments = parts.path.split("/")
    # /attachments/<channel id>/<attachment id>/<file name>
    return len(segments) == 5 and segments[1] == "attachments" and segments[2] in channel_ids
