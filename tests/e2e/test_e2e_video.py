"""Video end to end (issue 12 part 3): /mj/submit/video, its extend, and the video buttons, through mjsim.

Every finished video's `videoUrl` is fetched from mjsim's CDN and must be an mp4 that PyAV decodes.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
import httpx
from e2e_support import Stack, button_ids, data_url, find_button, pin, press, run, tiny_png


async def assert_playable(url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200, url
    assert response.headers["content-type"] == "video/mp4"
    body = response.content
    assert body[4:8] == b"ftyp", body[:16]
    with av.open(io.BytesIO(body)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 1


async def assert_video(task: dict[str, Any], count: int) -> None:
    assert task["videoUrl"], task
    urls = [v["url"] for v in task["videoUrls"]]
    assert len(urls) == count and urls[0] == task["videoUrl"], task["videoUrls"]
    await asyncio.gather(*(assert_playable(u) for u in urls))


async def upscaled(stack: Stack, prompt: str, account: str) -> tuple[dict[str, Any], dict[str, Any]]:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": prompt, **pin(account)})
    return grid, await press(stack, grid, find_button(grid, "MJ::JOB::upsample::1::"))


async def test_video_from_url_and_base64_then_extend(stack: Stack) -> None:
    grid, _ = await upscaled(stack, "a lighthouse at dusk", "a0")
    from_url, from_b64 = await asyncio.gather(
        # one of our own images: used in the prompt as it is, never downloaded
        run(
            stack,
            "/mj/submit/video",
            {
                "prompt": "waves roll in",
                "image": grid["imageUrl"],
                "motion": "high",
                "batchSize": 2,
                **pin("a0"),
            },
        ),
        run(
            stack,
            "/mj/submit/video",
            {"prompt": "a red kite", "image": data_url(tiny_png(5)), "loop": True, **pin("a1")},
        ),
    )
    assert from_url["action"] == from_b64["action"] == "VIDEO"
    await asyncio.gather(assert_video(from_url, 2), assert_video(from_b64, 4))
    sent = from_url["properties"]["finalPrompt"]
    assert grid["imageUrl"].split("?")[0] in sent, sent
    assert "--video 1" in sent and "--motion high" in sent and "--bs 2" in sent, sent
    assert "--loop" in from_b64["properties"]["finalPrompt"], from_b64["properties"]
    assert [b for b in button_ids(from_url) if "video_virtual_upscale" in b] == [
        f"MJ::JOB::video_virtual_upscale::{i}::{from_url['properties']['messageHash']}" for i in (1, 2)
    ]

    # a0 runs the extend's two clicks straight; a1 has remix on, so the bot asks for the prompt first
    plain, remixed = await asyncio.gather(
        run(
            stack,
            "/mj/submit/video",
            {"action": "extend", "taskId": from_url["id"], "index": 1, "prompt": "the sea calms"},
        ),
        run(
            stack,
            "/mj/submit/video",
            {
                "action": "extend",
                "taskId": from_b64["id"],
                "index": 3,
                "prompt": "kite flies",
                "motion": "high",
            },
        ),
    )
    # without remix the extend keeps the video's own prompt (and its --bs 2)
    for extended, parent, count in ((plain, from_url, 2), (remixed, from_b64, 4)):
        assert extended["action"] == "VIDEO_EXTEND" and extended["parentId"] == parent["id"], extended
        # a click like the others: it runs in the parent's mode (the bridge switches the account to it)
        assert extended["requestMode"] == parent["requestMode"] == "FAST", extended
        await assert_video(extended, count)
        assert extended["properties"]["messageHash"] != parent["properties"]["messageHash"]
    assert "kite flies" in remixed["properties"]["finalPrompt"], remixed["properties"]
    assert "--motion high" in remixed["properties"]["finalPrompt"], remixed["properties"]


async def test_animate_buttons_and_video_buttons_through_action(stack: Stack) -> None:
    _, image = await upscaled(stack, "a paper boat", "a0")
    high, low = await asyncio.gather(
        press(stack, image, find_button(image, "MJ::JOB::animate_high::1::")),
        press(stack, image, find_button(image, "MJ::JOB::animate_low::1::")),
    )
    for video, motion in ((high, "high"), (low, "low")):
        assert video["action"] == "VIDEO" and video["parentId"] == image["id"], video
        assert f"--motion {motion}" in video["properties"]["finalPrompt"], video["properties"]
        await assert_video(video, 4)
    # U2 of the set brings one video up, with its Extend buttons; Extend runs a new video job
    one = await press(stack, high, find_button(high, "MJ::JOB::video_virtual_upscale::2::"))
    assert one["action"] == "UPSCALE" and one["properties"]["index"] == 2, one
    await assert_video(one, 1)
    extended = await press(stack, one, find_button(one, "MJ::JOB::animate_low_extend::2::"))
    assert extended["action"] == "VIDEO_EXTEND", extended
    await assert_video(extended, 4)


async def test_bad_video_requests_are_refused_at_the_door(stack: Stack) -> None:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": "a quiet pond", **pin("a0")})
    video = await run(
        stack,
        "/mj/submit/video",
        {"prompt": "ripples", "image": grid["imageUrl"], "batchSize": 1, **pin("a0")},
    )
    before = (await stack.counters())["interactions"]["total"]
    newest = (await stack.api.get("/mj/task/list")).json()[0]["id"]
    image = data_url(tiny_png(2))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "no frame"}, "start frame"),
        ({"prompt": "x", "image": image, "motion": "medium"}, "motion"),
        ({"prompt": "x", "image": image, "batchSize": 3}, "batchSize"),
        ({"prompt": "x", "image": image, "videoType": "vid_9"}, "videoType"),
        ({"prompt": "x", "image": "not base64 at all"}, "image"),
        ({"prompt": "x", "action": "extend", "taskId": grid["id"], "index": 0}, "not a video"),
        ({"prompt": "x", "action": "extend", "taskId": video["id"], "index": 1}, "index must be 0 to 0"),
        ({"prompt": "x", "action": "extend", "taskId": video["id"], "index": -1}, "index"),
        ({"prompt": "x", "action": "extend", "taskId": video["id"]}, "index"),
        ({"prompt": "x", "action": "extend", "taskId": "404404", "index": 0}, "not found"),
        ({"prompt": "x", "action": "shrink", "taskId": video["id"], "index": 0}, "action"),
    ]
    for body, words in cases:
        reply = await stack.post("/mj/submit/video", body)
        assert reply["code"] == 4 and words in reply["description"], (body, reply)
    assert (await stack.api.get("/mj/task/list")).json()[0]["id"] == newest
    assert (await stack.counters())["interactions"]["total"] == before


async def test_a_start_frame_from_someone_elses_link_is_downloaded_and_uploaded(stack: Stack) -> None:
    grid = await run(stack, "/mj/submit/imagine", {"prompt": "a snail on a leaf", **pin("a0")})
    # a link of the client's (the hook receiver stands in for their server) that redirects to an image:
    # the bridge fetches it through the URL guard and uploads the bytes, as for base64
    stack.receiver.modes["frames/snail.png"] = f"redirect {grid['imageUrl']}"
    video = await run(
        stack,
        "/mj/submit/video",
        {
            "prompt": "the snail slides",
            "image": stack.hook_url("frames/snail.png"),
            "batchSize": 1,
            **pin("a0"),
        },
    )
    assert stack.receiver.attempts["frames/snail.png"] >= 1
    sent = video["properties"]["finalPrompt"]
    assert stack.hook_url("frames/snail.png") not in sent and grid["imageUrl"].split("?")[0] not in sent, sent
    assert sent.split()[0].strip("<>").startswith(f"http://127.0.0.1:{stack.mjsim_port}/attachments/"), sent
    await assert_video(video, 1)
    refused = await stack.post("/mj/submit/video", {"prompt": "x", "image": "http://127.0.0.1:9/x.png"})
    assert refused["code"] == 4 and "image" in refused["description"], refused
