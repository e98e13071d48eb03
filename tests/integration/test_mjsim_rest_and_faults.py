"""REST errors, uploads, reactions, and every control-API fault as a raw client sees it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mjsim_support import (
    RawGateway,
    RunningSim,
    button_ids,
    click_payload,
    modal_payload,
    slash_payload,
    start_mjsim,
)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSim]:
    running = await start_mjsim(accounts=1)
    yield running
    await running.close()


@pytest.fixture
async def gw(sim: RunningSim) -> AsyncIterator[RawGateway]:
    g = await RawGateway.connect(sim.http, sim.gateway_url, compress="zstd-stream")
    await g.identify(sim.accounts[0]["token"])
    yield g
    await g.close()


async def _post(sim: RunningSim, body: dict[str, Any]) -> tuple[int, Any, Any]:
    return await sim.rest("POST", "/interactions", sim.accounts[0]["token"], json=body)


async def _imagine(sim: RunningSim, gw: RawGateway, prompt: str) -> dict[str, Any]:
    acct = sim.accounts[0]
    status, _, _ = await _post(sim, slash_payload(acct, str(gw.session_id), "imagine", {"prompt": prompt}))
    assert status == 204
    return await gw.wait_for(
        "MESSAGE_CREATE", lambda d: d["content"].startswith(f"**{prompt}**") and bool(d["attachments"])
    )


async def test_bad_token_gets_401_with_exact_content_type(sim: RunningSim) -> None:
    status, body, headers = await sim.rest("GET", "/users/@me", "bad")
    assert status == 401 and body == {"code": 0, "message": "401: Unauthorized"}
    assert headers["Content-Type"] == "application/json"
    status, body, headers = await sim.rest("GET", "/users/@me", sim.accounts[0]["token"])
    assert status == 200 and body["id"] == sim.accounts[0]["userId"]
    assert headers["Content-Type"] == "application/json"


async def test_malformed_interactions_get_invalid_form_body(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    good = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "x"})
    stale = {**good, "data": {**good["data"], "version": "1"}}
    unknown_app = {**good, "application_id": "1"}
    for body in (stale, unknown_app):
        status, resp, _ = await _post(sim, body)
        assert status == 400 and resp["code"] == 50035 and resp["message"] == "Invalid Form Body"
    final = await _imagine(sim, gw, "cat")
    status, resp, _ = await _post(
        sim, {**click_payload(acct, str(gw.session_id), final, "MJ::JOB::upsample::1::x")}
    )
    assert status == 400 and "custom_id" in resp["errors"]["data"]
    status, resp, _ = await _post(sim, {**click_payload(acct, str(gw.session_id), {**final, "id": "1"}, "x")})
    assert status == 400 and "message_id" in resp["errors"]
    status, resp, _ = await _post(sim, {**good, "channel_id": "1"})
    assert status == 404 and resp["code"] == 10003
    status, resp, _ = await sim.rest("GET", f"/channels/{acct['channelId']}/messages/1", acct["token"])
    assert status == 404 and resp["code"] == 10008


async def test_rate_limit_fault_returns_429_then_recovers(sim: RunningSim) -> None:
    token = sim.accounts[0]["token"]
    await sim.fault(token, "rate_limit", count=2, retry_after=0.25)
    for _ in range(2):
        status, body, headers = await sim.rest("GET", "/users/@me", token)
        assert status == 429
        assert body == {"message": "You are being rate limited.", "retry_after": 0.25, "global": False}
        assert "Retry-After" in headers and "Via" in headers
    status, _, _ = await sim.rest("GET", "/users/@me", token)
    assert status == 200


async def test_ban_gives_401_and_closes_gateway_4004(sim: RunningSim, gw: RawGateway) -> None:
    token = sim.accounts[0]["token"]
    await sim.fault(token, "ban")
    with pytest.raises(ConnectionError):
        while True:
            await gw.recv()
    assert gw.ws.close_code == 4004
    status, _, _ = await sim.rest("GET", "/users/@me", token)
    assert status == 401


@pytest.mark.parametrize(
    ("error", "title"),
    [
        ("banned_prompt", "Banned prompt detected"),
        ("invalid_parameter", "Invalid parameter"),
        ("queue_full", "Queue full"),
        ("action_needed", "Action needed to continue"),
        ("subscription_expired", "Subscription expired"),
        ("subscription_required", "Subscription required"),
        ("credits_exhausted", "Credits exhausted"),
    ],
)
async def test_fail_next_job_sends_ephemeral_error_embed(
    sim: RunningSim, gw: RawGateway, error: str, title: str
) -> None:
    acct = sim.accounts[0]
    await sim.fault(acct["token"], "fail_next_job", error=error)
    body = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "doomed"})
    await _post(sim, body)
    msg = await gw.wait_for("MESSAGE_CREATE", lambda d: bool(d["embeds"]))
    assert msg["nonce"] == body["nonce"] and msg["flags"] & 64
    assert msg["embeds"][0]["title"] == title


async def test_interaction_failed_and_no_response_faults(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    await sim.fault(acct["token"], "fail_next_job", error="interaction_failed")
    body = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "x"})
    await _post(sim, body)
    failed = await gw.wait_for("INTERACTION_FAILED")
    assert failed["nonce"] == body["nonce"]
    await sim.fault(acct["token"], "fail_next_job", error="no_response")
    body = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "y"})
    await _post(sim, body)
    created = await gw.wait_for("INTERACTION_CREATE", lambda d: d["nonce"] == body["nonce"])
    assert set(created) == {"id", "nonce"}


async def test_stopped_and_delete_mid_job_faults(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    await sim.fault(acct["token"], "fail_next_job", error="stopped")
    await _post(sim, slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "halt"}))
    stopped = await gw.wait_for("MESSAGE_UPDATE", lambda d: d["content"].endswith("(Stopped)"))
    assert stopped["content"].startswith("**halt**")
    await sim.fault(acct["token"], "delete_mid_job")
    await _post(sim, slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "vanish"}))
    start = await gw.wait_for("MESSAGE_CREATE", lambda d: d["content"].startswith("**vanish**"))
    deleted = await gw.wait_for("MESSAGE_DELETE", lambda d: d["id"] == start["id"])
    assert deleted["channel_id"] == acct["channelId"]


async def test_prompt_checks_banned_word_and_unknown_parameter(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    await _post(sim, slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "a bannedword"}))
    assert (await gw.wait_for("MESSAGE_CREATE", lambda d: bool(d["embeds"])))["embeds"][0][
        "title"
    ] == "Banned prompt detected"
    await _post(sim, slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "cat --foo 2"}))
    err = await gw.wait_for(
        "MESSAGE_CREATE", lambda d: bool(d["embeds"]) and "foo" in d["embeds"][0]["description"]
    )
    assert err["embeds"][0]["title"] == "Invalid parameter"


async def test_concurrency_limit_queues_then_runs(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    await sim.control("PATCH", f"/_sim/accounts/{acct['token']}", {"concurrency": 1, "queue_limit": 1})
    await sim.control("PATCH", "/_sim/settings", {"speed": 1.0, "job_seconds": 0.3})
    bodies = [slash_payload(acct, str(gw.session_id), "imagine", {"prompt": f"q{i}"}) for i in range(3)]
    for b in bodies:
        await _post(sim, b)
    queued = await gw.wait_for(
        "MESSAGE_CREATE", lambda d: d["embeds"] and d["embeds"][0]["title"] == "Job queued"
    )
    full = await gw.wait_for(
        "MESSAGE_CREATE", lambda d: d["embeds"] and d["embeds"][0]["title"] == "Queue full"
    )
    assert {queued["nonce"], full["nonce"]} == {bodies[1]["nonce"], bodies[2]["nonce"]}
    await gw.wait_for(
        "MESSAGE_CREATE", lambda d: d["content"] == f"**q1** - <@{acct['userId']}> (fast)", within=5
    )


async def test_captcha_opens_iframe_modal(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    await sim.fault(acct["token"], "captcha", on=True)
    body = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "x"})
    await _post(sim, body)
    iframe = await gw.wait_for("INTERACTION_IFRAME_MODAL_CREATE")
    assert iframe["title"] == "Action required to continue" and iframe["nonce"] == body["nonce"]
    assert iframe["custom_id"].startswith("MJ::iframe::") and iframe["application"]["id"]


async def test_delay_and_reorder_events(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    await sim.fault(acct["token"], "reorder_events", count=1)
    body = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "swap"})
    await _post(sim, body)
    await gw.wait_for("INTERACTION_CREATE")
    names = [e["t"] for e in gw.events if e["t"].startswith("INTERACTION_")]
    assert names == ["INTERACTION_SUCCESS", "INTERACTION_CREATE"]
    await sim.fault(acct["token"], "delay_events", seconds=0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await sim.fault(acct["token"], "heartbeat_request")  # ops are not delayed; dispatches are
    slow = slash_payload(acct, str(gw.session_id), "imagine", {"prompt": "slow"})
    await _post(sim, slow)
    await gw.wait_for("INTERACTION_SUCCESS", lambda d: d["nonce"] == slow["nonce"])
    assert loop.time() - t0 >= 0.3


async def test_upload_message_cdn_reaction_seed_and_dm(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    token, cid = acct["token"], acct["channelId"]
    status, slots, _ = await sim.rest(
        "POST",
        f"/channels/{cid}/attachments",
        token,
        json={"files": [{"id": "0", "filename": "a.png", "file_size": 3}]},
    )
    assert status == 200 and "upload_id=" in slots["attachments"][0]["upload_url"]
    async with sim.http.put(slots["attachments"][0]["upload_url"], data=b"abc") as resp:
        assert resp.status == 200
    att = [{"id": "0", "filename": "a.png", "uploaded_filename": slots["attachments"][0]["upload_filename"]}]
    status, msg, _ = await sim.rest(
        "POST", f"/channels/{cid}/messages", token, json={"content": "up", "attachments": att}
    )
    async with sim.http.get(msg["attachments"][0]["url"]) as resp:
        assert await resp.read() == b"abc"
    final = await _imagine(sim, gw, "seeded")
    async with sim.http.get(final["attachments"][0]["url"]) as resp:
        first = await resp.read()
    assert first.startswith(b"\x89PNG") and len(first) == final["attachments"][0]["size"]
    status, _, _ = await sim.rest(
        "PUT", f"/channels/{cid}/messages/{final['id']}/reactions/%E2%9C%89%EF%B8%8F/%40me", token
    )
    assert status == 204
    dm = await gw.wait_for("MESSAGE_CREATE", lambda d: d["channel_id"] == acct["dmChannels"]["midjourney"])
    lines = dm["content"].split("\n")
    assert lines[0] == "**seeded**" and lines[1].startswith("**Job ID**: ") and lines[2].split()[-1].isdigit()
    status, channel, _ = await sim.rest(
        "POST", "/users/@me/channels", token, json={"recipients": ["936929561302675456"]}
    )
    assert status == 200 and channel["id"] == acct["dmChannels"]["midjourney"]
    status, history, _ = await sim.rest("GET", f"/channels/{cid}/messages?limit=2", token)
    assert history[0]["id"] == final["id"]


async def test_remix_modal_vary_region_and_counters(sim: RunningSim, gw: RawGateway) -> None:
    acct = sim.accounts[0]
    sid = str(gw.session_id)
    final = await _imagine(sim, gw, "base")
    await sim.control("PATCH", f"/_sim/accounts/{acct['userId']}", {"remix": True})
    v1 = next(c for c in button_ids(final) if "variation::1" in c)
    await _post(sim, click_payload(acct, sid, final, v1))
    modal = await gw.wait_for("INTERACTION_MODAL_CREATE")
    assert (
        modal["custom_id"].startswith("MJ::RemixModal::")
        and modal["components"][0]["components"][0]["value"] == "base"
    )
    await _post(sim, modal_payload(acct, sid, modal, "base remixed"))
    remixed = await gw.wait_for(
        "MESSAGE_CREATE", lambda d: "Remix (Strong) by" in d["content"] and bool(d["attachments"])
    )
    u2 = next(c for c in button_ids(remixed) if "upsample::2" in c)
    await _post(sim, click_payload(acct, sid, remixed, u2))
    up = await gw.wait_for("MESSAGE_CREATE", lambda d: "Image #2" in d["content"])
    region = next(c for c in button_ids(up) if c.startswith("MJ::Inpaint::"))
    await _post(sim, click_payload(acct, sid, up, region))
    iframe = await gw.wait_for("INTERACTION_IFRAME_MODAL_CREATE")
    async with sim.http.post(
        sim.base_url + "/inpaint/api/submit-job",
        json={
            "customId": iframe["custom_id"].removeprefix("MJ::iframe::"),
            "mask": "AAAA",
            "prompt": "base hat",
            "userId": "0",
            "username": "0",
        },
    ) as resp:
        assert resp.status == 200
    await gw.wait_for(
        "MESSAGE_CREATE", lambda d: "Variations (Region) by" in d["content"] and bool(d["attachments"])
    )
    counters = await sim.counters()
    keys = counters["interactions"]["by_key"]
    assert keys[f"click:{final['id']}:{v1}"] == 1 and counters["interactions"]["duplicate_keys"] == {}
    assert any(k.startswith("modal:MJ::RemixModal::") for k in keys)
    assert counters["interactions"]["by_account"][acct["userId"]] == 5
    await _post(sim, click_payload(acct, sid, final, v1))
    assert f"click:{final['id']}:{v1}" in (await sim.counters())["interactions"]["duplicate_keys"]


async def test_malformed_message_body_gets_400_not_500(sim: RunningSim) -> None:
    acct = sim.accounts[0]
    path = f"/channels/{acct['channelId']}/messages"
    headers = {"Content-Type": "application/json"}
    status, body, _ = await sim.rest("POST", path, acct["token"], data=b"{not json", headers=headers)
    assert status == 400 and body["code"] == 50109
    status, body, _ = await sim.rest("POST", path, acct["token"], data=b"[1, 2]", headers=headers)
    assert status == 400
