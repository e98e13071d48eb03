"""The Midjourney bot (and niji・journey, which shares every format): commands, buttons, modals."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from mjsim.apps import MIDJOURNEY
from mjsim.bots.analysis import KEYCAPS, describe_prompts, describe_text, shorten_prompts, shorten_text
from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.content import (
    JobSpec,
    content_for,
    grid_components,
    mode_label,
    progress_components,
    single_components,
    unknown_params,
)
from mjsim.bots.errors import error_for
from mjsim.cdn import TILE, attachment_payload, cdn_path, render
from mjsim.formats import button, message, normalise_prompt, row, text_input_modal
from mjsim.state import Account, JobRecord, Mode

__all__ = ["MidjourneyBot"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

_PAN_DIRS = {"left": "Left", "right": "Right", "up": "Up", "down": "Down"}


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


class MidjourneyBot:
    """Answers MJ/Niji interactions with the recorded event sequences."""

    def __init__(self, rt: BotRuntime) -> None:
        self.rt = rt
        self.state = rt.state
        self.modals: dict[str, _ModalRecord] = {}
        self.iframes: dict[str, _IframeRecord] = {}

    # -- entry points (called by rest.py after validation, 204 already sent) -----------------------

    async def on_command(self, ctx: InteractionCtx, options: dict[str, Any]) -> None:
        name = ctx.name
        if name == "imagine":
            await self._job(
                ctx, JobSpec(kind="imagine", prompt=normalise_prompt(str(options.get("prompt", ""))))
            )
        elif name == "blend":
            await self._blend(ctx, options)
        elif name == "describe":
            await self._describe(ctx, options)
        elif name == "shorten":
            await self._shorten(ctx, str(options.get("prompt", "")))
        elif name == "show":
            await self._show(ctx, str(options.get("job_id", "")))
        elif name in ("fast", "relax", "turbo"):
            await self._set_mode(ctx, Mode(name))
        elif name == "prefer":
            await self._prefer_remix(ctx)
        elif name == "info":
            await self._info(ctx)
        elif name == "settings":
            await self._settings(ctx)
        else:
            await self.rt.ack(ctx)

    async def on_component(
        self, ctx: InteractionCtx, source: Payload, custom_id: str, values: list[str]
    ) -> None:
        parts = custom_id.split("::")
        job = self.state.jobs.get(parts[4]) if len(parts) > 4 and parts[1] == "JOB" else None
        if parts[1] == "JOB" and job is not None:
            await self._job_button(ctx, source, job, parts[2], int(parts[3]))
        elif parts[1] in ("Inpaint", "Outpaint", "CustomZoom", "BOOKMARK"):
            job = self.state.jobs.get(parts[-2] if parts[-1] == "SOLO" else parts[-1])
            if job is None:
                await self.rt.ack(ctx)
            elif parts[1] == "Inpaint":
                await self._open_iframe(ctx, source, job)
            elif parts[1] == "Outpaint":
                zoom = "2" if parts[2] == "50" else "1.5"
                spec = self._child(
                    job, source, "zoom", "Zoom Out", grid=True, prompt=f"{job.prompt} --zoom {zoom}"
                )
                await self._job(ctx, spec)
            elif parts[1] == "CustomZoom":
                await self._open_modal(
                    ctx,
                    source,
                    f"MJ::OutpaintCustomZoomModal::{job.hash}",
                    "Zoom Out",
                    "MJ::OutpaintCustomZoomModal::prompt",
                    "Zoom Out",
                    f"{job.prompt} --zoom 2",
                )
            else:
                await self.rt.ack(ctx)
        elif custom_id.startswith("MJ::Job::PicReader::"):
            await self._picreader(ctx, source, parts[-1])
        elif custom_id == "MJ::Picread::Retry":
            record = self.state.jobs_by_message.get(source["id"])
            await self._describe_result(
                ctx, image_url=_embed_image(source), seed=(record.seed if record else "x") + "r"
            )
        elif custom_id.startswith("MJ::Job::PromptAnalyzer::"):
            record = self.state.jobs_by_message.get(source["id"])
            n = parts[-1]
            if n.isdigit() and record is not None and 1 <= int(n) <= len(record.prompts):
                await self._open_modal(
                    ctx,
                    source,
                    f"MJ::ImagineModal::{source['id']}",
                    "Imagine This!",
                    "MJ::ImagineModal::new_prompt",
                    "Prompt",
                    record.prompts[int(n) - 1],
                )
            elif n == "ShowDetails" and record is not None:
                # Show Details runs the analysis again and posts it as a new result message.
                await self._shorten(ctx, record.prompt)
            else:
                await self.rt.ack(ctx)
        elif parts[1] == "Settings":
            await self._settings_click(ctx, source, custom_id)
        else:
            await self.rt.ack(ctx)

    def knows_modal(self, account: Account, data_id: str, custom_id: str) -> bool:
        record = self.modals.get(data_id)
        if record is not None:
            return record.custom_id == custom_id and record.user_id == account.user_id
        return any(r.custom_id == custom_id and r.user_id == account.user_id for r in self.modals.values())

    async def on_modal(
        self, ctx: InteractionCtx, data_id: str, custom_id: str, values: dict[str, str]
    ) -> None:
        record = self.modals.pop(data_id, None) or next(
            (
                r
                for r in self.modals.values()
                if r.custom_id == custom_id and r.user_id == ctx.account.user_id
            ),
            None,
        )
        source = record.source if record is not None else None
        value = normalise_prompt(next(iter(values.values()), ""))
        parts = custom_id.split("::")
        job = None
        if parts[1] in ("RemixModal", "OutpaintCustomZoomModal"):
            job = self.state.jobs.get(parts[2])
        elif parts[1] == "PanModal":
            job = self.state.jobs.get(parts[3])
        if parts[1] == "RemixModal" and job is not None:
            label = "Remix (Strong)" if parts[-1] == "1" else "Remix (Subtle)"
            await self._job(ctx, self._child(job, source, "variation", label, grid=True, prompt=value))
        elif parts[1] == "PanModal" and job is not None:
            label = f"Pan {_PAN_DIRS.get(parts[2], 'Left')}"
            await self._job(ctx, self._child(job, source, "pan", label, grid=True, prompt=value))
        elif parts[1] == "OutpaintCustomZoomModal" and job is not None:
            await self._job(ctx, self._child(job, source, "zoom", "Zoom Out", grid=True, prompt=value))
        else:
            # ImagineModal (reroll with remix, shorten pick) and Picreader::Modal: a fresh imagine.
            await self._job(ctx, JobSpec(kind="imagine", prompt=value))

    async def on_inpaint(self, token: str, prompt: str) -> bool:
        record = self.iframes.pop(token, None)
        if record is None:
            return False
        ctx = replace(record.ctx, nonce="", type=5, name="")
        spec = self._child(
            record.job,
            record.source,
            "variation",
            "Variations (Region)",
            grid=True,
            prompt=normalise_prompt(prompt) or record.job.prompt,
        )
        self.rt.spawn(self._job(ctx, spec, acked=True))
        return True

    def on_reaction(self, account: Account, source: Payload, emoji: str) -> bool:
        """✉️ on a job message: the bot DMs prompt, job id and seed."""
        job = self.state.jobs_by_message.get(source["id"])
        if emoji != "✉️" or job is None:
            return False
        dm = self.state.dm_channel(account, job.bot_id)
        bot = self.state_bot(job.bot_id)
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

    def state_bot(self, bot_id: str) -> Payload:
        from mjsim.apps import BOTS

        return BOTS.get(bot_id, MIDJOURNEY).user()

    # -- jobs -------------------------------------------------------------------------------------

    def _child(
        self,
        job: JobRecord,
        source: Payload | None,
        kind: str,
        label: str | None,
        *,
        grid: bool,
        prompt: str | None = None,
        index: int | None = None,
    ) -> JobSpec:
        return JobSpec(
            kind=kind,
            prompt=prompt or job.prompt,
            label=label,
            index=index,
            grid=grid,
            reply_to=source,
            parent_hash=job.hash,
        )

    async def _job_button(
        self, ctx: InteractionCtx, source: Payload, job: JobRecord, action: str, n: int
    ) -> None:
        acct = ctx.account
        strong = "1" if acct.high_variation else "0"
        if action == "upsample":
            await self._job(ctx, self._child(job, source, "upscale", None, grid=False, index=n))
        elif action == "variation":
            if acct.remix:
                await self._open_remix(ctx, source, f"MJ::RemixModal::{job.hash}::{n}::{strong}", job.prompt)
            else:
                label = "Variations (Strong)" if acct.high_variation else "Variations (Subtle)"
                await self._job(ctx, self._child(job, source, "variation", label, grid=True))
        elif action == "reroll":
            if acct.remix:
                await self._open_remix(
                    ctx, source, f"MJ::ImagineModal::{source['id']}", job.prompt, imagine=True
                )
            else:
                await self._job(ctx, JobSpec(kind="imagine", prompt=job.prompt, parent_hash=job.hash))
        elif action in ("low_variation", "high_variation"):
            strength = "1" if action == "high_variation" else "0"
            if acct.remix:
                await self._open_remix(ctx, source, f"MJ::RemixModal::{job.hash}::1::{strength}", job.prompt)
            else:
                label = "Variations (Strong)" if strength == "1" else "Variations (Subtle)"
                await self._job(ctx, self._child(job, source, "variation", label, grid=True))
        elif action.startswith("upsample_"):
            m = re.search(r"_(subtle|creative|2x|4x)$", action)
            label = f"Upscaled ({(m.group(1) if m else 'subtle').capitalize()})"
            await self._job(ctx, self._child(job, source, "upscale_hd", label, grid=False))
        elif action.startswith("pan_"):
            direction = action.removeprefix("pan_")
            if acct.remix:
                await self._open_modal(
                    ctx,
                    source,
                    f"MJ::PanModal::{direction}::{job.hash}::{n}",
                    "Pan",
                    "MJ::PanModal::prompt",
                    "Prompt",
                    job.prompt,
                )
            else:
                label = f"Pan {_PAN_DIRS.get(direction, 'Left')}"
                await self._job(ctx, self._child(job, source, "pan", label, grid=True))
        else:
            await self.rt.ack(ctx)

    async def _job(self, ctx: InteractionCtx, spec: JobSpec, *, acked: bool = False) -> None:
        """Run one image job: faults, admission, start, progress, final."""
        acct = ctx.account
        fault = self.rt.faults.take_job_error(acct.user_id)
        if fault == "no_response":
            await asyncio.sleep(self.state.settings.ack_delay)
            self.rt.hub.dispatch_session(acct, ctx.session_id, "INTERACTION_CREATE", _ids(ctx))
            return
        if not acked:
            await self.rt.ack(ctx, success=fault != "interaction_failed")
        if fault == "interaction_failed":
            self.state.counters.jobs_failed += 1
            return
        if fault == "captcha" or acct.captcha:
            self._captcha(ctx)
            return
        error = fault if fault not in (None, "stopped") else self._precheck(acct, spec)
        if error is not None:
            self._fail(ctx, error[0] if isinstance(error, tuple) else error, spec, _detail(error))
            return
        if not await self._admit(ctx, spec):
            return
        try:
            await self._produce(ctx, spec, stop=fault == "stopped")
        finally:
            self._release(acct)

    def _precheck(self, acct: Account, spec: JobSpec) -> tuple[str, str] | None:
        if acct.subscription == "expired":
            return ("subscription_expired", "")
        if acct.subscription == "none":
            return ("subscription_required", "")
        lowered = spec.prompt.lower()
        for word in self.state.settings.banned_words:
            if word.lower() in lowered:
                return ("banned_prompt", word)
        bad = unknown_params(spec.prompt)
        if bad:
            return ("invalid_parameter", ", ".join(bad))
        return None

    def _fail(self, ctx: InteractionCtx, kind: str, spec: JobSpec, detail: str = "") -> None:
        self.state.counters.jobs_failed += 1
        if kind == "failed_to_process":
            msg = self.rt.new_message(
                ctx,
                type_=_reply_type(ctx),
                nonce=ctx.nonce or None,
                content="Failed to process your command :(",
                extra=ctx.refs(),
            )
        else:
            embed = error_for(kind, prompt=spec.prompt, command=spec.command, detail=detail)
            msg = self.rt.new_message(
                ctx, type_=_reply_type(ctx), nonce=ctx.nonce or None, embeds=[embed], extra=ctx.refs()
            )
        self.rt.ephemeral(ctx, msg)

    def _captcha(self, ctx: InteractionCtx) -> None:
        token = self.state.ids.hex(32)
        self.state.counters.jobs_failed += 1
        self.rt.hub.dispatch_session(
            ctx.account,
            ctx.session_id,
            "INTERACTION_IFRAME_MODAL_CREATE",
            {
                "id": ctx.interaction_id,
                "nonce": ctx.nonce,
                "channel_id": ctx.channel.id,
                "custom_id": f"MJ::iframe::{token}",
                "title": "Action required to continue",
                "iframe_path": f"/captcha/embedded/index.html?token={token}",
                "modal_size": 2,
                "application": {"id": ctx.bot.id, "name": ctx.bot.name, "icon": ctx.bot.avatar},
            },
        )

    async def _admit(self, ctx: InteractionCtx, spec: JobSpec) -> bool:
        acct = ctx.account
        if acct.running < acct.concurrency and not acct.waiters:
            acct.running += 1
            return True
        if len(acct.waiters) >= acct.queue_limit:
            self._fail(ctx, "queue_full", spec)
            return False
        embed = error_for("job_queued", prompt=spec.prompt, command=spec.command)
        self.rt.ephemeral(
            ctx,
            self.rt.new_message(
                ctx, type_=_reply_type(ctx), nonce=ctx.nonce or None, embeds=[embed], extra=ctx.refs()
            ),
        )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acct.waiters.append(fut)
        await fut  # the releasing job hands its slot over (running stays counted)
        return True

    def _release(self, acct: Account) -> None:
        while acct.waiters:
            fut = acct.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        acct.running -= 1

    async def _produce(self, ctx: InteractionCtx, spec: JobSpec, *, stop: bool) -> None:
        st = self.state
        settings = st.settings
        acct = ctx.account
        channel = ctx.channel
        st.counters.jobs_started += 1
        job_hash = st.ids.uuid4()
        layout = "grid" if spec.grid else "single"
        render_seed = f"{spec.prompt}|{layout}|{spec.index or 0}|{spec.parent_hash or ''}"
        refs = ctx.refs()
        start_type = 20 if ctx.type == 2 else (19 if spec.reply_to is not None else 0)
        progress = self.rt.new_message(
            ctx,
            type_=start_type,
            nonce=ctx.nonce or None,
            content=content_for(spec, acct, "start"),
            extra=refs,
            reference=spec.reply_to,
        )
        self.rt.create(channel, progress)
        steps = settings.progress_steps if spec.kind not in ("upscale", "upscale_hd") else 0
        step_time = settings.job_seconds / (steps + 1)
        for i in range(steps):
            await self.rt.pause(step_time)
            if self.rt.faults.take_delete_mid_job(acct.user_id):
                self.rt.delete(channel, progress["id"])
                st.counters.jobs_failed += 1
                return
            pct = int(i * 100 / steps)
            preview = self._attachment(channel.id, f"{job_hash}_grid_0.webp", render_seed, "grid")
            progress = {
                **progress,
                "content": content_for(spec, acct, pct),
                "attachments": [preview],
                "components": progress_components(job_hash),
                "edited_timestamp": progress["timestamp"],
            }
            progress.pop("nonce", None)
            self.rt.update(channel, progress)
            if stop and i == 0:
                self.rt.update(
                    channel, {**progress, "content": content_for(spec, acct, "stopped"), "components": []}
                )
                st.counters.jobs_failed += 1
                return
        await self.rt.pause(step_time)
        filename = f"{_file_user(acct.username)}_{_file_words(spec.prompt)}_{job_hash}.png"
        final_att = self._attachment(channel.id, filename, render_seed, layout)
        components = grid_components(job_hash) if spec.grid else single_components(job_hash, spec.prompt)
        final = self.rt.new_message(
            ctx,
            type_=19 if spec.reply_to is not None else 0,
            content=content_for(spec, acct, "final"),
            attachments=[final_att],
            components=components,
            extra=refs,
            reference=spec.reply_to,
        )
        self.rt.delete(channel, progress["id"])
        self.rt.create(channel, final)
        st.add_job(
            JobRecord(
                hash=job_hash,
                prompt=spec.prompt,
                bot_id=ctx.bot.id,
                user_id=acct.user_id,
                channel_id=channel.id,
                kind=spec.kind,
                grid=spec.grid,
                seed=st.ids.digits(10),
                message_id=final["id"],
            )
        )
        st.counters.jobs_completed += 1

    def _attachment(self, channel_id: str, filename: str, seed: str, layout: str) -> Payload:
        att_id = self.state.ids.snowflake()
        path = cdn_path(channel_id, att_id, filename)
        self.state.files[path] = (seed, layout)
        fmt = filename.rsplit(".", 1)[-1]
        size = len(render(seed, layout, fmt))
        edge = TILE * 2
        return attachment_payload(
            base_url=self.state.base_url,
            path=path,
            attachment_id=att_id,
            filename=filename,
            size=size,
            width=edge,
            height=edge,
        )

    # -- modals -----------------------------------------------------------------------------------

    async def _open_modal(
        self,
        ctx: InteractionCtx,
        source: Payload | None,
        custom_id: str,
        title: str,
        input_id: str,
        label: str,
        value: str,
    ) -> None:
        await self.rt.ack(ctx)
        self.modals[ctx.interaction_id] = _ModalRecord(custom_id, ctx.account.user_id, source)
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

    async def _open_remix(
        self, ctx: InteractionCtx, source: Payload, custom_id: str, prompt: str, *, imagine: bool = False
    ) -> None:
        input_id = "MJ::ImagineModal::new_prompt" if imagine else "MJ::RemixModal::new_prompt"
        await self._open_modal(
            ctx, source, custom_id, "Remix Prompt", input_id, "New prompt for image", prompt
        )

    async def _open_iframe(self, ctx: InteractionCtx, source: Payload, job: JobRecord) -> None:
        await self.rt.ack(ctx)
        token = self.state.ids.hex(32)
        self.iframes[token] = _IframeRecord(ctx, job, source)
        self.rt.hub.dispatch_session(
            ctx.account,
            ctx.session_id,
            "INTERACTION_IFRAME_MODAL_CREATE",
            {
                "id": ctx.interaction_id,
                "nonce": ctx.nonce,
                "channel_id": ctx.channel.id,
                "custom_id": f"MJ::iframe::{token}",
                "title": "Vary Region",
                "iframe_path": f"/inpaint/index.html?custom_id=MJ::iframe::{token}",
                "modal_size": 2,
                "application": {"id": ctx.bot.id, "name": ctx.bot.name, "icon": ctx.bot.avatar},
            },
        )

    async def _picreader(self, ctx: InteractionCtx, source: Payload, n: str) -> None:
        record = self.state.jobs_by_message.get(source["id"])
        prompts = record.prompts if record is not None else []
        if n == "all":
            await self.rt.ack(ctx)
            for p in prompts:
                self.rt.spawn(
                    self._job(replace(ctx, nonce=""), JobSpec(kind="imagine", prompt=p), acked=True)
                )
        elif n.isdigit() and 1 <= int(n) <= len(prompts):
            await self._open_modal(
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

    # -- describe / shorten / blend / show -------------------------------------------------------

    async def _describe(self, ctx: InteractionCtx, options: dict[str, Any]) -> None:
        url = str(options.get("image") or options.get("link") or "")
        if not re.match(r"^https?://\S+$", url):
            await self.rt.ack(ctx)
            self._fail(ctx, "invalid_link", JobSpec(kind="describe", prompt=url, command="describe"))
            return
        fault = self.rt.faults.take_job_error(ctx.account.user_id)
        await self.rt.ack(ctx, success=fault != "interaction_failed")
        if fault is not None and fault not in ("interaction_failed", "stopped", "no_response"):
            self._fail(ctx, fault, JobSpec(kind="describe", prompt=url, command="describe"))
            return
        if fault is None:
            await self.rt.pause(self.state.settings.job_seconds / 4)
            await self._describe_result(ctx, image_url=url, seed=url)

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
        msg = self.rt.new_message(
            ctx,
            type_=_reply_type(ctx),
            nonce=ctx.nonce or None,
            embeds=[embed],
            components=components,
            extra=ctx.refs(),
        )
        self.rt.create(ctx.channel, msg)
        job = JobRecord(
            hash=self.state.ids.uuid4(),
            prompt="",
            bot_id=ctx.bot.id,
            user_id=ctx.account.user_id,
            channel_id=ctx.channel.id,
            kind="describe",
            grid=False,
            seed=seed,
            message_id=msg["id"],
            prompts=prompts,
        )
        self.state.add_job(job)

    async def _shorten(self, ctx: InteractionCtx, prompt: str) -> None:
        await self.rt.ack(ctx)
        prompt = normalise_prompt(prompt)
        await self.rt.pause(self.state.settings.job_seconds / 4)
        prompts = shorten_prompts(prompt)
        embed = {
            "type": "rich",
            "description": shorten_text(prompt),
            "footer": {"text": "Click on a button to imagine one of the shortened prompts"},
        }
        components = [
            row(
                *(
                    button(f"MJ::Job::PromptAnalyzer::{i}", label="", emoji=KEYCAPS[i - 1])
                    for i in range(1, 6)
                )
            ),
            row(button("MJ::Job::PromptAnalyzer::ShowDetails", label="Show Details")),
        ]
        msg = self.rt.new_message(
            ctx,
            type_=_reply_type(ctx),
            nonce=ctx.nonce,
            embeds=[embed],
            components=components,
            extra=ctx.refs(),
        )
        self.rt.create(ctx.channel, msg)
        self.state.add_job(
            JobRecord(
                hash=self.state.ids.uuid4(),
                prompt=prompt,
                bot_id=ctx.bot.id,
                user_id=ctx.account.user_id,
                channel_id=ctx.channel.id,
                kind="shorten",
                grid=False,
                seed="0",
                message_id=msg["id"],
                prompts=prompts,
            )
        )

    async def _blend(self, ctx: InteractionCtx, options: dict[str, Any]) -> None:
        urls = [str(options[k]) for k in sorted(options) if k.startswith("image")]
        links = [f"<https://s.mj.run/{hashlib.sha1(u.encode()).hexdigest()[:11]}>" for u in urls]
        dims = str(options.get("dimensions") or "--ar 1:1")
        await self._job(ctx, JobSpec(kind="blend", prompt=f"{' '.join(links)} {dims}", command="blend"))

    async def _show(self, ctx: InteractionCtx, job_id: str) -> None:
        job = self.state.jobs.get(job_id.strip())
        await self.rt.ack(ctx)
        if job is None or job.kind in ("describe", "shorten"):
            embed = error_for("invalid_parameter", prompt=job_id, command="show", detail="job_id")
            embed["title"], embed["description"] = "Job not found", f"No job with id `{job_id}`."
            self.rt.ephemeral(
                ctx, self.rt.new_message(ctx, type_=20, nonce=ctx.nonce, embeds=[embed], extra=ctx.refs())
            )
            return
        layout = "grid" if job.grid else "single"
        filename = f"{_file_user(ctx.account.username)}_{_file_words(job.prompt)}_{job.hash}.png"
        att = self._attachment(ctx.channel.id, filename, f"{job.prompt}|{layout}|0|", layout)
        comps = grid_components(job.hash) if job.grid else single_components(job.hash, job.prompt)
        msg = self.rt.new_message(
            ctx,
            type_=20,
            nonce=ctx.nonce,
            content=f"**{job.prompt}** - <@{ctx.account.user_id}> ({mode_label(ctx.account)})",
            attachments=[att],
            components=comps,
            extra=ctx.refs(),
        )
        self.rt.create(ctx.channel, msg)
        self.state.jobs_by_message[msg["id"]] = job

    # -- account commands -------------------------------------------------------------------------

    async def _set_mode(self, ctx: InteractionCtx, mode: Mode) -> None:
        await self.rt.ack(ctx)
        ctx.account.mode = mode
        text = {
            Mode.FAST: "Done! Your jobs will now consume fast-hours. You can use `/relax` to switch back.",
            Mode.RELAX: "Done! Your jobs now do not consume fast-hours, but might take a little longer. "
            "You can always switch back with `/fast`",
            Mode.TURBO: "Done! Your jobs will now run in turbo mode, using twice the fast-hours.",
        }[mode]
        self.rt.ephemeral(
            ctx, self.rt.new_message(ctx, type_=20, nonce=ctx.nonce, content=text, extra=ctx.refs())
        )

    async def _prefer_remix(self, ctx: InteractionCtx) -> None:
        await self.rt.ack(ctx)
        ctx.account.remix = not ctx.account.remix
        text = (
            "Remix mode turned on! You can disable it by running `/prefer remix` again."
            if ctx.account.remix
            else "Remix mode turned off! You can enable it by running `/prefer remix` again."
        )
        ctx.name = "prefer remix"
        self.rt.ephemeral(
            ctx, self.rt.new_message(ctx, type_=20, nonce=ctx.nonce, content=text, extra=ctx.refs())
        )

    async def _info(self, ctx: InteractionCtx) -> None:
        await self.rt.ack(ctx)
        a = ctx.account
        lines = [
            "**Subscription**: Pro (Active monthly, renews next on <t:1767225600>)"
            if a.subscription == "active"
            else "**Subscription**: None",
            f"**Job Mode**: {a.mode.value.capitalize()}",
            f"**Visibility Mode**: {'Stealth' if a.stealth else 'Public'}",
            "**Fast Time Remaining**: 29.52/30.0 hours (98.40%)",
            "**Lifetime Usage**: 1234 images (56.78 hours)",
            "**Relaxed Usage**: 120 images (3.21 hours)",
            "**Turbo Usage**: 0 images (0.00 hours)",
            f"**Queued Jobs (fast)**: {len(a.waiters)}",
            "**Queued Jobs (relax)**: 0",
            f"**Running Jobs**: {a.running or 'None'}",
        ]
        embed = {
            "type": "rich",
            "title": f"Your info - {a.username}",
            "description": "\n".join(lines),
            "color": 0,
        }
        msg = self.rt.new_message(ctx, type_=20, nonce=ctx.nonce, embeds=[embed], extra=ctx.refs())
        self.rt.ephemeral(ctx, msg)
        self.rt.ephemeral_update(ctx, {**msg, "edited_timestamp": msg["timestamp"]})

    def _settings_components(self, a: Account) -> list[Payload]:
        def style(on: bool) -> int:
            return 3 if on else 2

        return [
            row(
                {
                    "type": 3,
                    "custom_id": "MJ::Settings::VersionSelector",
                    "options": [
                        {"label": "Midjourney Model V6.1", "value": "6.1", "default": True},
                        {"label": "Midjourney Model V7", "value": "7", "default": False},
                    ],
                    "placeholder": "Select a version",
                    "min_values": 1,
                    "max_values": 1,
                }
            ),
            row(
                button("MJ::Settings::RemixMode", label="Remix mode", style=style(a.remix)),
                button(
                    "MJ::Settings::HighVariabilityMode::1",
                    label="High Variation Mode",
                    style=style(a.high_variation),
                ),
                button(
                    "MJ::Settings::LowVariabilityMode::1",
                    label="Low Variation Mode",
                    style=style(not a.high_variation),
                ),
            ),
            row(
                button("MJ::Settings::TurboMode", label="Turbo mode", style=style(a.mode is Mode.TURBO)),
                button("MJ::Settings::FastMode", label="Fast mode", style=style(a.mode is Mode.FAST)),
                button("MJ::Settings::RelaxMode", label="Relax mode", style=style(a.mode is Mode.RELAX)),
                button("MJ::Settings::PublicMode", label="Public mode", style=style(not a.stealth)),
                button("MJ::Settings::StealthMode", label="Stealth mode", style=style(a.stealth)),
            ),
        ]

    async def _settings(self, ctx: InteractionCtx) -> None:
        await self.rt.ack(ctx)
        msg = self.rt.new_message(
            ctx,
            type_=20,
            nonce=ctx.nonce,
            content="Adjust your settings here. Current suffix: ```  --v 6.1```",
            components=self._settings_components(ctx.account),
            extra=ctx.refs(),
        )
        self.rt.ephemeral(ctx, msg)

    async def _settings_click(self, ctx: InteractionCtx, source: Payload, custom_id: str) -> None:
        a = ctx.account
        key = custom_id.split("::")[2]
        if key == "RemixMode":
            a.remix = not a.remix
        elif key == "HighVariabilityMode":
            a.high_variation = True
        elif key == "LowVariabilityMode":
            a.high_variation = False
        elif key in ("TurboMode", "FastMode", "RelaxMode"):
            a.mode = Mode(key.removesuffix("Mode").lower())
        elif key == "PublicMode":
            a.stealth = False
        elif key == "StealthMode":
            a.stealth = True
        await self.rt.ack(ctx)
        updated = {
            **source,
            "components": self._settings_components(a),
            "edited_timestamp": source["timestamp"],
        }
        updated.pop("nonce", None)
        self.rt.ephemeral_update(ctx, updated)


def _ids(ctx: InteractionCtx) -> Payload:
    return {"id": ctx.interaction_id, "nonce": ctx.nonce}


def _reply_type(ctx: InteractionCtx) -> int:
    return 20 if ctx.type == 2 else 19


def _detail(error: object) -> str:
    return error[1] if isinstance(error, tuple) else ""


def _embed_image(source: Payload) -> str:
    embeds = source.get("embeds") or [{}]
    return str((embeds[0].get("image") or {}).get("url", ""))


def _file_user(username: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", username)


def _file_words(prompt: str) -> str:
    from mjsim.formats import file_prompt_words

    return file_prompt_words(prompt) or "image"
