"""Every action of the API reference, end to end: web -> Redis -> bridge -> mjsim -> workers -> hook."""

from __future__ import annotations

import asyncio
from typing import Any

from e2e_support import Stack, button_ids, data_url, find_button, pin, press, run, submit, tiny_png

GRID = [f"MJ::JOB::upsample::{i}::" for i in range(1, 5)] + [
    f"MJ::JOB::variation::{i}::" for i in range(1, 5)
]


async def press_modal(
    stack: Stack,
    parent: dict[str, Any],
    custom_id: str,
    modal: dict[str, Any],
    *,
    account: str = "a0",
    enable_remix: bool = False,
) -> dict[str, Any]:
    extra = {"enableRemix": True} if enable_remix else {}
    task_id = await submit(
        stack, "/mj/submit/action", {"taskId": parent["id"], "customId": custom_id, **extra}, expect=(21,)
    )
    waiting = await stack.fetch(task_id)
    assert waiting is not None and waiting["status"] == "MODAL", waiting
    reply = await stack.post("/mj/submit/modal", {"taskId": task_id, **modal})
    assert reply["code"] in (1, 22), reply
    task = await stack.wait_task(task_id)
    assert task["status"] == "SUCCESS", task
    await stack.wait_hook(task_id, "SUCCESS")
    return task


def assert_grid(task: dict[str, Any]) -> None:
    ids = button_ids(task)
    for prefix in GRID:
        assert any(b.startswith(prefix) for b in ids), (prefix, ids)
    assert any(b.startswith("MJ::JOB::reroll::0::") for b in ids), ids
    assert task["imageUrl"], task


async def test_imagine_grid_buttons_and_hooks(stack: Stack) -> None:
    mj, niji = await asyncio.gather(
        run(
            stack,
            "/mj/submit/imagine",
            {"prompt": "a fox in a field of tulips", "base64Array": [data_url(tiny_png(1))], **pin("a0")},
        ),
        run(
            stack, "/mj/submit/imagine", {"prompt": "a niji cat girl", "botType": "NIJI_JOURNEY", **pin("a0")}
        ),
    )
    assert_grid(mj)
    assert_grid(niji)
    assert mj["properties"].get("imageUrls"), mj["properties"]
    hooks = stack.hooks_for(mj["id"])
    statuses = [h["status"] for h in hooks]
    assert (statuses[-1] == "SUCCESS" and "SUBMITTED" in statuses) or "IN_PROGRESS" in statuses, statuses
    revisions = [h.get("revision", 0) for h in hooks]
    assert revisions == sorted(revisions)


async def test_upscales_variations_and_reroll(stack: Stack) -> None:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": "a lighthouse in a storm", **pin("a0")})
    presses = [find_button(grid, prefix) for prefix in GRID] + [find_button(grid, "MJ::JOB::reroll::")]
    results = await asyncio.gather(*(press(stack, grid, custom_id) for custom_id in presses))
    for result in results[:4]:
        assert result["action"] == "UPSCALE"
        assert any("Inpaint" in b or "Outpaint" in b for b in button_ids(result)), button_ids(result)
    for result in results[4:]:
        assert_grid(result)


async def test_single_image_actions(stack: Stack) -> None:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": "an old castle on a hill", **pin("a0")})
    upscaled = await press(stack, grid, find_button(grid, "MJ::JOB::upsample::1::"))
    simple = [
        "MJ::JOB::high_variation::1::",
        "MJ::JOB::low_variation::1::",
        "MJ::JOB::upsample_v",  # subtle
        "MJ::Outpaint::50::1::",
        "MJ::Outpaint::75::1::",
        "MJ::JOB::pan_left::1::",
        "MJ::JOB::pan_right::1::",
        "MJ::JOB::pan_up::1::",
        "MJ::JOB::pan_down::1::",
    ]
    ids = button_ids(upscaled)
    customs = [find_button(upscaled, p) for p in simple]
    creative = next(b for b in ids if "_creative" in b)
    customs.append(creative)
    results = await asyncio.gather(*(press(stack, upscaled, c) for c in customs))
    # Each result went to the task of its own button (press() already waited for SUCCESS).
    expected = ["VARIATION", "VARIATION", "UPSCALE", "ZOOM", "ZOOM", "PAN", "PAN", "PAN", "PAN", "UPSCALE"]
    assert [(r["action"], r["customId"]) for r in results] == list(zip(expected, customs, strict=True))
    assert len({r["properties"]["messageId"] for r in results}) == len(results)
    zoom, region = await asyncio.gather(
        press_modal(
            stack, upscaled, find_button(upscaled, "MJ::CustomZoom::"), {"prompt": "an old castle --zoom 1.5"}
        ),
        press_modal(
            stack,
            upscaled,
            find_button(upscaled, "MJ::Inpaint::"),
            {"prompt": "a dragon on the tower", "maskBase64": data_url(tiny_png(9))},
        ),
    )
    assert_grid(zoom)
    assert_grid(region)


