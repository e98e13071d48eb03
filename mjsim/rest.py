"""REST routes under /api/v9 and /api/v10, the upload target and the Vary Region iframe submit."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from mjsim import responses
from mjsim.apps import BOTS, INSIGHTFACE, command_index
from mjsim.bots import InsightFaceBot, InteractionCtx, MidjourneyBot
from mjsim.bots.base import BotRuntime
from mjsim.cdn import attachment_payload, cdn_path
from mjsim.formats import message
from mjsim.state import Account, Channel, SimState

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
        self.face = face

    def add_routes(self, app: web.Application) -> None:
        for p in API_PREFIXES:
            app.router.add_get(f"{p}/users/@me", self.get_me)
            app.router.add_get(f"{p}/gateway", self.get_gateway)
            app.router.add_get(f"{p}/guilds/{{gid}}/application-command-index", self.guild_command_index)
            app.router.add_get(f"{p}/channels/{{cid}}/application-command-index", self.channel_command_index)
            app.router.add_get(f"{p}/users/@me/application-command-index", self.user_command_index)
            app.router.add_get(f"{p}/channels/{{cid}}/application-commands/search", self.search_commands)
            app.router.add_post(f"{p}/interactions", self.interactions)
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
        """Auth and injected rate limits for /api/ routes."""
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
        return await handler(request)

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
        channel = self.state.visible_channel(_account(request), request.match_info["cid"])
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
        apps = [BOTS[channel.bot_id]] if channel.bot_id else list(BOTS.values())
        return responses.json(command_index(apps))

    async def user_command_index(self, request: web.Request) -> web.Response:
        return responses.json(command_index(list(BOTS.values())))

    async def search_commands(self, request: web.Request) -> web.Response:
        channel = self.state.visible_channel(_account(request), request.match_info["cid"])
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
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

    async def interactions(self, request: web.Request) -> web.Response:
        account = _account(request)
        try:
            payload, files = await _read_body(request)
        except (msgspec.DecodeError, ValueError):
            return responses.error(400, 50109, "The request body contains invalid JSON.")
        if not isinstance(payload, dict):
            return responses.form_error(
                [], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
        return await self._interact(account, payload, files)

    async def _interact(
        self, account: Account, payload: Payload, files: dict[int, tuple[str, bytes]]
    ) -> web.Response:
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

    def _command(
        self, ctx: InteractionCtx, data: Payload, files: dict[int, tuple[str, bytes]]
    ) -> web.Response:
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
                url = self._resolve_attachment(ctx.channel, attachments, value, files)
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
        self._count(
            ctx,
            f"cmd:{ctx.bot.key}:{ctx.name}:{msgspec.json.encode(dict(sorted(key_opts.items()))).decode()}",
        )
        handler = self.face.on_command if ctx.bot is INSIGHTFACE else self.mj.on_command
        self.rt.spawn(handler(ctx, options))
        return responses.no_content()

    def _resolve_attachment(
        self, channel: Channel, attachments: list[Payload], index: Any, files: dict[int, tuple[str, bytes]]
    ) -> str | None:
        att = next((a for a in attachments if str(a.get("id")) == str(index)), None)
        if att is None:
            return None
        filename = str(att.get("filename") or "image.png")
        uploaded = att.get("uploaded_filename")
        if uploaded:
            blob = self.state.uploads.get(str(uploaded))
        else:
            blob = files.get(int(str(att.get("id", index))), (filename, b""))[1] or None
        if blob is None:
            return None
        return str(self._store_upload(channel, filename, blob, ephemeral=True)["url"])

    def _store_upload(self, channel: Channel, filename: str, blob: bytes, *, ephemeral: bool) -> Payload:
        """Serve uploaded bytes from the CDN; the attachment object pointing at them."""
        att_id = self.state.ids.snowflake()
        path = cdn_path(channel.id, att_id, filename, ephemeral=ephemeral)
        self.state.files[path] = blob
        return attachment_payload(
            base_url=self.state.base_url,
            path=path,
            attachment_id=att_id,
            filename=filename,
            size=len(blob),
            width=0,
            height=0,
        )

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

    # -- uploads, messages ----------------------------------------------------------------------

    async def attachment_slots(self, request: web.Request) -> web.Response:
        if self.state.visible_channel(_account(request), request.match_info["cid"]) is None:
            return responses.error(404, 10003, "Unknown Channel")
        body = msgspec.json.decode(await request.read())
        out = []
        for f in body.get("files") or []:
            upload_id = self.state.ids.hex(24)
            name = f"{self.state.ids.uuid4()}/{f.get('filename', 'file')}"
            self.state.pending_uploads[upload_id] = name
            url = f"{self.state.base_url}/upload/{urllib.parse.quote(name)}?upload_id={upload_id}"
            out.append({"id": int(f.get("id", 0)), "upload_url": url, "upload_filename": name})
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
        channel = self.state.visible_channel(account, request.match_info["cid"])
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
        try:
            body, files = await _read_body(request)
        except (msgspec.DecodeError, ValueError):
            return responses.error(400, 50109, "The request body contains invalid JSON.")
        if not isinstance(body, dict):
            return responses.form_error(
                [], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
        attachments = []
        for att in body.get("attachments") or []:
            filename = str(att.get("filename") or "file")
            uploaded = att.get("uploaded_filename")
            blob = (
                self.state.uploads.get(str(uploaded))
                if uploaded
                else files.get(int(att.get("id", 0)), ("", b""))[1]
            )
            if blob is None:
                return responses.form_error(
                    ["attachments", "0", "uploaded_filename"], "ATTACHMENT_NOT_FOUND", "Unknown upload"
                )
            attachments.append(self._store_upload(channel, filename, blob, ephemeral=False))
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
        channel = self.state.visible_channel(_account(request), request.match_info["cid"])
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
        limit = max(1, min(100, int(request.query.get("limit", "50"))))
        return responses.json(list(reversed(channel.messages.values()))[:limit])

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self.state.visible_channel(_account(request), request.match_info["cid"])
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
        msg = channel.messages.get(request.match_info["mid"])
        if msg is None:
            return responses.error(404, 10008, "Unknown Message")
        return responses.json(msg)

    async def react(self, request: web.Request) -> web.Response:
        account = _account(request)
        channel = self.state.visible_channel(account, request.match_info["cid"])
        if channel is None:
            return responses.error(404, 10003, "Unknown Channel")
        msg = channel.messages.get(request.match_info["mid"])
        if msg is None:
            return responses.error(404, 10008, "Unknown Message")
        emoji = urllib.parse.unquote(request.match_info["emoji"])
        self.state.counters.by_key[f"react:{msg['id']}:{emoji}"] += 1
        self.mj.on_reaction(account, msg, emoji)
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


async def _read_body(request: web.Request) -> tuple[Any, dict[int, tuple[str, bytes]]]:
    """A Discord request body: JSON, or multipart with `payload_json` and `files[n]` parts.

    Raises msgspec.DecodeError / ValueError on a body that is not what it claims to be.
    """
    files: dict[int, tuple[str, bytes]] = {}
    if not request.content_type.startswith("multipart/"):
        return msgspec.json.decode(await request.read()), files
    payload: Any = {}
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        name = part.name or ""
        data = await part.read()
        if name == "payload_json":
            payload = msgspec.json.decode(data)
        elif name.startswith("files["):
            files[int(name[6:-1])] = (getattr(part, "filename", None) or "file", bytes(data))
    return payload, files
