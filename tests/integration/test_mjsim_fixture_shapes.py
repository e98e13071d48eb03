"""Every recorded fixture kind has an mjsim counterpart with the same keys/types and matching content."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mjsim_support import RawGateway, button_ids, click_payload, modal_payload, slash_payload, start_mjsim

FIXTURES = [json.loads(line) for line in (Path(__file__).parents[1] / "fixtures" / "mj-events.jsonl").open()]

_MODE = r"\((fast|relaxed|turbo)(, stealth)?\)"
_ACTION = r"(?:(Variations|Remix|Upscaled|Zoom Out|Pan \w+)(?: \(\w+\))? by )?"
REGEXES = {
    "start": re.compile(r"^(?:Upscaling image #\d with )?\*\*(.+)\*\*(?: - <@\w+> \(Waiting to start\))?$"),
    "progress": re.compile(rf"^\*\*(.+)\*\* - {_ACTION}<@\w+> \((?:\d+%|paused)\) {_MODE}$"),
    "done": re.compile(rf"^\*\*(.+)\*\* - {_ACTION}<@\d+>(?: .*)? {_MODE}$"),
    "upscale": re.compile(r"^\*\*(.+)\*\* - Image #(\d) <@\d+>$"),
}


def _kind(fx: dict[str, Any]) -> str:
    exp = fx["expect"]
    if exp["kind"] == "done":
        if exp.get("action") == "UPSCALE" and "Image #" in fx["d"]["content"]:
            return "upscale"
        action = exp.get("action")
        return {"PAN": "pan", "ZOOM": "zoom", "UPSCALE": "upscaled", "VARIATION": "variation"}.get(
            action if isinstance(action, str) else "VARIATION" if action else "", "imagine"
        )
    if exp["kind"] == "error":
        return "error:" + exp["error_title"]
    return str(exp["kind"])


_HASH = re.compile(r"[0-9a-f-]{36}")


def _rows(msg: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The message's buttons row by row, job hashes replaced by ``H``."""
    return [
        [{**c, "custom_id": _HASH.sub("H", c["custom_id"])} for c in r["components"]]
        for r in msg.get("components") or []
    ]