async def test_remix_mode_opens_the_modal(stack: Stack) -> None:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": "a quiet harbour", **pin("a1")})
    remixed = await press_modal(
        stack,
        grid,
        find_button(grid, "MJ::JOB::variation::2::"),
        {"prompt": "a busy harbour at noon"},
        enable_remix=True,  # without it the broker answers the remix dialog itself (remix_auto_submit)
    )
    assert_grid(remixed)
    assert "busy harbour" in (
        remixed.get("promptEn") or remixed.get("prompt") or remixed["properties"].get("finalPrompt", "")
    )


async def test_describe_then_pick_a_prompt(stack: Stack) -> None:
    described = await run(stack, "/mj/submit/describe", {"base64": data_url(tiny_png(3)), **pin("a0")})
    picked = await press_modal(stack, described, find_button(described, "MJ::Job::PicReader::1"), {})
    assert_grid(picked)


async def test_blend_two_and_five_images(stack: Stack) -> None:
    two, five = await asyncio.gather(
        run(
            stack, "/mj/submit/blend", {"base64Array": [data_url(tiny_png(i)) for i in (10, 11)], **pin("a0")}
        ),
        run(
            stack,
            "/mj/submit/blend",
            {
                "base64Array": [data_url(tiny_png(i)) for i in range(20, 25)],
                "dimensions": "PORTRAIT",
                **pin("a0"),
            },
        ),
    )
    assert_grid(two)
    assert_grid(five)


async def test_shorten_then_pick_a_prompt(stack: Stack) -> None:
    shortened = await run(
        stack,
        "/mj/submit/shorten",
        {"prompt": "a very very detailed intricate painting of a cat", **pin("a0")},
    )
    picked = await press_modal(stack, shortened, find_button(shortened, "MJ::Job::PromptAnalyzer::1"), {})
    assert_grid(picked)


async def test_shorten_show_details_answers_with_the_token_analysis(stack: Stack) -> None:
    shortened = await run(
        stack, "/mj/submit/shorten", {"prompt": "an extremely ornate detailed baroque dog", **pin("a0")}
    )
    details = await press(stack, shortened, find_button(shortened, "MJ::Job::PromptAnalyzer::ShowDetails"))
    # The bot's answer is a new message replying to the shortened one, with the token analysis.
    assert details["action"] == "SHORTEN", details
    assert "## Important tokens" in details["properties"]["finalPrompt"], details["properties"]
    assert details["properties"]["messageId"] != shortened["properties"]["messageId"]
    assert details["properties"]["referencedMessageId"] == shortened["properties"]["messageId"]


async def test_swap_face(stack: Stack) -> None:
    swapped = await run(
        stack,
        "/mj/insight-face/swap",
        {"sourceBase64": data_url(tiny_png(30)), "targetBase64": data_url(tiny_png(31)), **pin("a0")},
    )
    assert swapped["imageUrl"], swapped


async def test_image_seed(stack: Stack) -> None:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": "a seed of a tree", **pin("a0")})
    response = await stack.api.get(f"/mj/task/{grid['id']}/image-seed")
    reply = response.json()
    assert reply["code"] == 1 and str(reply["result"]).isdigit(), reply
    stored = await stack.fetch(grid["id"])
    assert stored is not None and stored["seed"] == reply["result"]
