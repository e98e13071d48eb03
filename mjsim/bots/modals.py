"""Modals the bot opens and the jobs their submits start: remix, pan, zoom, prompt picks, Vary Region."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.content import JobSpec, pan_label
from mjsim.bots.jobs import Jobs
from mjsim.bots.video import extend_spec
from mjsim.formats import normalise_prompt, text_input_modal
from mjsim.state import Account, JobRecord

__all__ = ["Modals"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


@dataclass
class _ModalRecord:
    custom_id: str
    user_id: str
    source: Payload | None  #: the message whose button opened it


@dataclass
class _IframeRecord:
    ctx: InteractionCtx
    job: JobRecord
    source: Payload


class Modals:
    """Open text-input and iframe modals, remember them, and turn their submits into jobs.

    A text modal is known by the id of the interaction that opened it (what a client sends back as
    ``data.id``); a submit with another id is still accepted when an open modal of the same user has
    its ``custom_id``, as Discord does.
    """

    def __init__(self, rt: BotRuntime, jobs: Jobs) -> None:
        self.rt = rt
        self.state = rt.state
        self.jobs = jobs
        self.open: dict[str, _ModalRecord] = {}  #: by the id of the interaction that opened it
        self.iframes: dict[str, _IframeRecord] = {}  #: by iframe token

    # -- opening ----------------------------------------------------------------------------------

    async def open_text(
        self,
        ctx: InteractionCtx,
        source: Payload | None,
        custom_id: str,
        title: str,
        input_id: str,
        label: str,
        value: str,
    ) -> None:
        """Ack the click, then INTERACTION_MODAL_CREATE with one text input prefilled with ``value``."""
        await self.rt.ack(ctx)
        self.open[ctx.interaction_id] = _ModalRecord(custom_id, ctx.account.user_id, source)
        self.rt.hub.dispatch_session(
            ctx.account,
            ctx.session_id,
            "INTERACTION_MODAL_CREATE",
            text_input_modal(
                interaction_id=ctx.interaction_id,
                nonce=ctx.nonce,
                channel_id=ctx.channel.id,
                bot=ctx.bot,
                custom_id=custom_id,
                title=title,
                input_id=input_id,
                label=label,
                value=value,
            ),
        )

    async def open_remix(
        self, ctx: InteractionCtx, source: Payload, custom_id: str, prompt: str, *, imagine: bool = False
    ) -> None:
        """The "Remix Prompt" modal that remix mode puts in front of V, reroll and Vary buttons."""
        input_id = "MJ::ImagineModal::new_prompt" if imagine else "MJ::RemixModal::new_prompt"
        await self.open_text(ctx, source, custom_id, "Remix Prompt", input_id, "New prompt for image", prompt)

    async def open_iframe(self, ctx: InteractionCtx, source: Payload, job: JobRecord) -> None:
        """Vary Region: the editor is an iframe whose submit arrives over HTTP (``submit_inpaint``)."""
        await self.rt.ack(ctx)
        token = self.state.ids.hex(32)
        self.iframes[token] = _IframeRecord(ctx, job, source)
        self.rt.iframe_modal(
            ctx,
            token=token,
            title="Vary Region",
            iframe_path=f"/inpaint/index.html?custom_id=MJ::iframe::{token}",
        )

    # -- submits ----------------------------------------------------------------------------------

    def _same(self, record: _ModalRecord, user_id: str, custom_id: str) -> bool:
        return record.custom_id == custom_id and record.user_id == user_id

    def _by_custom_id(self, user_id: str, custom_id: str) -> _ModalRecord | None:
        return next((r for r in self.open.values() if self._same(r, user_id, custom_id)), None)

    def knows(self, account: Account, data_id: str, custom_id: str) -> bool:
        """Whether a submit of ``custom_id`` with ``data.id`` = ``data_id`` answers a modal we opened."""
        record = self.open.get(data_id)
        if record is not None:
            return self._same(record, account.user_id, custom_id)
        return self._by_custom_id(account.user_id, custom_id) is not None

    async def submit(self, ctx: InteractionCtx, data_id: str, custom_id: str, values: dict[str, str]) -> None:
        """Start the job a modal submit asks for (the prompt is the first text input)."""
        record = self.open.pop(data_id, None) or self._by_custom_id(ctx.account.user_id, custom_id)
        source = record.source if record is not None else None
        value = normalise_prompt(next(iter(values.values()), ""))
        parts = custom_id.split("::")
        job = None
        if parts[1] in ("RemixModal", "OutpaintCustomZoomModal", "AnimateModal"):
            job = self.state.jobs.get(parts[2])
        elif parts[1] == "PanModal":
            job = self.state.jobs.get(parts[3])
        if parts[1] == "RemixModal" and job is not None:
            label = "Remix (Strong)" if parts[-1] == "1" else "Remix (Subtle)"
            spec = JobSpec.follow_up(job, source, "variation", label, grid=True, prompt=value)
        elif parts[1] == "PanModal" and job is not None:
            spec = JobSpec.follow_up(job, source, "pan", pan_label(parts[2]), grid=True, prompt=value)
        elif parts[1] == "AnimateModal" and job is not None and len(parts) > 4:
            # MJ::AnimateModal::<hash>::<n>::<motion>::<0|1>: the Extend of a video, with remix on
            spec = extend_spec(job, source, value, parts[4])
        elif parts[1] == "OutpaintCustomZoomModal" and job is not None:
            spec = JobSpec.follow_up(job, source, "zoom", "Zoom Out", grid=True, prompt=value)
        else:
            # ImagineModal (reroll with remix, shorten pick) and Picreader::Modal: a fresh imagine.
            spec = JobSpec(kind="imagine", prompt=value)
        await self.jobs.run(ctx, spec)

    async def submit_inpaint(self, token: str, prompt: str) -> bool:
        """The Vary Region editor's submit; False for an unknown token."""
        record = self.iframes.pop(token, None)
        if record is None:
            return False
        # The job answers the click that opened the editor, as a modal submit without a nonce.
        ctx = replace(record.ctx, nonce="", type=5, name="")
        spec = JobSpec.follow_up(
            record.job,
            record.source,
            "variation",
            "Variations (Region)",
            grid=True,
            prompt=normalise_prompt(prompt) or record.job.prompt,
        )
        self.rt.spawn(self.jobs.run(ctx, spec, acked=True))
        return True
