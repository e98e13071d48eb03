"""The task vocabulary shared by every process: Task, Button, enums and the submit reply.

A `Task` is both the record kept in Redis and the JSON body of `/mj/task/{id}/fetch` and of the
notify hook, so one encode serves all three and a fetch can return the stored bytes as they are.
Field names are camelCase on the wire, as midjourney-proxy clients expect.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

import msgspec

from broker.video import VideoSpec

__all__ = [
    "BotType",
    "Button",
    "ImageUrl",
    "ReturnCode",
    "SpeedMode",
    "SubmitResult",
    "Task",
    "TaskAction",
    "TaskProperties",
    "TaskStatus",
    "VideoUrl",
    "decode_task",
    "encode_task",
]


class TaskStatus(StrEnum):
    """Where a task is in its life. Only `broker.store` moves a task between these."""

    #: stored and admitted; waiting for a slot or for the bridge to send it
    NOT_START = "NOT_START"
    #: parked until `/mj/submit/modal` arrives; takes no slot
    MODAL = "MODAL"
    #: the bridge has claimed it and sent (or is sending) the interaction; never sent again
    SUBMITTED = "SUBMITTED"
    #: the bot reported progress
    IN_PROGRESS = "IN_PROGRESS"
    #: finished with a result (terminal)
    SUCCESS = "SUCCESS"
    #: finished without a result; `failReason` says why (terminal)
    FAILURE = "FAILURE"
    #: withdrawn before it ran (terminal)
    CANCEL = "CANCEL"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCEL})


class TaskAction(StrEnum):
    IMAGINE = "IMAGINE"
    UPSCALE = "UPSCALE"
    VARIATION = "VARIATION"
    REROLL = "REROLL"
    ZOOM = "ZOOM"
    PAN = "PAN"
    DESCRIBE = "DESCRIBE"
    BLEND = "BLEND"
    SHORTEN = "SHORTEN"
    SWAP_FACE = "SWAP_FACE"
    #: a video from a start frame (/mj/submit/video, 🎞️ Animate); its result carries `videoUrl(s)`
    VIDEO = "VIDEO"
    #: a finished video made longer (/mj/submit/video with action "extend", the Extend buttons)
    VIDEO_EXTEND = "VIDEO_EXTEND"


class BotType(StrEnum):
    MID_JOURNEY = "MID_JOURNEY"
    NIJI_JOURNEY = "NIJI_JOURNEY"
    INSIGHT_FACE = "INSIGHT_FACE"


class SpeedMode(StrEnum):
    FAST = "FAST"
    RELAX = "RELAX"
    TURBO = "TURBO"


class ReturnCode(IntEnum):
    """`code` of every submit reply, as midjourney-proxy defines it."""

    SUCCESS = 1
    NOT_FOUND = 3
    VALIDATION_ERROR = 4
    FAILURE = 9
    EXISTED = 21  # the task waits for /mj/submit/modal
    IN_QUEUE = 22
    QUEUE_REJECTED = 23
    BANNED_PROMPT = 24


class Button(msgspec.Struct, kw_only=True, rename="camel"):
    """A button of a finished task; `custom_id` is the bot's own, replayed unchanged by /action."""

    custom_id: str
    emoji: str = ""
    label: str = ""
    type: int = 2
    style: int = 2


class VideoUrl(msgspec.Struct, kw_only=True):
    """One entry of a task's `videoUrls`, as trueai's midjourney-proxy lists them: ``{"url": ...}``."""

    url: str


class ImageUrl(msgspec.Struct, kw_only=True):
    """One entry of a task's `imageUrls` (the name trueai-org/midjourney-proxy uses)."""

    url: str


