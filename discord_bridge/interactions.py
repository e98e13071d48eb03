"""What to send to Discord for a task: prepare (uploads, no interaction), then send (the interactions).

The consumer claims the task between the two steps, so everything that may be repeated safely
(uploads, reading blobs) happens before the claim, and nothing that costs a GPU job happens before it.

Per task:
- IMAGINE/DESCRIBE/BLEND/SHORTEN without a customId: one slash command (images uploaded first;
  imagine puts their CDN URLs in front of the prompt, describe/blend pass them as attachment options);
  imagine and shorten carry the task's speed mode as a prompt flag, describe and blend (no prompt)
  and button clicks switch the account's mode first (`discord_bridge.speed`);
- a customId: a button click on the parent message; when the task waited for `/mj/submit/modal`
  (`properties.modal_kind`), the bot's modal is answered with a type 5 submit under a NEW nonce
  (indexed to the same task), and Vary (Region)'s iframe modal by posting the mask to the editor host;
- SWAP_FACE: InsightFace `/saveid` with the source face, its reply awaited, then `/swapid` on the target.
"""

from __future__ import annotations

import logging
import re

import msgspec

from broker.discord import (
    IFRAME_PREFIX,
    INSIGHTFACE_ID,
    INTERACTION_FAILED,
    INTERACTION_FAILURE,
    INTERACTION_IFRAME_MODAL_CREATE,
    MESSAGE_CREATE,
    MODAL_EVENTS,
    ButtonKind,
    application_id_for,
    parse_custom_id,
)
from broker.discord_types import InteractionEvent, Message, ModalCreate
from broker.image_fetch import FetchRefused, ImageFetcher
from broker.models import Task, TaskAction
from broker.modes import with_mode_flag, without_mode_flags
from broker.store import TaskStore
from discord_bridge import payloads
from discord_bridge.plan import FlowFailed, LinkRefused, Payload, Plan, check_prompt_links
from discord_bridge.rest import Rejected, RestClient, Uploaded
from discord_bridge.session import Session
from discord_bridge.speed import ModeSwitcher
from discord_bridge.video import VideoSteps

__all__ = ["Interactions", "modal_expected"]

log = logging.getLogger(__name__)

_CAPTCHA_TITLES = ("action required", "action needed", "captcha")


_modal = msgspec.json.Decoder(ModalCreate)
_message = msgspec.json.Decoder(Message)
_interaction = msgspec.json.Decoder(InteractionEvent)


