"""Helpers to run mjsim in-process and to connect clients to it (reusable by every test suite).

Usage::

    sim = await start_mjsim(accounts=2, speed=0)
    try:
        client = await sim.discord_client(0)      # a logged-in discord.py-self client (on_ready reached)
        ...
        counters = await sim.control("GET", "/_sim/counters")
    finally:
        await sim.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import zstandard

from mjsim.server import RunningServer, start_server
from mjsim.state import AccountSpec, SimSettings

__all__ = [
    "EventRecorder",
    "RawGateway",
    "RunningSim",
    "button_ids",
    "click_payload",
    "mjsim_running",
    "modal_payload",
    "next_nonce",
    "slash_payload",
    "start_mjsim",
]

UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/136.0.0.0 Safari/537.36"
)


@dataclass
class RunningSim:
    """A simulator running in this event loop."""

    server: RunningServer
    http: aiohttp.ClientSession
    clients: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def rest_base(self) -> str:
        return self.server.base_url + "/api/v9"

    @property
    def gateway_url(self) -> str:
        return self.server.gateway_url

    @property
    def sim(self) -> Any:
        """The in-process ``mjsim.Simulator`` (state, hub, runtime) for white-box assertions."""
        return self.server.sim

    @property
    def accounts(self) -> list[dict[str, Any]]:
        """Account summaries: token, userId, guildId, channelId, dmChannels, baseUrl, gatewayUrl."""
        st = self.server.sim.state
        return [a.summary(st.base_url, st.gateway_url) for a in st.accounts.values()]

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the /_sim control API and return the decoded JSON."""
        async with self.http.request(method, self.base_url + path, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise AssertionError(f"{method} {path} -> {resp.status}: {data}")
            return data

    async def counters(self) -> dict[str, Any]:
        return await self.control("GET", "/_sim/counters")  # type: ignore[no-any-return]

    async def fault(self, account: str, kind: str, **params: Any) -> dict[str, Any]:
        return await self.control("POST", "/_sim/faults", {"account": account, "kind": kind, **params})  # type: ignore[no-any-return]

    async def rest(self, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, Any, Any]:
        """A raw REST call with ``Authorization: token``; returns (status, json-or-text, headers)."""
        headers = {"Authorization": token, **kwargs.pop("headers", {})}
        async with self.http.request(method, self.rest_base + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            body: Any = json.loads(raw) if resp.headers.get("Content-Type") == "application/json" else raw
            return resp.status, body, resp.headers

    async def discord_client(self, index: int = 0, *, token: str | None = None, **client_kwargs: Any) -> Any:
        """Start a discord.py-self client for account ``index`` (or ``token``); wait for on_ready."""
        import discord

        from discord_bridge.discord_overrides import install_fixed_super_properties, point_client_at

        point_client_at(self.rest_base, self.gateway_url, self.base_url)
        install_fixed_super_properties(UA)
        kwargs: dict[str, Any] = {
            "max_messages": None,
            "chunk_guilds_at_startup": False,
            "guild_subscriptions": False,
        }
        kwargs.update(client_kwargs)
        client = discord.Client(**kwargs)
        ready = asyncio.Event()

        @client.event
        async def on_ready() -> None:
            ready.set()

        token = token or self.accounts[index]["token"]
        client._mjsim_task = asyncio.create_task(client.start(token))
        self.clients.append(client)
        async with asyncio.timeout(10):
            done_first = asyncio.create_task(ready.wait())
            await asyncio.wait({done_first, client._mjsim_task}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.is_set():
                done_first.cancel()
                client._mjsim_task.result()  # re-raise the login failure
        return client

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
            task = getattr(client, "_mjsim_task", None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self.http.close()
        await self.server.close()


async def start_mjsim(
    *,
    accounts: int | list[dict[str, Any]] = 1,
    seed: int | None = 1,
    speed: float = 0.0,
    job_seconds: float = 1.0,
    progress_steps: int = 3,
    ack_delay: float = 0.05,
    **settings: Any,
) -> RunningSim:
    """Start mjsim on a free port. ``accounts`` is a count or a list of AccountSpec dicts.

    Defaults suit tests: ``speed=0`` (no waits between steps), seeded ids.
    """
    specs = [AccountSpec(**a) for a in accounts] if isinstance(accounts, list) else []
    count = accounts if isinstance(accounts, int) else 0
    cfg = SimSettings(
        speed=speed, job_seconds=job_seconds, progress_steps=progress_steps, ack_delay=ack_delay, **settings
    )
    server = await start_server(settings=cfg, seed=seed, accounts=specs, account_count=count)
    return RunningSim(server=server, http=aiohttp.ClientSession())


@contextlib.asynccontextmanager
async def mjsim_running(**opts: Any) -> AsyncIterator[RunningSim]:
    sim = await start_mjsim(**opts)
    try:
        yield sim
    finally:
        await sim.close()


class RawGateway:
    """A lean gateway client over aiohttp: decompresses like discord.py-self, records dispatches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.decompressobj()
        self._zstd = zstandard.ZstdDecompressor().decompressobj()
        self._buf = bytearray()
        self.events: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self.seq: int | None = None

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, *, compress: str | None = None
    ) -> RawGateway:
        query = "?v=9&encoding=json" + (f"&compress={compress}" if compress else "")
        ws = await http.ws_connect(url.rstrip("/") + "/" + query)
        return cls(ws, compress)

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_bytes(json.dumps({"op": op, "d": d}).encode())

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        """The next decoded payload (raises on close/timeout)."""
        async with asyncio.timeout(within):
            while True:
                msg = await self.ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    if self.compress:
                        raise AssertionError("text frame on a compressed connection")
                    payload: dict[str, Any] = json.loads(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    if self.compress == "zlib-stream":
                        self._buf += msg.data
                        if not self._buf.endswith(b"\x00\x00\xff\xff"):
                            continue
                        payload = json.loads(self._zlib.decompress(bytes(self._buf)))
                        self._buf.clear()
                    elif self.compress == "zstd-stream":
                        payload = json.loads(self._zstd.decompress(msg.data))
                    else:
                        raise AssertionError("binary frame on an uncompressed connection")
                else:
                    raise ConnectionError(f"websocket closed: {msg.type} {self.ws.close_code}")
                if payload.get("op") == 0:
                    self.seq = payload["s"]
                    self.events.append(payload)
                    if payload["t"] == "READY":
                        self.session_id = payload["d"]["session_id"]
                return payload

    async def identify(self, token: str) -> dict[str, Any]:
        await self.send(2, {"token": token, "capabilities": 16381, "properties": {}, "compress": False})
        return await self.wait_for("READY_SUPPLEMENTAL")

    async def wait_for(
        self, t: str, check: Callable[[dict[str, Any]], bool] = lambda d: True, within: float = 5.0
    ) -> dict[str, Any]:
        """Receive until a dispatch ``t`` whose ``d`` passes ``check``; returns ``d``."""
        async with asyncio.timeout(within):
            for ev in self.events:
                if ev["t"] == t and check(ev["d"]) and not ev.get("_seen"):
                    ev["_seen"] = True
                    return ev["d"]  # type: ignore[no-any-return]
            while True:
                payload = await self.recv(within)
                if payload.get("op") == 0 and payload["t"] == t and check(payload["d"]):
                    payload["_seen"] = True
                    return payload["d"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.ws.close()


class EventRecorder:
    """Collects raw dispatches of a discord.py-self client (needs ``enable_debug_events=True``)."""

    def __init__(self, client: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = asyncio.Condition()

        async def on_socket_raw_receive(raw: str) -> None:
            payload = json.loads(raw)
            if payload.get("op") == 0:
                async with self._cond:
                    self.events.append(payload)
                    self._cond.notify_all()

        # discord.Client has no add_listener; dispatch() looks handlers up as attributes.
        client.on_socket_raw_receive = on_socket_raw_receive

    async def wait_for(
        self, t: str, check: Callable[[dict[str, Any]], bool] = lambda d: True, within: float = 5.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(within), self._cond:
            while True:
                for ev in self.events:
                    if ev["t"] == t and check(ev["d"]):
                        return ev["d"]  # type: ignore[no-any-return]
                await self._cond.wait()


_NONCE = iter(range(1_300_000_000_000_000_000, 2**63))


def next_nonce() -> str:
    return str(next(_NONCE))


def slash_payload(
    account: dict[str, Any],
    session_id: str,
    command: str,
    options: dict[str, Any] | None = None,
    *,
    bot: str = "midjourney",
    nonce: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    channel_id: str | None = None,
) -> dict[str, Any]:
    """A type-2 POST /interactions body using the real command id/version from ``mjsim.apps``."""
    from mjsim.apps import BOTS

    app = next(b for b in BOTS.values() if b.key == bot)
    cmd = next(c for c in app.commands if c.name == command)
    opt_types = {o["name"]: o["type"] for o in cmd.options}
    channel = channel_id or account["channelId"]
    body: dict[str, Any] = {
        "type": 2,
        "application_id": app.id,
        "channel_id": channel,
        "session_id": session_id,
        "nonce": nonce or next_nonce(),
        "data": {
            "version": cmd.version,
            "id": cmd.id,
            "name": cmd.name,
            "type": 1,
            "options": [
                {"type": opt_types.get(k, 3), "name": k, "value": v} for k, v in (options or {}).items()
            ],
            "application_command": cmd.to_payload(app.id),
            "attachments": attachments or [],
        },
    }
    if channel == account["channelId"]:
        body["guild_id"] = account["guildId"]
    return body


def click_payload(
    account: dict[str, Any],
    session_id: str,
    message: dict[str, Any],
    custom_id: str,
    *,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A type-3 button click on ``message``."""
    body = {
        "type": 3,
        "application_id": message["author"]["id"],
        "channel_id": message["channel_id"],
        "message_id": message["id"],
        "message_flags": message.get("flags", 0),
        "session_id": session_id,
        "nonce": nonce or next_nonce(),
        "data": {"component_type": 2, "custom_id": custom_id},
    }
    if message.get("guild_id"):
        body["guild_id"] = message["guild_id"]
    return body


def modal_payload(
    account: dict[str, Any], session_id: str, modal: dict[str, Any], value: str, *, nonce: str | None = None
) -> dict[str, Any]:
    """A type-5 submit of an INTERACTION_MODAL_CREATE payload with its single text input set to ``value``."""
    input_id = modal["components"][0]["components"][0]["custom_id"]
    return {
        "type": 5,
        "application_id": modal["application"]["id"],
        "channel_id": modal["channel_id"],
        "guild_id": account["guildId"],
        "session_id": session_id,
        "nonce": nonce or next_nonce(),
        "data": {
            "id": modal["id"],
            "custom_id": modal["custom_id"],
            "components": [{"type": 1, "components": [{"type": 4, "custom_id": input_id, "value": value}]}],
        },
    }


def button_ids(message: dict[str, Any]) -> list[str]:
    return [c.get("custom_id", "") for r in message.get("components", []) for c in r.get("components", [])]
