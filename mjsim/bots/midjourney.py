"""The Midjourney bot (and niji・journey, which shares every format): routes commands, clicks and modals.

The work is done by collaborators, one noun each: ``jobs`` (image jobs from queue to final),
``buttons`` (job buttons), ``modals`` (modal and iframe submits), ``analyzers`` (/describe, /shorten)
and ``settings`` (/settings, speed modes, remix).
"""

from __future__ import annotations

import logging
from typing import Any

from mjsim.apps import BOTS, MIDJOURNEY
from mjsim.bots.analyzers import Analyzers
from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.buttons import JOB_BUTTON_FAMILIES, Buttons
from mjsim.bots.content import JobSpec, blend_spec
from mjsim.bots.jobs import Jobs
from mjsim.bots.modals import Modals
from mjsim.bots.settings import AccountSettings
from mjsim.formats import message, normalise_prompt
from mjsim.state import Account, Mode

__all__ = ["MidjourneyBot"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


class MidjourneyBot:
    """Answers MJ/Niji interactions with the recorded event sequences."""

    def __init__(self, rt: BotRuntime) -> None:
        self.rt = rt
        self.state = rt.state
        self.jobs = Jobs(rt)
        self.modals = Modals(rt, self.jobs)
        self.buttons = Buttons(rt, self.jobs, self.modals)
        self.analyzers = Analyzers(rt, self.jobs, self.modals)
        self.settings = AccountSettings(rt)

    # -- entry points (called by the REST layer after validation, 204 already sent) ----------------

    async def on_command(self, ctx: InteractionCtx, options: dict[str, Any]) -> None:
        name = ctx.name
        if name == "imagine":
            prompt = normalise_prompt(str(options.get("prompt", "")))
            await self.jobs.run(ctx, JobSpec(kind="imagine", prompt=prompt))
        elif name == "blend":
            await self.jobs.run(ctx, blend_spec(options))
        elif name == "describe":
            await self.analyzers.describe(ctx, options)
        elif name == "shorten":
            await self.analyzers.shorten(ctx, str(options.get("prompt", "")))
        elif name == "show":
            await self.jobs.show(ctx, str(options.get("job_id", "")))
        elif name in ("fast", "relax", "turbo"):
            await self.settings.set_mode(ctx, Mode(name))
        elif name == "prefer":
            await self.settings.toggle_remix(ctx)
        elif name == "info":
            await self.settings.info(ctx)
        elif name == "settings":
            await self.settings.show(ctx)
        else:
            await self.rt.ack(ctx)

    async def on_component(
        self, ctx: InteractionCtx, source: Payload, custom_id: str, values: list[str]
    ) -> None:
        parts = custom_id.split("::")
        if parts[1] in JOB_BUTTON_FAMILIES:
            await self.buttons.click(ctx, source, parts)
        elif parts[1] in ("Job", "Picread"):
            await self.analyzers.click(ctx, source, custom_id)
        elif parts[1] == "Settings":
            await self.settings.click(ctx, source, custom_id)
        elif parts[1] == "CancelJob" and len(parts) > 3:  # MJ::CancelJob::ByJobid::<hash>
            await self.jobs.cancel(ctx, parts[3])
        else:
            await self.rt.ack(ctx)

    def knows_modal(self, account: Account, data_id: str, custom_id: str) -> bool:
        return self.modals.knows(account, data_id, custom_id)

    async def on_modal(
        self, ctx: InteractionCtx, data_id: str, custom_id: str, values: dict[str, str]
    ) -> None:
        await self.modals.submit(ctx, data_id, custom_id, values)

    async def on_inpaint(self, token: str, prompt: str) -> bool:
        return await self.modals.submit_inpaint(token, prompt)

    def on_reaction(self, account: Account, source: Payload, emoji: str) -> bool:
        """✉️ on a job message: the bot DMs prompt, job id and seed."""
        job = self.state.jobs_by_message.get(source["id"])
        if emoji != "✉️" or job is None:
            return False
        dm = self.state.dm_channel(account, job.bot_id)
        bot = BOTS.get(job.bot_id, MIDJOURNEY).user()
        msg = message(
            id=self.state.ids.snowflake(),
            channel_id=dm.id,
            guild_id=None,
            author=bot,
            content=f"**{job.prompt}**\n**Job ID**: {job.hash}\n**seed** {job.seed}",
            application_id=job.bot_id,
        )
        self.rt.create(dm, msg)
        return True
