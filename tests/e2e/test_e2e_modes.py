"""Speed modes and remix behind relays, end to end: web -> Redis -> bridge -> mjsim -> workers.

a0: FAST/RELAX/TURBO, remix off; a1: remix on (answers the remix dialog itself); a2: runs out of fast
hours. mjsim counts every job by the mode it really ran in (`jobs_by_mode` of the account).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e_support import Stack, find_button, pin

ALL_MODES = ["FAST", "RELAX", "TURBO"]


@pytest.fixture(scope="module")
async def modes_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("e2e-modes")
    running = Stack(
        root,
        accounts=3,
        account_overrides={
            0: {"modes": ALL_MODES},
            1: {"modes": ALL_MODES, "remix": True},
            2: {"modes": ALL_MODES},
        },
    )
    try:
        await running.start()
        await running.sim_control(
            "PATCH", f"/_sim/accounts/{running.sim_accounts[1]['token']}", {"remix": True}
        )
        yield running
    finally:
        await running.close()


async def sim_account(stack: Stack, index: int) -> dict[str, Any]:
    data: dict[str, Any] = await stack.sim_control(
        "GET", f"/_sim/accounts/{stack.sim_accounts[index]['token']}"
    )
    return data


async def ran(stack: Stack, index: int) -> dict[str, int]:
    """Jobs the sim account ran, by mode."""
    return dict((await sim_account(stack, index))["settings"]["jobs_by_mode"])


async def submit(stack: Stack, path: str, body: dict[str, Any], *, expect: tuple[int, ...] = (1, 22)) -> str:
    reply = await stack.post(path, body)
    assert reply["code"] in expect, reply
    return str(reply["result"])


async def finish(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    task = await stack.wait_task(await submit(stack, path, body))
    assert task["status"] == "SUCCESS", task
    return task


async def account_view(stack: Stack, account: str) -> dict[str, Any]:
    response = await stack.api.get(f"/mj/account/{account}/fetch")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_relax_prefix_runs_relaxed(modes_stack: Stack) -> None:
    before = await ran(modes_stack, 0)
    task = await finish(modes_stack, "/mj-relax/mj/submit/imagine", {"prompt": "a lazy cat", **pin("a0")})
    assert (task["mode"], task["requestMode"]) == ("RELAX", "RELAX")
    assert task["properties"]["finalPrompt"].endswith("--relax")
    assert (task["prompt"], task["promptEn"]) == ("a lazy cat", "a lazy cat --relax")
    after = await ran(modes_stack, 0)
    assert after.get("relax", 0) == before.get("relax", 0) + 1, (before, after)
    assert after.get("fast", 0) == before.get("fast", 0)


async def test_turbo_prefix_runs_turbo(modes_stack: Stack) -> None:
    before = await ran(modes_stack, 0)
    task = await finish(modes_stack, "/mj-turbo/mj/submit/imagine", {"prompt": "a quick hare", **pin("a0")})
    assert (task["mode"], task["requestMode"]) == ("TURBO", "TURBO")
    after = await ran(modes_stack, 0)
    assert after.get("turbo", 0) == before.get("turbo", 0) + 1, (before, after)


async def test_prompt_flag_and_default_mode(modes_stack: Stack) -> None:
    flagged = await finish(modes_stack, "/mj/submit/imagine", {"prompt": "a slow snail --relax", **pin("a0")})
    plain = await finish(modes_stack, "/mj/submit/imagine", {"prompt": "a plain owl", **pin("a0")})
    assert (flagged["mode"], flagged["requestMode"]) == ("RELAX", "RELAX")
    assert (plain["mode"], plain["requestMode"]) == ("FAST", "FAST")  # default_mode


async def test_button_on_relax_task_switches_the_account_first(modes_stack: Stack) -> None:
    # A fast grid and its V1 leave the account in fast mode (the bridge switched it if it had to).
    fast_grid = await finish(modes_stack, "/mj/submit/imagine", {"prompt": "a fast fox", **pin("a0")})
    fast_v1 = await finish(
        modes_stack,
        "/mj/submit/action",
        {"taskId": fast_grid["id"], "customId": find_button(fast_grid, "MJ::JOB::variation::1::")},
    )
    assert fast_v1["mode"] == "FAST"
    assert (await sim_account(modes_stack, 0))["settings"]["mode"] == "fast"

    relax_grid = await finish(
        modes_stack, "/mj-relax/mj/submit/imagine", {"prompt": "a calm fox", **pin("a0")}
    )
    before = await ran(modes_stack, 0)
    relax_v1, relax_u1 = await asyncio.gather(
        finish(
            modes_stack,
            "/mj/submit/action",
            {"taskId": relax_grid["id"], "customId": find_button(relax_grid, "MJ::JOB::variation::1::")},
        ),
        # at the same time a FAST press on the fast grid: the switches must not interleave
        finish(
            modes_stack,
            "/mj/submit/action",
            {"taskId": fast_grid["id"], "customId": find_button(fast_grid, "MJ::JOB::upsample::1::")},
        ),
    )
    assert (relax_v1["mode"], relax_v1["requestMode"]) == ("RELAX", "RELAX")
    assert relax_u1["requestMode"] == "FAST"
    after = await ran(modes_stack, 0)
    # the V1 ran relaxed although the account was in fast mode, and the U1 ran fast
    assert after.get("relax", 0) == before.get("relax", 0) + 1, (before, after)
    assert after.get("fast", 0) == before.get("fast", 0) + 1, (before, after)
    # and back to fast for a last FAST press (whichever of the two above went last)
    fast_u2 = await finish(
        modes_stack,
        "/mj/submit/action",
        {"taskId": fast_grid["id"], "customId": find_button(fast_grid, "MJ::JOB::upsample::2::")},
    )
    assert fast_u2["mode"] == "FAST"
    assert (await sim_account(modes_stack, 0))["settings"]["mode"] == "fast"
    interactions = (await modes_stack.counters())["interactions"]
    assert [k for k in interactions["by_key"] if ":relax:" in k], "no /relax command reached mjsim"
    assert len([k for k in interactions["by_key"] if k.startswith("cmd:midjourney:fast:")]) >= 2
    # switching back and forth runs no job: no interaction counts as sent twice
    assert not interactions["duplicate_keys"], interactions["duplicate_keys"]


async def test_remix_account_completes_v1_without_a_modal_call(modes_stack: Stack) -> None:
    grid = await finish(modes_stack, "/mj/submit/imagine", {"prompt": "a quiet harbour", **pin("a1")})
    v1 = find_button(grid, "MJ::JOB::variation::1::")
    reply = await modes_stack.post("/mj/submit/action", {"taskId": grid["id"], "customId": v1})
    assert reply["code"] == 1, reply
    child = await modes_stack.wait_task(str(reply["result"]))
    assert child["status"] == "SUCCESS" and child["action"] == "VARIATION", child
    keys = (await modes_stack.counters())["interactions"]["by_key"]
    # the bridge answered the remix dialog itself, with the parent's prompt
    remix_submits = [k for k in keys if k.startswith("modal:MJ::RemixModal") and "a quiet harbour" in k]
    assert remix_submits, list(keys)
    parked = await modes_stack.post(
        "/mj/submit/action", {"taskId": grid["id"], "customId": v1, "enableRemix": True}
    )
    assert parked["code"] == 21, parked


async def test_out_of_fast_hours_keeps_serving_relax(modes_stack: Stack) -> None:
    await modes_stack.sim_control(
        "PATCH", f"/_sim/accounts/{modes_stack.sim_accounts[2]['token']}", {"fast_exhausted": True}
    )
    hit = await modes_stack.wait_task(
        await submit(modes_stack, "/mj-fast/mj/submit/imagine", {"prompt": "a spent fox", **pin("a2")}),
        statuses=("FAILURE",),
    )
    assert "Credits exhausted" in hit["failReason"], hit

    async with asyncio.timeout(15):
        while not (view := await account_view(modes_stack, "a2"))["properties"]["relaxOnly"]:  # noqa: ASYNC110 - polls the API, bounded by the timeout
            await asyncio.sleep(0.1)
    assert view["status"] == "ONLINE" and "relax only" in view["statusReason"], view

    relaxed = await finish(
        modes_stack, "/mj-relax/mj/submit/imagine", {"prompt": "a patient fox", **pin("a2")}
    )
    assert relaxed["mode"] == "RELAX" and relaxed["instanceId"] == "a2"
    # FAST pinned to a2: code 3 with the reason (admission's status cache may take a second to see it)
    async with asyncio.timeout(10):
        while True:
            reply = await modes_stack.post(
                "/mj-fast/mj/submit/imagine", {"prompt": "an eager fox", **pin("a2")}
            )
            if reply["code"] == 3:
                break
            failed = await modes_stack.wait_task(str(reply["result"]), statuses=("FAILURE",))
            assert "fast hours" in failed["failReason"], failed
    assert "fast hours" in reply["description"] and "RELAX" in reply["description"], reply
    # a task that asked for no mode runs relaxed there
    asked_nothing = await finish(modes_stack, "/mj/submit/imagine", {"prompt": "an easy fox", **pin("a2")})
    assert asked_nothing["requestMode"] == "RELAX" and asked_nothing["mode"] == "RELAX"

    # a FAST press on a2 has no other account to go to
    pressed = await modes_stack.post(
        "/mj-fast/mj/submit/action",
        {"taskId": relaxed["id"], "customId": find_button(relaxed, "MJ::JOB::upsample::1::")},
    )
    assert pressed["code"] == 3 and "fast hours" in pressed["description"], pressed

    # unpinned FAST goes to another account
    moved = await finish(modes_stack, "/mj-fast/mj/submit/imagine", {"prompt": "an eager hare"})
    assert moved["instanceId"] != "a2" and moved["mode"] == "FAST", moved
    # and the account was switched to relax by itself
    assert (await sim_account(modes_stack, 2))["settings"]["mode"] == "relax"