class TaskProperties(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """The free `properties` map of midjourney-proxy, typed; unset keys are left out of the JSON."""

    discord_instance_id: str | None = None
    notify_hook: str | None = None
    nonce: str | None = None
    final_prompt: str | None = None
    final_zh_prompt: str | None = None
    message_id: str | None = None
    message_hash: str | None = None
    progress_message_id: str | None = None
    referenced_message_id: str | None = None
    interaction_id: str | None = None
    flags: int | None = None
    message_content: str | None = None
    bot_type: str | None = None
    custom_id: str | None = None
    #: custom_id of the modal the bot opened (custom zoom, remix, describe/shorten picks, vary region)
    modal_custom_id: str | None = None
    #: what the modal needs from /mj/submit/modal: "prompt", "zoom", "mask"
    modal_kind: str | None = None
    #: image links uploaded for this task (imagine references, describe, blend, swap face)
    image_urls: list[str] | None = None
    #: names of the image blobs stored with the task for the bridge to upload, in order ("0.png", ...)
    attachments: list[str] | None = None
    #: which image of a grid an action is about (U1..U4, V1..V4)
    index: int | None = None
    blend_dimensions: str | None = None
    prompt_en: str | None = None
    #: why the prompt (or, for describe and shorten, the result) could not be translated; the
    #: text then went as written (`broker.translation`)
    translation_error: str | None = None
    #: "zh": a describe or shorten result is translated into finalZhPrompt before SUCCESS
    result_language: str | None = None
    #: the task's result is in, and a worker finishes it before SUCCESS (`workers.finishing`)
    finishing: str | None = None
    banned_word: str | None = None
    #: why the task's notify hook was given up for good (refused by the URL guard, or retried
    #: until hooks.give_up_minutes); cleared when a later delivery succeeds
    notify_hook_error: str | None = None
    #: epoch ms: Discord answered the task's interaction with a 429 (not run) and asked the account
    #: to wait until then; the bridge sends it after that, and its timeout counts from that send
    rate_limited_until: int | None = None
    #: epoch ms when the job's progress message was deleted (a timeout then says so)
    message_deleted_time: int | None = None
    #: what /mj/submit/video asked for (motion, frames, loop, batch size, the extended video's index)
    video: VideoSpec | None = None
    # ---- cancelling a running job (issue 12) ----
    #: the "Cancel Job" custom_id the bot put on the running job's message (pressed by /cancel)
    cancel_custom_id: str | None = None
    #: epoch ms when a client asked to cancel the running job; its "(Stopped)" then fails it "cancelled"
    cancel_requested_time: int | None = None
    #: Discord's URL of the result, once `imageUrl` is the image store's copy (`workers.image_copy`)
    discord_image_url: str | None = None
    #: why the result could not be copied into the image store (imageUrl is then Discord's URL)
    image_store_error: str | None = None
    #: Discord's URLs of a video result's files, once `videoUrls` are the image store's copies
    discord_video_urls: list[str] | None = None


class Task(msgspec.Struct, kw_only=True, rename="camel"):
    """One job, as stored and as served; nulls are kept because Java-era clients test for them."""

    id: str
    action: TaskAction
    status: TaskStatus = TaskStatus.NOT_START
    prompt: str | None = None
    prompt_en: str | None = None
    description: str | None = None
    state: str | None = None
    submit_time: int | None = None
    start_time: int | None = None
    finish_time: int | None = None
    image_url: str | None = None
    #: the image store's copies: the four quarters of a grid, or the one image of a single result
    image_urls: list[ImageUrl] | None = None
    #: a small WebP of the result, from the image store
    thumbnail_url: str | None = None
    progress: str | None = None
    fail_reason: str | None = None
    properties: TaskProperties = msgspec.field(default_factory=TaskProperties)
    buttons: list[Button] = msgspec.field(default_factory=list)
    bot_type: BotType = BotType.MID_JOURNEY
    custom_id: str | None = None
    seed: str | None = None
    parent_id: str | None = None
    #: the speed mode the bot reports the job ran in ("(fast)", "(relaxed)", "(turbo)")
    mode: SpeedMode | None = None
    #: the speed mode the broker asked for (prompt flag, /mj-fast etc., accountFilter.modes or the
    #: account's default_mode; see `broker.modes`)
    request_mode: SpeedMode | None = None
    #: the account (config id) that runs this task
    instance_id: str | None = None
    #: name of the api key that submitted it (for usage figures); never the secret
    api_key_name: str | None = None
    #: increases on every change; hooks carry it so receivers can drop stale deliveries
    revision: int = 0
    #: a finished video (VIDEO, VIDEO_EXTEND, a video's U): its first video file
    video_url: str | None = None
    #: every video file of the result, in the bot's order
    video_urls: list[VideoUrl] | None = None

    @property
    def progress_percent(self) -> int:
        if not self.progress:
            return 0
        try:
            return int(self.progress.rstrip("%"))
        except ValueError:
            return 0


class SubmitResult(msgspec.Struct, kw_only=True):
    """The reply of every /mj/submit/* call."""

    code: ReturnCode
    description: str
    result: Any = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


_task_encoder = msgspec.json.Encoder()
_task_decoder = msgspec.json.Decoder(Task)


def encode_task(task: Task) -> bytes:
    return _task_encoder.encode(task)


def decode_task(raw: bytes | str) -> Task:
    return _task_decoder.decode(raw)
