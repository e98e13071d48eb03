"""The rest of the button catalogue end to end, every process real (issue 12 part 4): Make Square and the
v5 upscales under an upscaled image, describe's "Imagine all", and cancelling a running job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from e2e_support import Stack, button_ids, data_url, find_button, pin, press, run, tiny_png


async def test_make_square_and_v5_upscales_under_an_upscaled_image(stack: Stack) -> None:
    grid = await run(
        stack, "/mj/submit/imagine", {"prompt": "a tall glass tower --ar 2:3 --v 5", **pin("a0")}
    )
    upscaled = await press(stack, grid, find_button(grid, "MJ::JOB::upsample::1::"))
    square = find_button(upscaled, "MJ::Outpaint::100::1::")
    two, four = (
        find_button(upscaled, "MJ::JOB::upsample_v5_2x::"),
        find_button(upscaled, "MJ::JOB::upsample_v5_4x::"),
    )
    results = await asyncio.gather(*(press(stack, upscaled, c) for c in (square, two, four)))
    assert [(r["action"], r["customId"]) for r in results] == [
        ("ZOOM", square),
        ("UPSCALE", two),
        ("UPSCALE", four),
    ]
    assert "--ar 1:1" in results[0]["properties"]["finalPrompt"], results[0]["properties"]
    assert len({r["properties"]["messageId"] for r in results}) == 3
    # a square image is offered no Make Square
    assert not any(b.startswith("MJ::Outpaint::100::") for b in button_ids(results[0]))


async def test_imagine_all_runs_every_described_prompt(stack: Stack) -> None:
    described = await run(stack, "/mj/submit/describe", {"base64": data_url(tiny_png(11)), **pin("a0")})
    all_button = find_button(described, "MJ::Job::PicReader::all")
    reply = await stack.post(
        "/mj/submit/action",
        {"taskId": described["id"], "customId": all_button, "notifyHook": stack.hook_url("catalogue")},
    )
    assert reply["code"] in (1, 22), reply
    ids = reply["result"].split(",")
    assert len(ids) == 4 and ids == reply["properties"]["taskIds"]
    tasks = await asyncio.gather(*(stack.wait_task(i, within=30) for i in ids))
    prompts = described["properties"]["finalPrompt"]
    for n, task in enumerate(tasks, 1):
        assert (task["status"], task["action"]) == ("SUCCESS", "IMAGINE"), task
        assert task["customId"] == f"MJ::Job::PicReader::{n}"
        assert task["prompt"] and task["prompt"] in prompts
        assert any(b.startswith("MJ::JOB::upsample::1::") for b in button_ids(task))
    assert len({t["properties"]["messageId"] for t in tasks}) == 4


@contextlib.asynccontextmanager
async def slow_jobs(stack: Stack) -> AsyncIterator[None]:
    """mjsim jobs that take a minute (the shared stack runs them instantly), for as long as needed."""
    before = await stack.sim_control("GET", "/_sim/settings")
    await stack.sim_control("PATCH", "/_sim/settings", {"speed": 1.0, "job_seconds": 60.0})
    try:
        yield
    finally:
        await stack.sim_control(
            "PATCH", "/_sim/settings", {"speed": before["speed"], "job_seconds": before["job_seconds"]}
        )


async def test_cancel_stops_a_running_job_and_fails_it_cancelled(stack: Stack) -> None:
    async with slow_jobs(stack):
        reply = await stack.post(
            "/mj/submit/imagine",
            {"prompt": "a very slow sunrise", "notifyHook": stack.hook_url("catalogue"), **pin("a0")},
        )
        assert reply["code"] == 1, reply
        task_id = reply["result"]
        running = await stack.wait_task(
            task_id,
            ("SUBMITTED", "IN_PROGRESS"),
            check=lambda t: bool(t["properties"].get("cancelCustomId")),
        )
        assert running["properties"]["cancelCustomId"].startswith("MJ::CancelJob::ByJobid::")
        cancelled = await stack.post(f"/mj/task/{task_id}/cancel", {})
        assert cancelled["code"] == 1, cancelled
        task = await stack.wait_task(task_id, within=15)
    assert (task["status"], task["failReason"]) == ("FAILURE", "cancelled"), task
    hook = await stack.wait_hook(task_id, "FAILURE")
    assert hook["failReason"] == "cancelled"
    again = await stack.post(f"/mj/task/{task_id}/cancel", {})
    assert again["code"] == 4, again
    # the slot is free again: a next job on the account runs
    await run(stack, "/mj/submit/imagine", {"prompt": "a quick sunrise", **pin("a0")})
