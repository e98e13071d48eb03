"""REST routes under /api/v9 and /api/v10, the upload target and the Vary Region iframe submit.

POST /interactions is validated by ``interactions``; files that come with requests by ``uploads``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from mjsim import responses
from mjsim.apps import BOTS, command_index
from mjsim.bots import InsightFaceBot, MidjourneyBot
from mjsim.bots.base import BotRuntime
from mjsim.cdn import publish
from mjsim.formats import message
from mjsim.interactions import Interactions
from mjsim.responses import RestError
from mjsim.state import Account, Channel, SimState
from mjsim.uploads import Files, attached_blob, new_upload_slot, read_body

__all__ = ["API_PREFIXES", "RestApi"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIXES = ("/api/v9", "/api/v10")

_ACCOUNT = web.RequestKey("mjsim_account", Account)


def _account(request: web.Request) -> Account:
    return request[_ACCOUNT]


class RestApi:
    """Discord REST as far as a Midjourney client uses it."""

    def __init__(self, rt: BotRuntime, mj: MidjourneyBot, face: InsightFaceBot) -> None:
        self.rt = rt
        self.state: SimState = rt.state
        self.mj = mj
        self.interactions = Interactions(rt, mj, face)

    def add_routes(self, app: web.Application) -> None:
        for p in API_PREFIXES:
            app.router.add_get(f"{p}/users/@me", self.get_me)
            app.router.add_get(f"{p}/gateway", self.get_gateway)
            app.router.add_get(f"{p}/guilds/{{gid}}/application-command-index", self.guild_command_index)
            app.router.add_get(f"{p}/channels/{{cid}}/application-command-index", self.channel_command_index)
            app.router.add_get(f"{p}/users/@me/application-command-index", self.user_command_index)
            app.router.add_get(f"{p}/channels/{{cid}}/application-commands/search", self.search_commands)
            app.router.add_post(f"{p}/interactions", self.post_interaction)
            app.router.add_post(f"{p}/channels/{{cid}}/attachments", self.attachment_slots)
            app.router.add_delete(f"{p}/attachments/{{name:.+}}", self.delete_upload)
            app.router.add_post(f"{p}/channels/{{cid}}/messages", self.post_message)
            app.router.add_get(f"{p}/channels/{{cid}}/messages", self.get_messages)
            app.router.add_get(f"{p}/channels/{{cid}}/messages/{{mid}}", self.get_message)
            app.router.add_put(f"{p}/channels/{{cid}}/messages/{{mid}}/reactions/{{emoji}}/@me", self.react)
            app.router.add_post(f"{p}/users/@me/channels", self.open_dm)
        app.router.add_put("/upload/{name:.+}", self.upload)
        app.router.add_post("/inpaint/api/submit-job", self.inpaint_submit)
        for p in API_PREFIXES:
            app.router.add_post(f"{p}/inpaint/api/submit-job", self.inpaint_submit)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Auth and injected rate limits for /api/ routes, which may answer by raising ``RestError``."""
        if not request.path.startswith("/api/") or request.path.endswith("/inpaint/api/submit-job"):
            return await handler(request)
        self.state.counters.rest_requests += 1
        account = self.state.account_for_token(request.headers.get("Authorization"))
        if account is None or account.banned:
            return responses.error(401, 0, "401: Unauthorized")
        fault = self.rt.faults.take_rate_limit(account.user_id)
        if fault is not None:
            return responses.json(
                {
                    "message": "You are being rate limited.",
                    "retry_after": fault.retry_after,
                    "global": fault.global_,
                },
                status=429,
                headers={
                    "Retry-After": str(max(1, round(fault.retry_after))),
                    "Via": "1.1 google",
                    "X-RateLimit-Scope": "global" if fault.global_ else "user",
                    "X-RateLimit-Global": "true" if fault.global_ else "false",
                },
            )
        request[_ACCOUNT] = account
        try:
            return await handler(request)
        except RestError as exc:
            return exc.response

    def _channel(self, request: web.Request) -> Channel:
        """The ``{cid}`` channel, if the account can see it."""
        channel = self.state.visible_channel(_account(request), request.match_info["cid"])
        if channel is None:
            raise RestError(responses.error(404, 10003, "Unknown Channel"))
        return channel

    def _message(self, channel: Channel, request: web.Request) -> Payload:
        """The ``{mid}`` message of ``channel``."""
        msg = channel.messages.get(request.match_info["mid"])
        if msg is None:
            raise RestError(responses.error(404, 10008, "Unknown Message"))
        return msg

    # -- identity, commands --------------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        a = _account(request)
        return responses.json(
            {
                **a.user(),
                "email": None,
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
                "premium_type": 0,
                "locale": "en-US",
                "analytics_token": "sim",
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        return responses.json({"url": self.state.gateway_url.rstrip("/")})

    async def guild_command_index(self, request: web.Request) -> web.Response:
        a = _account(request)
        if a.user_id not in self.state.guild_members.get(request.match_info["gid"], set()):
            return responses.error(404, 10004, "Unknown Guild")
        return responses.json(command_index(list(BOTS.values())))

    async def channel_command_index(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        apps = [BOTS[channel.bot_id]] if channel.bot_id else list(BOTS.values())
        return responses.json(command_index(apps))

    async def user_command_index(self, request: web.Request) -> web.Response:
        return responses.json(command_index(list(BOTS.values())))

    async def search_commands(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        query = request.query.get("query", "").lower()
        limit = int(request.query.get("limit", "25"))
        apps = [BOTS[channel.bot_id]] if channel.bot_id else list(BOTS.values())
        index = command_index(apps)
        cmds = [c for c in index["application_commands"] if query in c["name"]][:limit]
        body: Payload = {
            "application_commands": cmds,
            "cursor": {"next": None, "previous": None, "repaired": None},
        }
        if request.query.get("include_applications") == "true":
            body["applications"] = index["applications"]
        return responses.json(body)

    # -- interactions -------------------------------------------------------------------------

    async def post_interaction(self, request: web.Request) -> web.Response:
        payload, files = await _read_object(request)
        return self.interactions.accept(_account(request), payload, files)

    # -- uploads, messages ----------------------------------------------------------------------

    async def attachment_slots(self, request: web.Request) -> web.Response:
        self._channel(request)
        body = msgspec.json.decode(await request.read())
        out = [new_upload_slot(self.state, f) for f in body.get("files") or []]
        return responses.json({"attachments": out})

    async def upload(self, request: web.Request) -> web.Response:
        name = self.state.pending_uploads.pop(request.query.get("upload_id", ""), None)
        if name is None:
            return web.Response(status=404, text="unknown upload")
        self.state.uploads[name] = await request.read()
        return web.Response(status=200)

    async def delete_upload(self, request: web.Request) -> web.Response:
        self.state.uploads.pop(urllib.parse.unquote(request.match_info["name"]), None)
        return responses.no_content()

    async def post_message(self, request: web.Request) -> web.Response:
        account = _account(request)
        channel = self._channel(request)
        body, files = await _read_object(request)
        attachments = []
        for att in body.get("attachments") or []:
            filename = str(att.get("filename") or "file")
            blob = attached_blob(self.state, att, files, 0)
            if blob is None:
                return responses.form_error(
                    ["attachments", "0", "uploaded_filename"], "ATTACHMENT_NOT_FOUND", "Unknown upload"
                )
            attachments.append(publish(self.state, channel.id, filename, blob))
        msg = message(
            id=self.state.ids.snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=account.user(),
            content=str(body.get("content") or ""),
            nonce=str(body["nonce"]) if body.get("nonce") else None,
            attachments=attachments,
        )
        self.rt.create(channel, msg)
        return responses.json(msg)

    async def get_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        limit = max(1, min(100, int(request.query.get("limit", "50"))))
        return responses.json(list(reversed(channel.messages.values()))[:limit])

    async def get_message(self, request: web.Request) -> web.Response:
        return responses.json(self._message(self._channel(request), request))

    async def react(self, request: web.Request) -> web.Response:
        msg = self._message(self._channel(request), request)
        emoji = urllib.parse.unquote(request.match_info["emoji"])
        self.state.counters.by_key[f"react:{msg['id']}:{emoji}"] += 1
        self.mj.on_reaction(_account(request), msg, emoji)
        return responses.no_content()

    async def open_dm(self, request: web.Request) -> web.Response:
        account = _account(request)
        body = msgspec.json.decode(await request.read())
        recipients = [str(r) for r in body.get("recipients") or []]
        bot = BOTS.get(recipients[0]) if len(recipients) == 1 else None
        if bot is None:
            return responses.form_error(["recipients"], "USER_UNKNOWN", "Unknown user")
        dm = self.state.dm_channel(account, bot.id)
        return responses.json(
            {"id": dm.id, "type": 1, "recipients": [bot.user()], "last_message_id": None, "flags": 0}
        )

    async def inpaint_submit(self, request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return responses.json({"success": False, "message": "invalid json"}, status=400)
        token = str(body.get("customId", "")).removeprefix("MJ::iframe::")
        ok = await self.mj.on_inpaint(token, str(body.get("prompt") or ""))
        if not ok:
            return responses.json({"success": False, "message": "unknown customId"}, status=404)
        return responses.json({"success": True})


async def _read_object(request: web.Request) -> tuple[Payload, Files]:
    """A JSON object body (or multipart ``payload_json``) and its inline files; 400 as Discord words it."""
    try:
        payload, files = await read_body(request)
    except (msgspec.DecodeError, ValueError) as exc:
        raise RestError(responses.error(400, 50109, "The request body contains invalid JSON.")) from exc
    if not isinstance(payload, dict):
        raise RestError(
            responses.form_error([], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        )
    return payload, files
