"""Videos on a Discord account: the imagine that makes one, and the two clicks that extend one.

A VIDEO task from /mj/submit/video is an imagine (`broker.video.video_prompt`): its frames are our own
image URLs (used as they are), base64 stored with the task, or a client's link downloaded through the
URL guard; the last two are uploaded to the channel first, as imagine's reference images are.

A VIDEO_EXTEND from /mj/submit/video goes as Midjourney's own buttons do (trueai's TaskService and
DiscordWebSocketService, reference/discord-protocol.md §5):

1. click ``MJ::JOB::video_virtual_upscale::N::<hash>`` on the video under a nonce of its own, indexed to
   no task: its reply (the one video, with the Extend buttons) is a step, not the task's result;
2. click ``MJ::JOB::animate_<motion>_extend::N::<hash>`` of that reply under the task's nonce; with
   remix on the bot first opens ``MJ::AnimateModal::...``, answered with the task's prompt. The job
   that follows is the task's, matched by that nonce like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from broker.discord import INTERACTION_FAILED, INTERACTION_FAILURE, MESSAGE_CREATE, MODAL_EVENTS
from broker.discord_types import Message, ModalCreate
from broker.image_fetch import FetchRefused, ImageFetcher
from broker.models import Task
from broker.modes import with_mode_flag
from broker.store import TaskStore
from broker.video import VideoSpec, video_prompt
from discord_bridge import payloads
from discord_bridge.plan import FlowFailed, LinkRefused, Plan, check_prompt_links
from discord_bridge.rest import Rejected, RestClient
from discord_bridge.session import Session

__all__ = ["VideoSteps"]

log = logging.getLogger(__name__)

_message = msgspec.json.Decoder(Message)
_modal = msgspec.json.Decoder(ModalCreate)


class _Nonced(msgspec.Struct):
    nonce: str | int | None = None


_nonced = msgspec.json.Decoder(_Nonced)

#: answers the bot's modal with the task's prompt (`Interactions._answer_modal`)
AnswerModal = Callable[[Task, Plan, ModalCreate], Awaitable[None]]


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def _custom_ids(msg: Message) -> list[str]:
    out: list[str] = []
    stack = list(msg.components or ())
    while stack:
        comp = stack.pop(0)
        if comp.custom_id:
            out.append(comp.custom_id)
        stack[:0] = comp.components or ()
    return out


class VideoSteps:
    """Prepares video imagines and runs the extend flow of one account.

    :param session: the account's gateway session (session id, waits for the bot's replies).
    :param rest: the account's REST client (uploads, interactions).
    :param store: task store (the frames stored with the task).
    :param fetcher: downloads a client's frame links through the URL guard.
    :param answer_modal: answers a modal the bot opens with the task's prompt.
    :param step_timeout: seconds to wait for each reply of the bot between two clicks.
    """

    def __init__(
        self,
        session: Session,
        rest: RestClient,
        store: TaskStore,
        *,
        fetcher: ImageFetcher,
        answer_modal: AnswerModal,
        step_timeout: float,
    ) -> None:
        self.session = session
        self.rest = rest
        self.store = store
        self.fetcher = fetcher
        self.answer_modal = answer_modal
        self.step_timeout = step_timeout
        self.account = session.account

    # -- a new video: one imagine -----------------------------------------------------------------

    async def prepare(self, task: Task, application_id: str, prompt: str) -> Plan:
        """Upload the frames that need it and build the imagine. Raises `DiscordError`."""
        spec = task.properties.video or VideoSpec()
        await check_prompt_links(self.fetcher, prompt)
        start = await self._frame(task, "start", spec.start_url, spec.start_link)
        if start is None:
            raise Rejected(400, "the video has no start frame")
        end = await self._frame(task, "end", spec.end_url, spec.end_link)
        final = with_mode_flag(video_prompt(prompt, spec, start=start, end=end), task.request_mode)
        return Plan(
            kind="command",
            command="imagine",
            application_id=application_id,
            options=[payloads.string_option("prompt", final)],
            image_urls=[url for url in (start, end) if url],
            final_prompt=final,
        )

    async def _frame(self, task: Task, role: str, own: str | None, link: str | None) -> str | None:
        """The URL the prompt names for the `role` frame, uploading it first unless it is ours."""
        if own:
            # One of our images (a finished task's): Midjourney reads it where we keep it, the
            # Discord CDN today. Once the image store holds copies (a later issue), read their bytes
            # from the store here and upload them, as below, instead of downloading anything.
            return own
        name = next((n for n in task.properties.attachments or () if n.startswith(f"{role}.")), None)
        if name is not None:
            data = await self.store.get_blob(task.id, name)
            if data is None:
                raise Rejected(400, f"the {role} frame of the task is gone (expired before it could be sent)")
        elif link:
            try:
                data, ext = await self.fetcher.fetch(link)
            except FetchRefused as exc:
                raise LinkRefused(f"{role} frame: {exc.reason}") from None
            name = f"{role}.{ext}"
        else:
            return None
        urls = await self.rest.upload_to_cdn([(name, data)])
        if not urls:
            raise Rejected(502, f"the {role} frame could not be uploaded")
        return urls[0]

    # -- an extend: two clicks --------------------------------------------------------------------

    def _session_id(self) -> str:
        sid = self.session.session_id
        if not sid:
            raise Rejected(0, "the Discord session dropped before sending; nothing was sent")
        return sid

    def _click(
        self, plan: Plan, *, nonce: str, message_id: str, flags: int, custom_id: str
    ) -> payloads.Payload:
        return payloads.button_click(
            application_id=plan.application_id,
            guild_id=self.account.guild_id,
            channel_id=self.account.channel_id,
            session_id=self._session_id(),
            nonce=nonce,
            message_id=message_id,
            message_flags=flags,
            custom_id=custom_id,
        )

    async def extend(self, task: Task, plan: Plan, nonce: str) -> None:
        """U<N> of the video, then Extend on its reply. Raises `DiscordError` (the task fails)."""
        spec = task.properties.video or VideoSpec()
        parent_message = task.properties.referenced_message_id
        upscale_id = task.custom_id or task.properties.custom_id or ""
        if not parent_message or spec.index is None:
            raise Rejected(400, "the video to extend has no Discord message or index")
        wanted = f"MJ::JOB::animate_{spec.motion}_extend::{spec.index}::"
        step_nonce = payloads.new_nonce()

        def is_upscaled(t: str, d: bytes) -> bool:
            if t != MESSAGE_CREATE:
                return False
            msg = _message.decode(d)
            if _text(msg.nonce) == step_nonce:
                return True
            replied = msg.message_reference.message_id if msg.message_reference else None
            return replied == parent_message and any(c.startswith(wanted) for c in _custom_ids(msg))

        upscaled = self.session.expect(is_upscaled)
        try:
            await self.rest.post_interaction(
                self._click(
                    plan,
                    nonce=step_nonce,
                    message_id=parent_message,
                    flags=int(task.properties.flags or 0),
                    custom_id=upscale_id,
                ),
                wait=False,
            )
        except BaseException:
            upscaled.cancel()
            raise
        found = await upscaled.wait(self.step_timeout)
        if found is None:
            raise FlowFailed(f"the bot did not bring video {spec.index} up within {self.step_timeout:.0f}s")
        reply = _message.decode(found[1])
        prefix = f"MJ::JOB::animate_{spec.motion}_extend::"
        extend_id = next((c for c in _custom_ids(reply) if c.startswith(prefix)), None)
        if extend_id is None or not reply.id:
            raise FlowFailed(f"video {spec.index} came without an Extend ({spec.motion} motion) button")
        await self._press_extend(task, plan, nonce, reply, extend_id)

    async def _press_extend(self, task: Task, plan: Plan, nonce: str, reply: Message, extend_id: str) -> None:
        def answered(t: str, d: bytes) -> bool:
            if t in MODAL_EVENTS or t in (MESSAGE_CREATE, INTERACTION_FAILED, INTERACTION_FAILURE):
                return _text(_nonced.decode(d).nonce) == nonce
            return False

        opened = self.session.expect(answered)
        try:
            await self.rest.post_interaction(
                self._click(
                    plan,
                    nonce=nonce,
                    message_id=reply.id or "",
                    flags=int(reply.flags or 0),
                    custom_id=extend_id,
                ),
                wait=False,
            )
        except BaseException:
            opened.cancel()
            raise
        found = await opened.wait(self.step_timeout)
        if found is None or found[0] not in MODAL_EVENTS:
            # The job started (or the bot refused it): the workers follow it by the nonce from here.
            return
        await self.answer_modal(task, plan, _modal.decode(found[1]))
