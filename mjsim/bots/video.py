"""Video jobs: 🎞️ Animate on an upscaled image, a video's U1..U4 (``video_virtual_upscale``) and Extend.

Shapes after trueai-org/midjourney-proxy (TaskInfo.cs button sets, DiscordWebSocketService.cs and
MjMessageParser.cs, reference/discord-protocol.md §4.2, §5): a video job is an imagine whose prompt
carries ``--video 1``; its final message has the video files (``<user>_<words>_<uuid>_<i>.mp4``, one per
video, ``--bs`` of them, 4 by default) and U1..U{n} + 🔄. U<n> brings that one video up without a new
job, as a reply with the two Extend buttons; Extend starts a new video job (remix mode asks for the
prompt first, in ``MJ::AnimateModal::<uuid>::<n>::<motion>::1``).

Every video file is the same small, playable H.264 clip (``mjsim/assets/clip.mp4``, made by
``tools/make_video_asset.py``).
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjsim.bots.content import JobSpec, mode_label
from mjsim.cdn import publish
from mjsim.formats import button, file_prompt_words, row

if TYPE_CHECKING:
    from mjsim.bots.base import BotRuntime, InteractionCtx
    from mjsim.bots.jobs import Jobs
    from mjsim.bots.modals import Modals
    from mjsim.state import JobRecord, SimState

__all__ = [
    "Videos",
    "batch_size",
    "clip",
    "extend_spec",
    "is_video",
    "video_finals",
]

Payload = dict[str, Any]

_CLIP = Path(__file__).resolve().parent.parent / "assets" / "clip.mp4"
_VIDEO = re.compile(r"(?:^|\s)--video(?:\s|$)", re.IGNORECASE)
_BS = re.compile(r"(?:^|\s)--bs\s+([1-4])(?:\s|$)")
_MOTION = re.compile(r"\s--motion\s+\S+")


@cache
def clip() -> bytes:
    """The bytes of every video file mjsim serves."""
    return _CLIP.read_bytes()


def is_video(prompt: str) -> bool:
    return _VIDEO.search(prompt) is not None


def batch_size(prompt: str) -> int:
    m = _BS.search(prompt)
    return int(m.group(1)) if m else 4


def _filename(username: str, prompt: str, job_hash: str, i: int) -> str:
    user = re.sub(r"[^A-Za-z0-9_]", "_", username)
    return f"{user}_{file_prompt_words(prompt) or 'video'}_{job_hash}_{i}.mp4"


def video_finals(
    state: SimState, channel_id: str, username: str, prompt: str, job_hash: str
) -> tuple[list[Payload], list[Payload]]:
    """The attachments and buttons of a finished video job."""
    n = batch_size(prompt)
    files = [publish(state, channel_id, _filename(username, prompt, job_hash, i), clip()) for i in range(n)]
    ups = [button(f"MJ::JOB::video_virtual_upscale::{i}::{job_hash}", label=f"U{i}") for i in range(1, n + 1)]
    return files, [row(*ups, button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", emoji="🔄"))]


def _extend_components(job_hash: str, n: int) -> list[Payload]:
    return [
        row(
            button(f"MJ::JOB::animate_high_extend::{n}::{job_hash}", label="Extend (High motion)", emoji="🎞️"),
            button(f"MJ::JOB::animate_low_extend::{n}::{job_hash}", label="Extend (Low motion)", emoji="🎞️"),
        )
    ]


def _with_motion(prompt: str, motion: str) -> str:
    text = _MOTION.sub("", f" {prompt}").strip()
    if not is_video(text):
        text += " --video 1"
    return f"{text} --motion {motion}"


def extend_spec(job: JobRecord, source: Payload | None, prompt: str, motion: str) -> JobSpec:
    """The video job an Extend starts from ``job``'s video, with ``prompt``."""
    return JobSpec.follow_up(job, source, "video", None, grid=True, prompt=_with_motion(prompt, motion))


class Videos:
    """Clicks on the video buttons."""

    def __init__(self, rt: BotRuntime, jobs: Jobs, modals: Modals) -> None:
        self.rt = rt
        self.state = rt.state
        self.jobs = jobs
        self.modals = modals

    async def click(self, ctx: InteractionCtx, source: Payload, job: JobRecord, action: str, n: int) -> bool:
        """Handle ``MJ::JOB::<action>::<n>::<hash>``; False when it is not a video button."""
        if action in ("animate_high", "animate_low"):
            link = f"<https://s.mj.run/{hashlib.sha1(job.hash.encode()).hexdigest()[:11]}>"
            prompt = _with_motion(f"{link} {job.prompt}", action.removeprefix("animate_"))
            await self.jobs.run(ctx, JobSpec.follow_up(job, source, "video", None, grid=True, prompt=prompt))
        elif action == "video_virtual_upscale":
            await self._bring_up(ctx, source, job, n)
        elif action in ("animate_high_extend", "animate_low_extend"):
            motion = action.removeprefix("animate_").removesuffix("_extend")
            if ctx.account.remix:
                await self.modals.open_text(
                    ctx,
                    source,
                    f"MJ::AnimateModal::{job.hash}::{n}::{motion}::1",
                    "Animate",
                    "MJ::AnimateModal::prompt",
                    "Prompt",
                    job.prompt,
                )
            else:
                await self.jobs.run(ctx, extend_spec(job, source, job.prompt, motion))
        else:
            return False
        return True

    async def _bring_up(self, ctx: InteractionCtx, source: Payload, job: JobRecord, n: int) -> None:
        """U<n> of a video set: no job, a reply with that one video and its Extend buttons."""
        await self.rt.ack(ctx)
        acct = ctx.account
        name = _filename(acct.username, job.prompt, job.hash, n - 1)
        att = publish(self.state, ctx.channel.id, name, clip())
        msg = self.rt.new_message(
            ctx,
            type_=19,
            nonce=ctx.nonce or None,
            content=f"**{job.prompt}** - <@{acct.user_id}> ({mode_label(acct)})",
            attachments=[att],
            components=_extend_components(job.hash, n),
            extra=ctx.refs(),
            reference=source,
        )
        self.rt.create(ctx.channel, msg)
        self.state.jobs_by_message[msg["id"]] = job
