"""Gateway behaviour seen by a raw aiohttp websocket client: compression, heartbeats, RESUME, faults."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from mjsim_support import RawGateway, RunningSim, slash_payload, start_mjsim


@pytest.fixture
async def sim() -> AsyncIterator[RunningSim]:
    running = await start_mjsim(accounts=2)
    yield running
    await running.close()


async def _connect(sim: RunningSim, compress: str | None = None, index: int = 0) -> RawGateway:
    gw = await RawGateway.connect(sim.http, sim.gateway_url, compress=compress)
    await gw.identify(sim.accounts[index]["token"])
    return gw


@pytest.mark.parametrize("compress", [None, "zlib-stream", "zstd-stream"])
async def test_gateway_hello_ready_and_heartbeat_per_compression(
    sim: RunningSim, compress: str | None
) -> None:
    gw = await RawGateway.connect(sim.http, sim.gateway_url, compress=compress)
    hello = await gw.recv()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
    await gw.send(1, None)
    assert (await gw.recv())["op"] == 11
    ready = await gw.identify(sim.accounts[0]["token"])
    assert ready["merged_presences"] == {"guilds": [], "friends": []}
    r = next(e for e in gw.events if e["t"] == "READY")
    assert r["s"] == 1 and r["d"]["resume_gateway_url"] == sim.gateway_url
    assert r["d"]["user"]["id"] == sim.accounts[0]["userId"]
    assert {c["recipients"][0]["id"] for c in r["d"]["private_channels"]} >= {"936929561302675456"}
    await gw.close()


async def test_identify_before_hello_is_accepted(sim: RunningSim) -> None:
    ws = await sim.http.ws_connect(sim.gateway_url + "?v=9&encoding=json")
    await ws.send_str(json.dumps({"op": 2, "d": {"token": sim.accounts[0]["token"]}}))
    kinds = [json.loads((await ws.receive(timeout=5)).data).get("t") for _ in range(3)]
    assert kinds == [None, "READY", "READY_SUPPLEMENTAL"]
    await ws.close()


async def test_bad_token_closes_4004(sim: RunningSim) -> None:
    gw = await RawGateway.connect(sim.http, sim.gateway_url)
    await gw.send(2, {"token": "wrong"})
    with pytest.raises(ConnectionError):
        while True:
            await gw.recv()
    assert gw.ws.close_code == 4004


async def test_resume_replays_missed_dispatches(sim: RunningSim) -> None:
    account = sim.accounts[0]
    gw = await _connect(sim)
    session_id, seq = gw.session_id, gw.seq
    await sim.fault(account["token"], "drop", code=4000)
    with pytest.raises(ConnectionError):
        while True:
            await gw.recv()
    status, _, _ = await sim.rest(
        "POST",
        "/interactions",
        account["token"],
        json=slash_payload(account, str(session_id), "imagine", {"prompt": "missed"}),
    )
    assert status == 204
    # The job runs while detached; its events are buffered for the session.
    async with asyncio.timeout(5):
        while (await sim.counters())["jobs"]["completed"] < 1:  # noqa: ASYNC110 - polls another process' state
            await asyncio.sleep(0.01)
    gw2 = await RawGateway.connect(sim.http, sim.gateway_url)
    await gw2.send(6, {"token": account["token"], "session_id": session_id, "seq": seq})
    await gw2.wait_for("RESUMED", within=5)
    replayed = [e for e in gw2.events if e["t"] != "RESUMED"]
    assert replayed and replayed[0]["s"] == seq + 1
    assert [e["s"] for e in replayed] == list(range(seq + 1, seq + 1 + len(replayed)))
    assert any(e["t"] == "INTERACTION_CREATE" for e in replayed)
    final = await gw2.wait_for("MESSAGE_CREATE", lambda d: d["content"].endswith("(fast)"))
    assert final["content"].startswith("**missed**")
    await gw2.close()


async def test_resume_of_unknown_session_gets_invalid_session(sim: RunningSim) -> None:
    gw = await RawGateway.connect(sim.http, sim.gateway_url)
    await gw.recv()
    await gw.send(6, {"token": sim.accounts[0]["token"], "session_id": "nope", "seq": 3})
    assert await gw.recv() == {"op": 9, "d": False}
    await gw.close()


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("reconnect", {}, {"op": 7, "d": None}),
        ("invalid_session", {"resumable": True}, {"op": 9, "d": True}),
        ("heartbeat_request", {}, {"op": 1, "d": None}),
    ],
)
async def test_op_faults_reach_the_client(
    sim: RunningSim, kind: str, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    gw = await _connect(sim, "zlib-stream")
    result = await sim.fault(sim.accounts[0]["token"], kind, **params)
    assert result["connections"] == 1
    payload = await gw.recv()
    while payload.get("op") == 10:
        payload = await gw.recv()
    assert payload == expected
    await gw.close()


async def test_drop_without_code_aborts_the_connection(sim: RunningSim) -> None:
    gw = await _connect(sim)
    await sim.fault(sim.accounts[0]["token"], "drop")
    with pytest.raises((ConnectionError, aiohttp.ClientError)):
        while True:
            await gw.recv()
    # No close frame came: the client saw the TCP connection go away (a closed one would say 1000).
    assert gw.ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE


async def test_interaction_events_go_only_to_the_invoking_session(sim: RunningSim) -> None:
    account = sim.accounts[0]
    a = await _connect(sim)
    b = await _connect(sim)
    other = await _connect(sim, index=1)  # another account, in another guild and channel
    status, _, _ = await sim.rest(
        "POST",
        "/interactions",
        account["token"],
        json=slash_payload(account, str(a.session_id), "imagine", {"prompt": "only a"}),
    )
    assert status == 204
    await a.wait_for("INTERACTION_SUCCESS")
    start_b = await b.wait_for("MESSAGE_CREATE")  # channel messages reach every session
    assert start_b["content"].startswith("**only a**")
    await b.wait_for("MESSAGE_DELETE")
    assert not [e for e in b.events if e["t"].startswith("INTERACTION_")]
    # A heartbeat ACK follows whatever was queued for `other` before it: the job's messages, had any
    # been routed there, have arrived by now.
    await other.send(1, None)
    while (await other.recv()).get("op") != 11:
        pass
    assert not [e for e in other.events if e["t"] in ("MESSAGE_CREATE", "MESSAGE_DELETE")]
    for gw in (a, b, other):
        await gw.close()
