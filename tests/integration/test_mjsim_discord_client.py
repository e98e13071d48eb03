"""Unmodified discord.py-self 2.1.0 against mjsim (only base URLs and super-properties overridden)."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import discord
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mjsim_support import EventRecorder, RunningSim, start_mjsim

MJ_ID = 936929561302675456


@pytest.fixture
async def sim() -> Any:
    running = await start_mjsim(accounts=1)
    yield running
    await running.close()


async def _command(channel: Any, name: str) -> Any:
    commands = await channel.application_commands()
    return next(c for c in commands if c.name == name and c.application_id == MJ_ID)


async def test_discord_client_imagine_upscale_custom_zoom_and_describe(sim: RunningSim) -> None:
    client = await sim.discord_client(0, enable_debug_events=True)
    rec = EventRecorder(client)
    edits: list[dict[str, Any]] = []
    edited = asyncio.Event()

    async def on_raw_message_edit(payload: Any) -> None:
        edits.append(payload.data)
        edited.set()

    client.on_raw_message_edit = on_raw_message_edit
    account = sim.accounts[0]
    assert str(client.user.id) == account["userId"]
    channel = client.get_channel(int(account["channelId"]))
    assert channel is not None

    imagine = await _command(channel, "imagine")
    interaction = await imagine(channel, prompt="a red fox in snow")
    assert interaction.successful
    start = await rec.wait_for("MESSAGE_CREATE", lambda d: d.get("nonce") == str(interaction.nonce))
    assert start["content"].endswith("(Waiting to start)")
    async with asyncio.timeout(5):
        await edited.wait()
    assert any("%) (fast)" in e["content"] for e in edits)
    final = await rec.wait_for(
        "MESSAGE_CREATE", lambda d: d["content"].endswith("(fast)") and d["attachments"]
    )

    # U1 through the library's button API, on the parsed Message.
    msg = await channel.fetch_message(int(final["id"]))
    u1 = next(b for row in msg.components for b in row.children if getattr(b, "label", None) == "U1")
    click = await u1.click()
    assert click.successful
    upscale = await rec.wait_for("MESSAGE_CREATE", lambda d: "Image #1" in d["content"])
    assert upscale["type"] == 19
    assert upscale["message_reference"]["message_id"] == final["id"]

    # Custom Zoom opens a modal; answer and submit it through the library's modal API.
    up_msg = await channel.fetch_message(int(upscale["id"]))
    zoom_btn = next(
        b for row in up_msg.components for b in row.children if getattr(b, "label", "") == "Custom Zoom"
    )
    modal_waiter = asyncio.ensure_future(client.wait_for("modal", timeout=5))
    await zoom_btn.click()
    modal = await modal_waiter
    assert modal.custom_id.startswith("MJ::OutpaintCustomZoomModal::")
    text_input = modal.components[0].children[0]
    assert text_input.value.endswith("--zoom 2")
    text_input.answer("a red fox in snow --zoom 1.8")
    submitted = await modal.submit()
    assert submitted.successful
    zoomed = await rec.wait_for(
        "MESSAGE_CREATE", lambda d: "Zoom Out by" in d["content"] and d["attachments"]
    )
    assert "--zoom 1.8" in zoomed["content"]

    # /describe with a cloud upload.
    png = await client.http.get_from_cdn(final["attachments"][0]["url"])
    assert png.startswith(b"\x89PNG")
    uploads = await channel.upload_files(discord.File(io.BytesIO(png), filename="fox.png"))
    describe = await _command(channel, "describe")
    described = await describe(channel, image=uploads[0])
    assert described.successful
    result = await rec.wait_for("MESSAGE_CREATE", lambda d: d.get("nonce") == str(described.nonce))
    assert result["embeds"][0]["description"].startswith("1️⃣ ")
    assert "ephemeral-attachments" in result["embeds"][0]["image"]["url"]

    counters = await sim.counters()
    assert counters["interactions"]["total"] == 5
    assert counters["interactions"]["duplicate_keys"] == {}


async def test_discord_client_bad_token_raises_login_failure(sim: RunningSim) -> None:
    with pytest.raises(discord.LoginFailure):
        await sim.discord_client(token="not-a-known-token")
