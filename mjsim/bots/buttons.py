"""What a click on a job's button does: U/V/reroll, Vary, Upscale, Zoom, Pan, Vary Region, Custom Zoom.

The buttons themselves are laid out in ``content`` (grid, single image, progress); remix mode turns the
prompt-taking ones into modals (``modals``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.content import JobSpec, outpaint_prompt, pan_label
from mjsim.bots.jobs import Jobs
from mjsim.bots.modals import Modals
from mjsim.bots.video import Videos
from mjsim.state import JobRecord

__all__ = ["JOB_BUTTON_FAMILIES", "Buttons"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

#: ``custom_id.split("::")[1]`` of the buttons under job images.
JOB_BUTTON_FAMILIES = frozenset({"JOB", "Inpaint", "Outpaint", "CustomZoom", "BOOKMARK"})


class Buttons:
    """Clicks on job buttons: each starts a job, opens a modal, or is only acknowledged."""

    def __init__(self, rt: BotRuntime, jobs: Jobs, modals: Modals) -> None:
        self.rt = rt
        self.state = rt.state
        self.jobs = jobs
        self.modals = modals
        self.videos = Videos(rt, jobs, modals)

    async def click(self, ctx: InteractionCtx, source: Payload, parts: list[str]) -> None:
        """``parts``: the clicked ``custom_id`` split on ``::``; its family is in ``JOB_BUTTON_FAMILIES``."""
        if parts[1] == "JOB":
            job = self.state.jobs.get(parts[4]) if len(parts) > 4 else None
            if job is None:
                await self.rt.ack(ctx)
            else:
                await self._job_button(ctx, source, job, parts[2], int(parts[3]))
            return
        # MJ::Inpaint::1::<hash>::SOLO, MJ::Outpaint::50::1::<hash>::SOLO, MJ::CustomZoom::<hash>, ...
        job = self.state.jobs.get(parts[-2] if parts[-1] == "SOLO" else parts[-1])
        if job is None:
            await self.rt.ack(ctx)
        elif parts[1] == "Inpaint":
            await self.modals.open_iframe(ctx, source, job)
        elif parts[1] == "Outpaint":
            spec = JobSpec.follow_up(
                job, source, "zoom", "Zoom Out", grid=True, prompt=outpaint_prompt(job.prompt, parts[2])
            )
            await self.jobs.run(ctx, spec)
        elif parts[1] == "CustomZoom":
            await self.modals.open_text(
                ctx,
                source,
                f"MJ::OutpaintCustomZoomModal::{job.hash}",
                "Zoom Out",
                "MJ::OutpaintCustomZoomModal::prompt",
                "Zoom Out",
                f"{job.prompt} --zoom 2",
            )
        else:
            # ❤️ BOOKMARK only marks the image on Midjourney's side.
            await self.rt.ack(ctx)

    async def _job_button(
        self, ctx: InteractionCtx, source: Payload, job: JobRecord, action: str, n: int
    ) -> None:
        acct = ctx.account
        # -- video buttons (issue 12): Animate, a video's U1..U4, Extend (mjsim.bots.video)
        if await self.videos.click(ctx, source, job, action, n):
            return
        if action == "upsample":
            await self.jobs.run(ctx, JobSpec.follow_up(job, source, "upscale", None, grid=False, index=n))
        elif action == "variation":
            await self._vary(ctx, source, job, n, strong=acct.high_variation)
        elif action == "reroll":
            if acct.remix:
                await self.modals.open_remix(
                    ctx, source, f"MJ::ImagineModal::{source['id']}", job.prompt, imagine=True
                )
            else:
                await self.jobs.run(ctx, JobSpec(kind="imagine", prompt=job.prompt, parent_hash=job.hash))
        elif action in ("low_variation", "high_variation"):
            await self._vary(ctx, source, job, 1, strong=action == "high_variation")
        elif action.startswith("upsample_"):
            m = re.search(r"_(subtle|creative|2x|4x)$", action)
            label = f"Upscaled ({(m.group(1) if m else 'subtle').capitalize()})"
            await self.jobs.run(ctx, JobSpec.follow_up(job, source, "upscale_hd", label, grid=False))
        elif action.startswith("pan_"):
            direction = action.removeprefix("pan_")
            if acct.remix:
                await self.modals.open_text(
                    ctx,
                    source,
                    f"MJ::PanModal::{direction}::{job.hash}::{n}",
                    "Pan",
                    "MJ::PanModal::prompt",
                    "Prompt",
                    job.prompt,
                )
            else:
                await self.jobs.run(
                    ctx, JobSpec.follow_up(job, source, "pan", pan_label(direction), grid=True)
                )
        else:
            await self.rt.ack(ctx)

    async def _vary(
        self, ctx: InteractionCtx, source: Payload, job: JobRecord, n: int, *, strong: bool
    ) -> None:
        """V<n> (strength from /settings) or Vary (Subtle/Strong); remix mode asks for the prompt first."""
        if ctx.account.remix:
            custom_id = f"MJ::RemixModal::{job.hash}::{n}::{'1' if strong else '0'}"
            await self.modals.open_remix(ctx, source, custom_id, job.prompt)
        else:
            label = "Variations (Strong)" if strong else "Variations (Subtle)"
            await self.jobs.run(ctx, JobSpec.follow_up(job, source, "variation", label, grid=True))
