"""Image jobs from accepted interaction to final message: faults, checks, queueing, progress, finals."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.bots.content import (
    JobSpec,
    content_for,
    final_filename,
    grid_components,
    mode_label,
    progress_components,
    single_components,
    unknown_params,
)
from mjsim.bots.errors import error_for
from mjsim.bots.speed import duration_factor, job_mode, needs_fast_hours
from mjsim.bots.video import is_video, video_finals
from mjsim.cdn import publish
from mjsim.formats import edited
from mjsim.state import Account, JobRecord, Mode

__all__ = ["Jobs"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


class Jobs:
    """Runs image jobs (imagine, blend, variations, upscales, zoom, pan) and answers /show.

    An account runs at most ``concurrency`` jobs; later ones wait in its queue (``Job queued``) up to
    ``queue_limit``, beyond which they fail with ``Queue full``.
    """

    def __init__(self, rt: BotRuntime) -> None:
        self.rt = rt
        self.state = rt.state
        #: running jobs by hash: set when "Cancel Job" is pressed on one
        self._stops: dict[str, asyncio.Event] = {}

    async def cancel(self, ctx: InteractionCtx, job_hash: str) -> None:
        """ "Cancel Job" (``MJ::CancelJob::ByJobid::<hash>``): the running job ends ``(Stopped)``."""
        await self.rt.ack(ctx)
        stop = self._stops.get(job_hash)
        if stop is not None:
            stop.set()

    async def _pause_or_stop(self, seconds: float, stop: asyncio.Event) -> bool:
        """`rt.pause`, cut short by a cancel; True when the job was cancelled."""
        if stop.is_set():
            return True
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, asyncio.ensure_future(self.rt.pause(seconds))},
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            waiter.cancel()
        return stop.is_set()

    async def run(self, ctx: InteractionCtx, spec: JobSpec, *, acked: bool = False) -> None:
        """Run one image job: faults, admission, start, progress, final."""
        acct = ctx.account
        mode = job_mode(ctx, spec.prompt)  # fixed on arrival: a later /relax does not change it
        fault = self.rt.faults.take_job_error(acct.user_id)
        if fault == "no_response":
            await asyncio.sleep(self.state.settings.ack_delay)
            self.rt.hub.dispatch_session(acct, ctx.session_id, "INTERACTION_CREATE", ctx.ids())
            return
        if not acked:
            await self.rt.ack(ctx, success=fault != "interaction_failed")
        if fault == "interaction_failed":
            self.state.counters.jobs_failed += 1
            return
        if fault == "captcha" or acct.captcha:
            self._captcha(ctx)
            return
        error = (fault, "") if fault is not None and fault != "stopped" else self._precheck(acct, spec, mode)
        if error is not None:
            self.fail(ctx, error[0], spec, error[1])
            return
        if not await self._admit(ctx, spec):
            return
        try:
            await self._produce(ctx, spec, mode, stop=fault == "stopped")
        finally:
            self._release(acct)

    def fail(self, ctx: InteractionCtx, kind: str, spec: JobSpec, detail: str = "") -> None:
        """Answer with the error ``kind`` (see ``faults.JOB_ERROR_KINDS``) and count a failed job."""
        self.state.counters.jobs_failed += 1
        if kind == "failed_to_process":
            self._notice(ctx, content="Failed to process your command :(")
        else:
            self._notice(
                ctx, embeds=[error_for(kind, prompt=spec.prompt, command=spec.command, detail=detail)]
            )

    async def show(self, ctx: InteractionCtx, job_id: str) -> None:
        """/show: the job's image with its buttons again, as a fresh reply (the seed flow starts here)."""
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
        filename = final_filename(ctx.account.username, job.prompt, job.hash)
        att = publish(self.state, ctx.channel.id, filename, (f"{job.prompt}|{layout}|0|", layout))
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

    # -- before the job starts --------------------------------------------------------------------

    def _precheck(self, acct: Account, spec: JobSpec, mode: Mode) -> tuple[str, str] | None:
        """What the bot refuses before queueing: subscription, fast hours, banned words, parameters."""
        if acct.subscription == "expired":
            return ("subscription_expired", "")
        if acct.subscription == "none":
            return ("subscription_required", "")
        if acct.fast_exhausted and needs_fast_hours(mode):
            return ("credits_exhausted", "")
        lowered = spec.prompt.lower()
        for word in self.state.settings.banned_words:
            if word.lower() in lowered:
                return ("banned_prompt", word)
        bad = unknown_params(spec.prompt)
        if bad:
            return ("invalid_parameter", ", ".join(bad))
        return None

    def _notice(self, ctx: InteractionCtx, **body: Any) -> None:
        """An ephemeral reply (error, ``Job queued``) carrying the interaction's nonce when it has one."""
        self.rt.ephemeral(
            ctx,
            self.rt.new_message(ctx, type_=ctx.reply_type, nonce=ctx.nonce or None, extra=ctx.refs(), **body),
        )

    def _captcha(self, ctx: InteractionCtx) -> None:
        token = self.state.ids.hex(32)
        self.state.counters.jobs_failed += 1
        self.rt.iframe_modal(
            ctx,
            token=token,
            title="Action required to continue",
            iframe_path=f"/captcha/embedded/index.html?token={token}",
        )

    async def _admit(self, ctx: InteractionCtx, spec: JobSpec) -> bool:
        acct = ctx.account
        if acct.running < acct.concurrency and not acct.waiters:
            acct.running += 1
            return True
        if len(acct.waiters) >= acct.queue_limit:
            self.fail(ctx, "queue_full", spec)
            return False
        self._notice(ctx, embeds=[error_for("job_queued", prompt=spec.prompt, command=spec.command)])
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

    # -- the job itself ---------------------------------------------------------------------------

    async def _produce(self, ctx: InteractionCtx, spec: JobSpec, mode: Mode, *, stop: bool) -> None:
        st = self.state
        settings = st.settings
        acct = ctx.account
        channel = ctx.channel
        st.counters.jobs_started += 1
        st.counters.jobs_by_mode[mode.value] += 1
        acct.jobs_by_mode[mode.value] += 1
        job_hash = st.ids.uuid4()
        refs = ctx.refs()
        start_type = 20 if ctx.type == 2 else (19 if spec.reply_to is not None else 0)
        progress = self.rt.new_message(
            ctx,
            type_=start_type,
            nonce=ctx.nonce or None,
            content=content_for(spec, acct, "start", mode=mode),
            components=progress_components(job_hash),
            extra=refs,
            reference=spec.reply_to,
        )
        self.rt.create(channel, progress)
        steps = settings.progress_steps if spec.kind not in ("upscale", "upscale_hd") else 0
        step_time = settings.job_seconds * duration_factor(settings, mode) / (steps + 1)
        stop_event = self._stops[job_hash] = asyncio.Event()
        try:
            finished = await self._steps(
                ctx, spec, mode, progress, job_hash, steps, step_time, stop, stop_event
            )
        finally:
            del self._stops[job_hash]
        if finished:
            self._finish(ctx, spec, mode, progress, job_hash)

    async def _steps(
        self,
        ctx: InteractionCtx,
        spec: JobSpec,
        mode: Mode,
        progress: Payload,
        job_hash: str,
        steps: int,
        step_time: float,
        stop: bool,
        stop_event: asyncio.Event,
    ) -> bool:
        """The progress edits; False when the job ended before its result (stopped, deleted)."""
        st = self.state
        acct = ctx.account
        channel = ctx.channel
        render_seed = _render_seed(spec)

        def stopped() -> bool:
            content = content_for(spec, acct, "stopped", mode=mode)
            self.rt.update(channel, {**progress, "content": content, "components": []})
            st.counters.jobs_failed += 1
            return False

        for i in range(steps):
            if await self._pause_or_stop(step_time, stop_event):
                return stopped()
            if self.rt.faults.take_delete_mid_job(acct.user_id):
                self.rt.delete(channel, progress["id"])
                st.counters.jobs_failed += 1
                return False
            pct = int(i * 100 / steps)
            preview = publish(st, channel.id, f"{job_hash}_grid_0.webp", (render_seed, "grid"))
            progress = edited(
                progress,
                content=content_for(spec, acct, pct, mode=mode),
                attachments=[preview],
                components=progress_components(job_hash),
            )
            self.rt.update(channel, progress)
            if stop and i == 0:
                return stopped()
        if await self._pause_or_stop(step_time, stop_event):
            return stopped()
        return True

    def _finish(
        self, ctx: InteractionCtx, spec: JobSpec, mode: Mode, progress: Payload, job_hash: str
    ) -> None:
        """The result message replaces the progress message."""
        st = self.state
        acct = ctx.account
        channel = ctx.channel
        layout = "grid" if spec.grid else "single"
        if is_video(spec.prompt):
            finals, components = video_finals(st, channel.id, acct.username, spec.prompt, job_hash)
        else:
            filename = final_filename(acct.username, spec.prompt, job_hash)
            finals = [publish(st, channel.id, filename, (_render_seed(spec), layout))]
            components = grid_components(job_hash) if spec.grid else single_components(job_hash, spec.prompt)
        final = self.rt.new_message(
            ctx,
            type_=19 if spec.reply_to is not None else 0,
            content=content_for(spec, acct, "final", mode=mode),
            attachments=finals,
            components=components,
            extra=ctx.refs(),
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


def _render_seed(spec: JobSpec) -> str:
    """What an image of the job is drawn from: the same job always gives the same pixels."""
    layout = "grid" if spec.grid else "single"
    return f"{spec.prompt}|{layout}|{spec.index or 0}|{spec.parent_hash or ''}"