def _button_problems(fixture: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Where our buttons differ from the recorded ones.

    A fixture whose buttons were recorded whole (every one has its ``style``) must match row for row:
    same ids, labels, emoji and style, nothing more. Some fixtures keep only the ids of the first
    buttons (rebuilt from other projects' test fakes); those must open the same rows of ours. Most
    rebuilt envelopes carry no buttons at all, which says nothing about the real message's.
    """
    theirs, mine = _rows(fixture), _rows(ours)
    if not theirs:
        return []
    if all("style" in c for r in theirs for c in r):
        return [] if theirs == mine else [f"buttons {theirs} != {mine}"]
    ids = [[c["custom_id"] for c in r] for r in theirs]
    my_ids = [[c["custom_id"] for c in r] for r in mine]
    return [
        f"row {n}: {row} does not open {my_ids[n] if n < len(my_ids) else None}"
        for n, row in enumerate(ids)
        if n >= len(my_ids) or my_ids[n][: len(row)] != row
    ]


def _shape(fixture: Any, ours: Any, path: str = "d") -> list[str]:
    """Keys of the fixture missing in ours, or with a different JSON type (nulls in fixtures are skipped)."""
    problems: list[str] = []
    if isinstance(fixture, dict):
        if not isinstance(ours, dict):
            return [f"{path}: dict expected"]
        for k, v in fixture.items():
            # Reply-only keys are absent on non-replies; fixtures mix both.
            if (
                k in ("webhook_id", "interaction", "referenced_message", "message_reference")
                and k not in ours
            ):
                continue
            if k not in ours:
                problems.append(f"{path}.{k} missing")
            elif v is not None:
                problems += _shape(v, ours[k], f"{path}.{k}")
    elif isinstance(fixture, list):
        if not isinstance(ours, list):
            return [f"{path}: list expected"]
        if fixture and not ours:
            return [f"{path}: empty"]
        if fixture:
            problems += _shape(fixture[0], ours[0], f"{path}[0]")
    elif type(fixture) is not type(ours) and not (isinstance(fixture, int) and isinstance(ours, int)):
        problems.append(f"{path}: {type(fixture).__name__} vs {type(ours).__name__}")
    return problems


@pytest.fixture(scope="module")
async def produced() -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
    """Run one of every flow and collect what mjsim sent, by fixture kind."""
    sim = await start_mjsim(accounts=1, progress_steps=2)
    acct = sim.accounts[0]
    gw = await RawGateway.connect(sim.http, sim.gateway_url, compress="zlib-stream")
    await gw.identify(acct["token"])
    sid = str(gw.session_id)
    out: dict[str, list[dict[str, Any]]] = {}

    async def post(body: dict[str, Any]) -> None:
        status, resp, _ = await sim.rest("POST", "/interactions", acct["token"], json=body)
        assert status == 204, resp

    async def final(pred: Any) -> dict[str, Any]:
        return await gw.wait_for("MESSAGE_CREATE", lambda d: bool(d["attachments"]) and pred(d["content"]))

    await post(slash_payload(acct, sid, "imagine", {"prompt": "glass https://x.io/a.png"}))
    out["start"] = [await gw.wait_for("MESSAGE_CREATE", lambda d: "Waiting to start" in d["content"])]
    out["progress"] = [await gw.wait_for("MESSAGE_UPDATE", lambda d: "%)" in d["content"])]
    grid = await final(lambda c: c.endswith("(fast)"))
    out["imagine"] = [grid]
    ids = button_ids(grid)
    await post(click_payload(acct, sid, grid, next(i for i in ids if "variation::1" in i)))
    out["variation"] = [await final(lambda c: "Variations (Strong) by" in c)]
    await post(click_payload(acct, sid, grid, next(i for i in ids if "upsample::1" in i)))
    up = await final(lambda c: "Image #1" in c)
    out["upscale"] = [up]
    ups = button_ids(up)
    await post(click_payload(acct, sid, up, next(i for i in ups if "_2x_subtle" in i)))
    out["upscaled"] = [await final(lambda c: "Upscaled (Subtle) by" in c)]
    await post(click_payload(acct, sid, up, next(i for i in ups if "Outpaint::50" in i)))
    out["zoom"] = [await final(lambda c: "Zoom Out by" in c)]
    await post(click_payload(acct, sid, up, next(i for i in ups if "pan_left" in i)))
    out["pan"] = [await final(lambda c: "Pan Left by" in c)]
    await sim.control(
        "PATCH", f"/_sim/accounts/{acct['token']}", {"remix": True, "mode": "relax", "stealth": True}
    )
    await post(click_payload(acct, sid, grid, next(i for i in ids if "variation::2" in i)))
    modal = await gw.wait_for("INTERACTION_MODAL_CREATE")
    await post(modal_payload(acct, sid, modal, "glass remixed"))
    out["variation"].append(
        await final(lambda c: "Remix (Strong) by" in c and c.endswith("(relaxed, stealth)"))
    )
    await post(slash_payload(acct, sid, "describe", {"link": "https://example.com/cat.png"}))
    out["describe"] = [await gw.wait_for("MESSAGE_CREATE", lambda d: d["interaction"]["name"] == "describe")]
    await post(
        slash_payload(acct, sid, "shorten", {"prompt": "appdash, draftsmanship, commission, ethereal"})
    )
    shortened = await gw.wait_for("MESSAGE_CREATE", lambda d: d["interaction"]["name"] == "shorten")
    # The recorded shorten result is the one "Show Details" posts (token weights and bar chart).
    await post(click_payload(acct, sid, shortened, "MJ::Job::PromptAnalyzer::ShowDetails"))
    out["shorten"] = [
        await gw.wait_for(
            "MESSAGE_CREATE",
            lambda d: d["interaction_metadata"].get("interacted_message_id") == shortened["id"],
        )
    ]
    for err in ("queue_full", "invalid_parameter", "action_needed"):
        await sim.fault(acct["token"], "fail_next_job", error=err)
        await post(slash_payload(acct, sid, "imagine", {"prompt": "e"}))
    await sim.control("PATCH", f"/_sim/accounts/{acct['token']}", {"concurrency": 0})
    await post(slash_payload(acct, sid, "imagine", {"prompt": "waits"}))
    for title in ("Queue full", "Invalid parameter", "Action needed to continue", "Job queued"):
        msg = await gw.wait_for(
            "MESSAGE_CREATE", lambda d, t=title: bool(d["embeds"]) and d["embeds"][0].get("title") == t
        )
        out["queued" if title == "Job queued" else f"error:{title}"] = [msg]
    yield out
    await gw.close()
    await sim.close()


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["id"] for f in FIXTURES])
async def test_fixture_has_matching_mjsim_event(
    fixture: dict[str, Any], produced: dict[str, list[dict[str, Any]]]
) -> None:
    kind = _kind(fixture)
    assert kind in produced, f"mjsim produced nothing for {kind}"
    ours = produced[kind][0]
    assert _shape(fixture["d"], ours) == []
    regex = REGEXES[kind if kind in ("start", "progress", "upscale") else "done"]
    if fixture["d"]["content"] and kind not in ("describe", "shorten") and not kind.startswith("error"):
        assert regex.search(fixture["d"]["content"]), fixture["d"]["content"]
        for ev in produced[kind]:
            assert regex.search(ev["content"]), ev["content"]
    if fixture["d"].get("embeds"):
        theirs, mine = fixture["d"]["embeds"][0], ours["embeds"][0]
        assert theirs.get("title") == mine.get("title")
        desc_re = re.compile(r"1️⃣ .+\n\n2️⃣ .+\n\n3️⃣ .+\n\n4️⃣ .+", re.S)
        if kind in ("describe", "shorten"):
            assert desc_re.search(theirs["description"]) and desc_re.search(mine["description"])
        if kind == "shorten":
            assert mine["description"].startswith("## Important tokens\n")
            assert "\n## Shortened prompts\n" in mine["description"] and "5️⃣ " in mine["description"]
    assert _button_problems(fixture["d"], ours) == []
