"""The InsightFaceSwap bot: /saveid stores a face under a name, /swapid replies with a swapped image."""

from __future__ import annotations

import logging
import re
from typing import Any

from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.cdn import publish

__all__ = ["InsightFaceBot"]

log = logging.getLogger(__name__)

_IDNAME = re.compile(r"^[A-Za-z0-9]{1,10}$")


class InsightFaceBot:
    """Free-text replies (the real wording is unknown) with the nonce, plus an image for /swapid."""

    def __init__(self, rt: BotRuntime) -> None:
        self.rt = rt
        self.state = rt.state

    async def on_command(self, ctx: InteractionCtx, options: dict[str, Any]) -> None:
        await self.rt.ack(ctx)
        idname = str(options.get("idname", "")).strip()
        image = str(options.get("image", ""))
        key = (ctx.account.user_id, idname)
        if ctx.name == "saveid":
            if not _IDNAME.match(idname):
                text = f"Invalid idname `{idname}`: use at most 10 letters or digits."
            else:
                self.state.face_ids[key] = image
                text = f"idname `{idname}` saved and set as default."
            self._reply(ctx, text)
            return
        if ctx.name != "swapid":
            return
        names = [n for n in re.split(r"[,+]", idname) if n and n != "_"]
        missing = [n for n in names if (ctx.account.user_id, n) not in self.state.face_ids]
        if missing or not names:
            self._reply(ctx, f"Error: idname `{','.join(missing) or idname}` not found, use /saveid first.")
            return
        await self.rt.pause(self.state.settings.job_seconds / 2)
        job_hash = self.state.ids.uuid4()
        att = publish(
            self.state, ctx.channel.id, f"{job_hash}_swapped.png", (f"swap|{idname}|{image}", "single")
        )
        self._reply(ctx, f"<@{ctx.account.user_id}> swapped with `{idname}`", attachments=[att])

    def _reply(self, ctx: InteractionCtx, text: str, attachments: list[dict[str, Any]] | None = None) -> None:
        msg = self.rt.new_message(
            ctx, type_=20, nonce=ctx.nonce, content=text, attachments=attachments, extra=ctx.refs()
        )
        self.rt.create(ctx.channel, msg)