def _nonce_of(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def modal_expected(task: Task) -> str | None:
    """The modal kind the click of `task` opens ("prompt", "zoom", "mask"), or None."""
    return task.properties.modal_kind


def _prompt_of(task: Task) -> str:
    return (task.prompt_en or task.prompt or task.properties.prompt_en or "").strip()


def _idname(task_id: str) -> str:
    alnum = re.sub(r"[^A-Za-z0-9]", "", task_id)
    return ("f" + alnum[-9:]) if alnum else "face"


def _is_video_upscale(custom_id: str | None) -> bool:
    parsed = parse_custom_id(custom_id or "")
    return parsed is not None and parsed.kind is ButtonKind.VIDEO_UPSCALE


def _attachment(index: int, uploaded: Uploaded) -> Payload:
    return {"id": str(index), "filename": uploaded.filename, "uploaded_filename": uploaded.uploaded_filename}


class Interactions:
    """Prepares and sends the interactions of one account's tasks.

    :param session: the account's gateway session (session id, waits for modals and replies).
    :param rest: the account's REST client.
    :param store: task store (blobs, nonce index).
    :param fetcher: downloads the images clients link to, through the URL guard.
    :param modal_timeout: seconds to wait for the bot's modal (or a command's reply) after a click.
    :param switcher: the account's speed-mode switch (buttons and describe run in the account's mode).
    """

    def __init__(
        self,
        session: Session,
        rest: RestClient,
        store: TaskStore,
        *,
        fetcher: ImageFetcher,
        modal_timeout: float = 20.0,
        switcher: ModeSwitcher | None = None,
    ) -> None:
        self.session = session
        self.rest = rest
        self.store = store
        self.fetcher = fetcher
        self.account = session.account
        self.modal_timeout = modal_timeout
        self.switcher = switcher or ModeSwitcher(session, rest, reply_timeout=modal_timeout)
        self.video = VideoSteps(
            session,
            rest,
            store,
            fetcher=fetcher,
            answer_modal=self._answer_modal,
            step_timeout=modal_timeout,
        )

    # -- prepare (before the claim: may run twice, costs no job) ------------------------------

    async def _blobs(self, task: Task) -> list[tuple[str, bytes]]:
        files: list[tuple[str, bytes]] = []
        for name in task.properties.attachments or []:
            data = await self.store.get_blob(task.id, name)
            if data is None:
                raise Rejected(400, f"image {name} of the task is gone (expired before it could be sent)")
            files.append((name, data))
        return files

    async def _download(self, link: str) -> tuple[bytes, str]:
        try:
            return await self.fetcher.fetch(link)
        except FetchRefused as exc:
            raise LinkRefused(exc.reason) from None

    async def prepare(self, task: Task) -> Plan:
        """Upload what the task needs and decide what to send. Raises `DiscordError`."""
        app = application_id_for(task.bot_type)
        custom_id = task.custom_id or task.properties.custom_id
        if task.action == TaskAction.VIDEO and not custom_id:
            return await self.video.prepare(task, app, _prompt_of(task))
        if task.action == TaskAction.VIDEO_EXTEND and _is_video_upscale(custom_id):
            # two clicks (see discord_bridge.video), in the mode asked for like every click
            return Plan(kind="extend", application_id=app, switch_mode=task.request_mode)
        if custom_id:
            plan = Plan(kind="click", application_id=app, switch_mode=task.request_mode)
            if modal_expected(task) == "mask":
                plan.mask = await self.store.get_blob(task.id, "mask.png")
                if plan.mask is None:
                    raise Rejected(400, "the Vary (Region) mask is missing (maskBase64 of /mj/submit/modal)")
            return plan
        if task.action == TaskAction.IMAGINE:
            prompt = _prompt_of(task)
            await check_prompt_links(self.fetcher, prompt)
            files = await self._blobs(task)
            urls = await self.rest.upload_to_cdn(files) if files else []
            final = with_mode_flag(" ".join([*urls, prompt]).strip(), task.request_mode)
            return Plan(
                kind="command",
                command="imagine",
                application_id=app,
                options=[payloads.string_option("prompt", final)],
                image_urls=urls or None,
                final_prompt=final,
            )
        if task.action == TaskAction.SHORTEN:
            return Plan(
                kind="command",
                command="shorten",
                application_id=app,
                options=[
                    payloads.string_option("prompt", with_mode_flag(_prompt_of(task), task.request_mode))
                ],
            )
        if task.action == TaskAction.DESCRIBE:
            files = await self._blobs(task)
            links = task.properties.image_urls or []
            if not files and links:
                # Downloaded here, through the guard, and uploaded as the base64 image would be.
                data, ext = await self._download(links[0])
                files = [(f"0.{ext}", data)]
            if not files:
                raise Rejected(400, "describe needs an image (base64) or a link")
            uploaded = await self.rest.upload(files[:1])
            return Plan(
                kind="command",
                command="describe",
                application_id=app,
                options=[payloads.attachment_option("image", 0)],
                attachments=[_attachment(0, uploaded[0])],
                switch_mode=task.request_mode,
            )
        if task.action == TaskAction.BLEND:
            files = await self._blobs(task)
            if not 2 <= len(files) <= 5:
                raise Rejected(400, f"blend needs 2 to 5 images, the task has {len(files)}")
            uploaded = await self.rest.upload(files)
            options = [payloads.attachment_option(f"image{i + 1}", i) for i in range(len(uploaded))]
            options.append(
                payloads.string_option(
                    "dimensions", payloads.blend_dimensions(task.properties.blend_dimensions)
                )
            )
            return Plan(
                kind="command",
                command="blend",
                application_id=app,
                options=options,
                attachments=[_attachment(i, u) for i, u in enumerate(uploaded)],
                # dimensions is a choice option: no room for a flag, so the account is switched
                switch_mode=task.request_mode,
            )
        if task.action == TaskAction.SWAP_FACE:
            return await self._prepare_swap(task)
        raise Rejected(400, f"the bridge cannot start a {task.action} task without a customId")

    async def _prepare_swap(self, task: Task) -> Plan:
        blobs = dict(await self._blobs(task))
        links = iter(task.properties.image_urls or [])
        images: dict[str, tuple[str, bytes]] = {}
        for role in ("source", "target"):
            name = next((n for n in blobs if n.startswith(role)), None)
            if name is not None:
                images[role] = (name, blobs[name])
                continue
            link = next(links, None)
            if link is None:
                raise Rejected(400, f"the face swap has no {role} image")
            data, ext = await self._download(link)
            images[role] = (f"{role}.{ext}", data)
        uploaded = await self.rest.upload([images["source"], images["target"]])
        return Plan(
            kind="swap",
            application_id=INSIGHTFACE_ID,
            face_source=uploaded[0],
            face_target=uploaded[1],
            face_idname=_idname(task.id),
        )

    # -- send (after the claim: exactly once) ------------------------------------------------

    def _session_id(self) -> str:
        sid = self.session.session_id
        if not sid:
            raise Rejected(0, "the Discord session dropped before sending; nothing was sent")
        return sid

    def _command(self, application_id: str, name: str) -> payloads.Command:
        try:
            return self.rest.commands.get(application_id, name)
        except KeyError as exc:
            raise Rejected(400, str(exc)) from exc

    async def send(self, task: Task, plan: Plan, nonce: str) -> None:
        """Send the task's interaction(s) with `nonce`. Raises `DiscordError` (task must fail), or
        `RateLimited` when Discord refused the first interaction with a 429 (nothing was run: the
        task may be sent again, with the same nonce, once the limit is over)."""
        async with self.switcher.holding(plan.application_id, plan.switch_mode):
            await self._send(task, plan, nonce)

    async def _send(self, task: Task, plan: Plan, nonce: str) -> None:
        if plan.kind == "command":
            assert plan.command is not None
            payload = payloads.slash_command(
                self._command(plan.application_id, plan.command),
                guild_id=self.account.guild_id,
                channel_id=self.account.channel_id,
                session_id=self._session_id(),
                nonce=nonce,
                options=plan.options,
                attachments=plan.attachments,
            )
            await self.rest.post_interaction(payload, wait=False)
        elif plan.kind == "click":
            await self._click(task, plan, nonce)
        elif plan.kind == "swap":
            await self._swap(task, plan, nonce)
        elif plan.kind == "extend":
            await self.video.extend(task, plan, nonce)
        else:  # pragma: no cover - plans come from prepare()
            raise Rejected(400, f"unknown plan {plan.kind}")

    async def _click(self, task: Task, plan: Plan, nonce: str) -> None:
        custom_id = task.custom_id or task.properties.custom_id or ""
        message_id = task.properties.referenced_message_id
        if not message_id:
            raise Rejected(400, "the parent task has no Discord message id to press the button on")
        kind = modal_expected(task)
        expectation = None
        if kind is not None:
            expectation = self.session.expect(
                lambda t, d: t in MODAL_EVENTS and _nonce_of(_modal.decode(d).nonce) == nonce
            )
        payload = payloads.button_click(
            application_id=plan.application_id,
            guild_id=self.account.guild_id,
            channel_id=self.account.channel_id,
            session_id=self._session_id(),
            nonce=nonce,
            message_id=message_id,
            message_flags=int(task.properties.flags or 0),
            custom_id=custom_id,
        )
        try:
            await self.rest.post_interaction(payload, wait=False)
        except BaseException:
            if expectation is not None:
                expectation.cancel()
            raise
        if expectation is None:
            return
        found = await expectation.wait(self.modal_timeout)
        if found is None:
            raise FlowFailed(f"the bot did not open its dialog within {self.modal_timeout:.0f}s of the click")
        t, d = found
        modal = _modal.decode(d)
        if t == INTERACTION_IFRAME_MODAL_CREATE:
            await self._answer_iframe(task, plan, modal)
        else:
            await self._answer_modal(task, plan, modal)

    async def _answer_modal(self, task: Task, plan: Plan, modal: ModalCreate) -> None:
        input_id = payloads.first_text_input(modal)
        if input_id is None or not modal.id:
            raise FlowFailed("the bot's dialog has no text field to answer")
        nonce = payloads.new_nonce()
        await self.store.index("nonce", nonce, task.id)
        application_id = (modal.application.id if modal.application else None) or modal.application_id
        payload = payloads.modal_submit(
            application_id=application_id or plan.application_id,
            guild_id=self.account.guild_id,
            channel_id=modal.channel_id or self.account.channel_id,
            session_id=self._session_id(),
            nonce=nonce,
            modal_id=modal.id,
            custom_id=modal.custom_id or task.properties.modal_custom_id or "",
            input_custom_id=input_id,
            # the dialog's prompt may carry the parent's flag: the job runs in this task's mode
            value=with_mode_flag(without_mode_flags(_prompt_of(task)), task.request_mode)
            if task.request_mode
            else _prompt_of(task),
        )
        await self.rest.post_interaction(payload)

    async def _answer_iframe(self, task: Task, plan: Plan, modal: ModalCreate) -> None:
        custom_id = modal.custom_id or ""
        title = (modal.title or "").lower()
        if any(word in title for word in _CAPTCHA_TITLES) or "/captcha/" in (modal.iframe_path or ""):
            raise FlowFailed(
                "Midjourney asks for a captcha ('Action required to continue'): "
                "solve it in Discord with this account, then retry"
            )
        if not custom_id.startswith(IFRAME_PREFIX) or plan.mask is None:
            raise FlowFailed("the bot opened an editor the bridge cannot answer")
        await self.rest.submit_inpaint(
            token=custom_id[len(IFRAME_PREFIX) :], mask=plan.mask, prompt=_prompt_of(task)
        )

    async def _swap(self, task: Task, plan: Plan, nonce: str) -> None:
        assert plan.face_source is not None and plan.face_target is not None
        save_nonce = payloads.new_nonce()
        saved = self.session.expect(
            lambda t, d: (
                t in (MESSAGE_CREATE, INTERACTION_FAILED, INTERACTION_FAILURE)
                and _nonce_of(_interaction.decode(d).nonce) == save_nonce
            )
        )
        save = payloads.slash_command(
            self._command(INSIGHTFACE_ID, "saveid"),
            guild_id=self.account.guild_id,
            channel_id=self.account.channel_id,
            session_id=self._session_id(),
            nonce=save_nonce,
            options=[
                payloads.string_option("idname", plan.face_idname),
                payloads.attachment_option("image", 0),
            ],
            attachments=[_attachment(0, plan.face_source)],
        )
        try:
            await self.rest.post_interaction(save, wait=False)
        except BaseException:
            saved.cancel()
            raise
        found = await saved.wait(self.modal_timeout)
        if found is None:
            raise FlowFailed(f"InsightFace did not answer /saveid within {self.modal_timeout:.0f}s")
        t, d = found
        content = (_message.decode(d).content or "") if t == MESSAGE_CREATE else ""
        if t != MESSAGE_CREATE or "invalid" in content.lower() or content.lower().startswith("error"):
            raise FlowFailed(f"InsightFace refused the source face: {content[:200] or t}")
        swap = payloads.slash_command(
            self._command(INSIGHTFACE_ID, "swapid"),
            guild_id=self.account.guild_id,
            channel_id=self.account.channel_id,
            session_id=self._session_id(),
            nonce=nonce,
            options=[
                payloads.string_option("idname", plan.face_idname),
                payloads.attachment_option("image", 0),
            ],
            attachments=[_attachment(0, plan.face_target)],
        )
        await self.rest.post_interaction(swap)
