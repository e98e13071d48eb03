"""/describe (PicReader) and /shorten (PromptAnalyzer): their result messages and the clicks on them.

The texts come from ``analysis``; picking a prompt opens an "Imagine This!" modal (``modals``), and
"Imagine all" starts one imagine per described prompt.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from mjsim.bots.analysis import KEYCAPS, describe_prompts, describe_text, shorten_prompts, shorten_text
from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.content import JobSpec
from mjsim.bots.jobs import Jobs
from mjsim.bots.modals import Modals
from mjsim.formats import button, normalise_prompt, row
from mjsim.state import JobRecord

__all__ = ["Analyzers"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


class Analyzers:
    """Posts describe and shorten results and answers their buttons."""

    def __init__(self, rt: BotRuntime, jobs: Jobs, modals: Modals) -> None:
        self.rt = rt
        self.state = rt.state
        self.jobs = jobs
        self.modals = modals

    # -- commands ---------------------------------------------------------------------------------

    async def describe(self, ctx: InteractionCtx, options: dict[str, Any]) -> None:
        url = str(options.get("image") or options.get("link") or "")
        if not re.match(r"^https?://\S+$", url):
            await self.rt.ack(ctx)
            self.jobs.fail(ctx, "invalid_link", JobSpec(kind="describe", prompt=url, command="describe"))
            return
        fault = self.rt.faults.take_job_error(ctx.account.user_id)
        await self.rt.ack(ctx, success=fault != "interaction_failed")
        if fault is not None and fault not in ("interaction_failed", "stopped", "no_response"):
            self.jobs.fail(ctx, fault, JobSpec(kind="describe", prompt=url, command="describe"))
            return
        if fault is None:
            await self.rt.pause(self.state.settings.job_seconds / 4)
            await self._describe_result(ctx, image_url=url, seed=url)

    async def shorten(self, ctx: InteractionCtx, prompt: str, *, details: bool = False) -> None:
        """/shorten, or its Show Details (``details``): the same analysis, without a second Show Details."""
        await self.rt.ack(ctx)
        prompt = normalise_prompt(prompt)
        await self.rt.pause(self.state.settings.job_seconds / 4)
        prompts = shorten_prompts(prompt)
        embed = {
            "type": "rich",
            "description": shorten_text(prompt),
            "footer": {"text": "Click on a button to imagine one of the shortened prompts"},
        }
        picks = row(
            *(button(f"MJ::Job::PromptAnalyzer::{i}", label="", emoji=KEYCAPS[i - 1]) for i in range(1, 6))
        )
        components = [picks]
        if not details:
            components.append(row(button("MJ::Job::PromptAnalyzer::ShowDetails", label="Show Details")))
        self._post(ctx, "shorten", ctx.nonce, embed, components, prompt=prompt, seed="0", prompts=prompts)

    # -- clicks -----------------------------------------------------------------------------------

    async def click(self, ctx: InteractionCtx, source: Payload, custom_id: str) -> None:
        """A click on a describe (``MJ::Job::PicReader::*``, ``MJ::Picread::Retry``) or shorten result."""
        record = self.state.jobs_by_message.get(source["id"])
        n = custom_id.split("::")[-1]
        if custom_id.startswith("MJ::Job::PicReader::"):
            await self._pick_described(ctx, source, record, n)
        elif custom_id == "MJ::Picread::Retry":
            seed = (record.seed if record else "x") + "r"
            await self._describe_result(ctx, image_url=_embed_image(source), seed=seed)
        elif custom_id.startswith("MJ::Job::PromptAnalyzer::"):
            await self._pick_shortened(ctx, source, record, n)
        else:
            await self.rt.ack(ctx)

    async def _pick_described(
        self, ctx: InteractionCtx, source: Payload, record: JobRecord | None, n: str
    ) -> None:
        prompts = record.prompts if record is not None else []
        if n == "all":
            await self.rt.ack(ctx)
            for p in prompts:
                self.rt.spawn(
                    self.jobs.run(replace(ctx, nonce=""), JobSpec(kind="imagine", prompt=p), acked=True)
                )
        elif n.isdigit() and 1 <= int(n) <= len(prompts):
            await self.modals.open_text(
                ctx,
                source,
                f"MJ::Picreader::Modal::{n}",
                "Imagine This!",
                "MJ::Picreader::Modal::PromptField",
                "Prompt",
                prompts[int(n) - 1],
            )
        else:
            await self.rt.ack(ctx)

    async def _pick_shortened(
        self, ctx: InteractionCtx, source: Payload, record: JobRecord | None, n: str
    ) -> None:
        if n.isdigit() and record is not None and 1 <= int(n) <= len(record.prompts):
            await self.modals.open_text(
                ctx,
                source,
                f"MJ::ImagineModal::{source['id']}",
                "Imagine This!",
                "MJ::ImagineModal::new_prompt",
                "Prompt",
                record.prompts[int(n) - 1],
            )
        elif n == "ShowDetails" and record is not None:
            # Show Details runs the analysis again and posts it as a new result message, whose
            # only buttons are the five picks (fixture shorten-appdash-show-details).
            await self.shorten(ctx, record.prompt, details=True)
        else:
            await self.rt.ack(ctx)

    # -- results ----------------------------------------------------------------------------------

    async def _describe_result(self, ctx: InteractionCtx, *, image_url: str, seed: str) -> None:
        prompts = describe_prompts(seed)
        embed = {
            "type": "rich",
            "description": describe_text(prompts),
            "color": 0,
            "image": {"url": image_url},
        }
        components = [
            row(
                *(button(f"MJ::Job::PicReader::{i}", label="", emoji=KEYCAPS[i - 1]) for i in range(1, 5)),
                button("MJ::Picread::Retry", label="", emoji="🔄"),
            ),
            row(button("MJ::Job::PicReader::all", label="Imagine all", emoji="🎉")),
        ]
        if ctx.type == 3:
            await self.rt.ack(ctx)
        self._post(
            ctx, "describe", ctx.nonce or None, embed, components, prompt="", seed=seed, prompts=prompts
        )

    def _post(
        self,
        ctx: InteractionCtx,
        kind: str,
        nonce: str | None,
        embed: Payload,
        components: list[Payload],
        *,
        prompt: str,
        seed: str,
        prompts: list[str],
    ) -> None:
        """Post a result and remember its prompts, so that its buttons can be answered."""
        msg = self.rt.new_message(
            ctx, type_=ctx.reply_type, nonce=nonce, embeds=[embed], components=components, extra=ctx.refs()
        )
        self.rt.create(ctx.channel, msg)
        self.state.add_job(
            JobRecord(
                hash=self.state.ids.uuid4(),
                prompt=prompt,
                bot_id=ctx.bot.id,
                user_id=ctx.account.user_id,
                channel_id=ctx.channel.id,
                kind=kind,
                grid=False,
                seed=seed,
                message_id=msg["id"],
                prompts=prompts,
            )
        )


def _embed_image(source: Payload) -> str:
    embeds = source.get("embeds") or [{}]
    return str((embeds[0].get("image") or {}).get("url", ""))
