"""Request and response bodies of the HTTP API (camelCase on the wire, as midjourney-proxy's)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

import msgspec

from broker.eligibility import AccountFilter
from broker.models import BotType

__all__ = [
    "AccountView",
    "ActionRequest",
    "BlendDimensions",
    "BlendRequest",
    "ChangeRequest",
    "DescribeRequest",
    "ImagineRequest",
    "ListByIdsRequest",
    "ModalRequest",
    "ShortenRequest",
    "SimpleChangeRequest",
    "SwapFaceRequest",
    "UploadRequest",
    "VideoRequest",
]


class BlendDimensions(StrEnum):
    PORTRAIT = "PORTRAIT"
    SQUARE = "SQUARE"
    LANDSCAPE = "LANDSCAPE"


class _Base(msgspec.Struct, kw_only=True, rename="camel"):
    #: echoed on the task; at most 255 characters
    state: str | None = None
    #: per-task hook URL (http or https, at most 2000 characters); else the configured default
    notify_hook: str | None = None


class ImagineRequest(_Base, kw_only=True):
    prompt: str
    #: reference images as data-URLs (or bare base64)
    base64_array: list[str] | None = None
    #: deprecated single image, appended to base64Array
    base64: str | None = None
    bot_type: BotType | None = None
    account_filter: AccountFilter | None = None


class ActionRequest(_Base, kw_only=True):
    task_id: str
    custom_id: str
    #: force the remix modal (code 4 when the account has remix off)
    enable_remix: bool | None = None
    #: accepted for compatibility; Vary Strong/Subtle are chosen by the button pressed
    strong: bool | None = None


class ModalRequest(_Base, kw_only=True):
    task_id: str
    prompt: str | None = None
    #: Vary (Region): PNG data-URL, black background, selected area white
    mask_base64: str | None = None


class DescribeRequest(_Base, kw_only=True):
    base64: str | None = None
    link: str | None = None
    #: "zh": the result is also given in Chinese, as properties.finalZhPrompt
    language: Literal["zh", "zh_cn", "en"] | None = None
    bot_type: BotType | None = None
    account_filter: AccountFilter | None = None


class BlendRequest(_Base, kw_only=True):
    #: 2 to 5 images
    base64_array: list[str]
    dimensions: BlendDimensions = BlendDimensions.SQUARE
    bot_type: BotType | None = None
    account_filter: AccountFilter | None = None


class ShortenRequest(_Base, kw_only=True):
    prompt: str
    #: "zh": the result is also given in Chinese, as properties.finalZhPrompt
    language: Literal["zh", "zh_cn", "en"] | None = None
    bot_type: BotType | None = None
    account_filter: AccountFilter | None = None


class ChangeRequest(_Base, kw_only=True):
    task_id: str
    action: Literal["UPSCALE", "VARIATION", "REROLL"]
    #: 1 to 4 for UPSCALE and VARIATION
    index: int | None = None


class SimpleChangeRequest(_Base, kw_only=True):
    #: "<taskId> U1" (U1-4, V1-4, R)
    content: str


class UploadRequest(msgspec.Struct, kw_only=True, rename="camel"):
    base64_array: list[str]
    account_filter: AccountFilter | None = None


class SwapFaceRequest(_Base, kw_only=True):
    #: the face
    source_base64: str | None = None
    source_url: str | None = None
    #: the image the face goes onto
    target_base64: str | None = None
    target_url: str | None = None
    account_filter: AccountFilter | None = None


class VideoRequest(_Base, kw_only=True):
    """trueai's /mj/submit/video body."""

    prompt: str
    #: low | high (default low)
    motion: str | None = None
    #: the start frame: an http(s) URL or base64 (a data-URL); not needed for an extend
    image: str | None = None
    #: an optional end frame, a URL or base64
    end_image: str | None = None
    loop: bool | None = None
    #: 1, 2 or 4 videos (default 4)
    batch_size: int | None = None
    #: "extend" (with taskId and index), or left out for a new video
    action: str | None = None
    #: the finished video task to extend
    task_id: str | None = None
    #: which of its videos, 0-based
    index: int | None = None
    #: vid_1.1_i2v_480 (SD, default) or vid_1.1_i2v_720 (HD)
    video_type: str | None = None
    account_filter: AccountFilter | None = None


class ListByIdsRequest(msgspec.Struct, kw_only=True):
    ids: list[str] | None = None


class AccountView(msgspec.Struct, kw_only=True, rename="camel"):
    """An account as `/mj/account/*` shows it (the Java DiscordAccount shape); never the token."""

    id: str
    guild_id: str
    channel_id: str
    user_agent: str
    enable: bool
    core_size: int
    queue_size: int
    timeout_minutes: float
    properties: dict[str, Any]
    #: live health from the bridge (`broker.account_status.AccountState`: CONNECTING, ONLINE,
    #: RATE_LIMITED, PAUSED, DISABLED), None before a bridge held it
    status: str | None
    status_reason: str | None
    running: int
    waiting: int
    #: the account choice rules (`accounts.choice`, README "Choosing the account"): tasks per day
    #: at most (0 = no limit), in the operator's `timezone`
    daily_limit: int = 0
    #: tasks admitted today; None when the account has no daily limit (then they are not counted)
    daily_count: int | None = None
    #: when it takes new tasks ("09:00-23:00"); empty = always
    work_hours: str = ""
    weight: int = 1
    #: whether it takes new tasks now: inside its work hours and under its daily limit
    open_now: bool = True
    #: why not, when it does not
    closed_reason: str | None = None
