"""POST /interactions: validate a slash command, button click or modal submit, then hand it to its bot.

Validation answers as Discord does (400 Invalid Form Body with the failing path, 404 for an unknown
channel); an accepted interaction gets 204 at once and the bot works on in a task of its own.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from mjsim import responses
from mjsim.apps import BOTS, INSIGHTFACE
from mjsim.bots import InsightFaceBot, InteractionCtx, MidjourneyBot
from mjsim.bots.base import BotRuntime
from mjsim.cdn import publish
from mjsim.state import Account, Channel
from mjsim.uploads import Files, attached_blob

__all__ = ["Interactions"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]


#: account commands that start no job (sent again by a relay whenever it needs the mode back)
_SETTING_COMMANDS = frozenset({"fast", "relax", "turbo", "info", "settings", "prefer"})


class Interactions:
    """Turns an interaction payload into an ``InteractionCtx`` for the Midjourney or InsightFace bot.

    Every accepted interaction is counted (``Counters.count_interaction``) under a key that names what
    was asked, so that tests can spot a client sending the same thing twice.
    """

    def __init__(self, rt: BotRuntime, mj: MidjourneyBot, face: InsightFaceBot) -> None:
        self.rt = rt
        self.state = rt.state
        self.mj = mj
        self.face = face

    def accept(self, account: Account, payload: Payload, files: Files) -> web.Response:
        """Validate ``payload`` (with the request's inline ``files``); 204 when a bot took it."""
        type_ = payload.get("type")
        nonce = str(payload.get("nonce") or "")
        data = payload.get("data")
        if type_ not in (2, 3, 5) or not isinstance(data, dict):
            return responses.form_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {2, 3, 5}.")
        channel = self.state.visible_channel(account, str(payload.get("channel_id")))
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
        bot = BOTS.get(str(payload.get("application_id")))
        if bot is None:
            return responses.form_error(["application_id"], "APPLICATION_UNKNOWN", "Unknown application")
        ctx = InteractionCtx(
            account=account,
            bot=bot,
            session_id=str(payload.get("session_id") or ""),
            account_mode=account.mode,
            nonce=nonce,
            interaction_id=self.state.ids.snowflake(),
            channel=channel,
            type=type_,
            name="",
        )
        if type_ == 2:
            return self._command(ctx, data, files)
        if type_ == 3:
            return self._component(ctx, payload, data)
        return self._modal(ctx, data)

    def _count(self, ctx: InteractionCtx, key: str) -> None:
        self.state.counters.count_interaction(ctx.account.user_id, ctx.nonce, key, ctx.type)

    def _command(self, ctx: InteractionCtx, data: Payload, files: Files) -> web.Response:
        cmd = ctx.bot.command(str(data.get("id")))
        if cmd is None or cmd.name != data.get("name"):
            return responses.form_error(
                ["data", "id"], "APPLICATION_COMMAND_UNKNOWN", "Unknown application command"
            )
        if str(data.get("version")) != cmd.version:
            return responses.form_error(
                ["data", "version"],
                "APPLICATION_COMMAND_OUTDATED",
                "This command is outdated, please try again in a few minutes",
            )
        raw_opts = data.get("options") or []
        if raw_opts and raw_opts[0].get("type") == 1:  # sub-command: "/prefer remix"
            ctx.name = f"{cmd.name} {raw_opts[0]['name']}"
            raw_opts = raw_opts[0].get("options") or []
        attachments = data.get("attachments") or []
        options: dict[str, Any] = {}
        key_opts: dict[str, Any] = {}
        for opt in raw_opts:
            value = opt.get("value")
            if opt.get("type") == 11:
                url = self._attachment_url(ctx.channel, attachments, value, files)
                if url is None:
                    return responses.form_error(
                        ["data", "attachments", str(value)], "ATTACHMENT_NOT_FOUND", "Unknown attachment"
                    )
                options[opt["name"]] = url
                key_opts[opt["name"]] = url.split("?", 1)[0].rsplit("/", 1)[-1]
            else:
                options[opt["name"]] = value
                key_opts[opt["name"]] = value
        for spec in cmd.options:
            if spec.get("required") and spec["name"] not in options and spec.get("type") != 1:
                return responses.form_error(
                    ["data", "options", spec["name"]], "BASE_TYPE_REQUIRED", "This field is required"
                )
        ctx.name = ctx.name or cmd.name
        key = f"cmd:{ctx.bot.key}:{ctx.name}:{msgspec.json.encode(dict(sorted(key_opts.items()))).decode()}"
        if cmd.name in _SETTING_COMMANDS:
            # switching modes again runs no job: only a job sent twice counts as a duplicate
            key += f":{ctx.nonce}"
        self._count(ctx, key)
        handler = self.face.on_command if ctx.bot is INSIGHTFACE else self.mj.on_command
        self.rt.spawn(handler(ctx, options))
        return responses.no_content()

    def _attachment_url(
        self, channel: Channel, attachments: list[Payload], index: Any, files: Files
    ) -> str | None:
        """The ephemeral CDN URL of the (non-empty) file an attachment option points at."""
        att = next((a for a in attachments if str(a.get("id")) == str(index)), None)
        if att is None:
            return None
        blob = attached_blob(self.state, att, files, index)
        if not blob:
            return None
        filename = str(att.get("filename") or "image.png")
        return str(publish(self.state, channel.id, filename, blob, ephemeral=True)["url"])

    def _component(self, ctx: InteractionCtx, payload: Payload, data: Payload) -> web.Response:
        mid = str(payload.get("message_id"))
        source = self.state.find_message(ctx.channel.id, mid) or self.state.ephemeral_messages.get(mid)
        if source is None:
            return responses.form_error(["message_id"], "MESSAGE_UNKNOWN", "Unknown message")
        custom_id = str(data.get("custom_id"))
        known = {c.get("custom_id") for r in source.get("components", []) for c in r.get("components", [])}
        if custom_id not in known:
            return responses.form_error(
                ["data", "custom_id"], "COMPONENT_CUSTOM_ID_INVALID", "Invalid custom id"
            )
        ctx.message_id = mid
        values = [str(v) for v in data.get("values") or []]
        self._count(ctx, f"click:{mid}:{custom_id}" + (f":{','.join(values)}" if values else ""))
        if ctx.bot is INSIGHTFACE:
            self.rt.spawn(self.rt.ack(ctx))
        else:
            self.rt.spawn(self.mj.on_component(ctx, source, custom_id, values))
        return responses.no_content()

    def _modal(self, ctx: InteractionCtx, data: Payload) -> web.Response:
        custom_id = str(data.get("custom_id"))
        data_id = str(data.get("id"))
        if not self.mj.knows_modal(ctx.account, data_id, custom_id):
            return responses.form_error(["data", "id"], "INTERACTION_UNKNOWN", "Unknown modal")
        values: dict[str, str] = {}
        for r in data.get("components") or []:
            for c in r.get("components") or []:
                values[str(c.get("custom_id"))] = str(c.get("value") or "")
        self._count(ctx, f"modal:{custom_id}:{msgspec.json.encode(dict(sorted(values.items()))).decode()}")
        self.rt.spawn(self.mj.on_modal(ctx, data_id, custom_id, values))
        return responses.no_content()
