"""Hostile URLs, end to end: every route that takes a URL refuses internal addresses (code 4 at the
door, or a failed task when only the fetch can tell), and never connects to them.

"Never a fetch" is proven by real listeners on internal addresses the stack's ``url_guard.allow``
does not list (127.0.0.2, and 127.0.0.1 on a port of its own): each counts the connections it
accepts. The allow-list holds exactly the simulator and the hook receiver (`e2e_support.Stack`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e_support import Stack, data_url, tiny_png
from trap import Trap

PNG = data_url(tiny_png(71))


@pytest.fixture
async def traps() -> AsyncIterator[tuple[Trap, Trap]]:
    other, loopback = Trap("127.0.0.2"), Trap("127.0.0.1")
    await other.start()
    await loopback.start()
    try:
        yield other, loopback
    finally:
        await other.stop()
        await loopback.stop()
    assert (other.connections, loopback.connections) == (0, 0), "an internal address was fetched"


def pin() -> dict[str, Any]:
    return {"accountFilter": {"instanceId": "a0"}}


async def test_internal_urls_get_code_4_on_every_route_that_takes_one(
    stack: Stack, traps: tuple[Trap, Trap]
) -> None:
    other, loopback = traps
    internal = [
        (f"http://127.0.0.2:{other.port}/x.png", "host 127.0.0.2 is loopback"),
        (f"http://127.0.0.1:{loopback.port}/x.png", "host 127.0.0.1 is loopback"),
        (f"http://[::1]:{loopback.port}/x.png", "host ::1 is loopback"),
        (f"http://2130706433:{loopback.port}/x.png", "host 2130706433 is loopback"),
        ("http://169.254.169.254/latest/meta-data/", "is cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "is a cloud metadata service"),
        ("http://10.1.2.3/x.png", "host 10.1.2.3 is private"),
        ("http://100.64.0.1/x.png", "is shared (CGNAT)"),
        ("gopher://127.0.0.2:70/x", "gopher"),
    ]

    def routes(url: str) -> list[tuple[str, dict[str, Any]]]:
        hook = {"notifyHook": url}
        return [
            ("/mj/submit/imagine", {"prompt": "a cat", **hook}),
            ("/mj/submit/imagine", {"prompt": f"{url} a cat"}),
            ("/mj/submit/imagine", {"prompt": f"a cat --sref {url}"}),
            ("/mj/submit/shorten", {"prompt": "a cat", **hook}),
            ("/mj/submit/blend", {"base64Array": [PNG, data_url(tiny_png(72))], **hook}),
            ("/mj/submit/describe", {"link": url}),
            ("/mj/submit/describe", {"base64": PNG, **hook}),
            ("/mj/insight-face/swap", {"sourceUrl": url, "targetBase64": PNG}),
            ("/mj/insight-face/swap", {"sourceBase64": PNG, "targetUrl": url}),
            ("/mj/insight-face/swap", {"sourceBase64": PNG, "targetBase64": data_url(tiny_png(73)), **hook}),
            ("/mj/submit/action", {"taskId": "1", "customId": "MJ::JOB::upsample::1::x", **hook}),
            ("/mj/submit/change", {"taskId": "1", "action": "UPSCALE", "index": 1, **hook}),
            ("/mj/submit/simple-change", {"content": "1 U1", **hook}),
            ("/mj/submit/modal", {"taskId": "1", "prompt": "a cat", **hook}),
        ]

    for url, reason in internal:
        for path, body in routes(url):
            if url.startswith("gopher") and "prompt" in body and url in body["prompt"]:
                continue  # not an http(s) URL: Midjourney reads it as words, nothing to fetch
            reply = await stack.post(path, {**body, **pin()})
            assert reply["code"] == 4, (path, body, reply)
            if url.startswith("gopher"):
                assert "http" in reply["description"], (path, reply)  # a scheme error either way
            else:
                assert reason in reply["description"], (path, body, reply)
                assert "/x.png" not in reply["description"] and "meta-data" not in reply["description"]


async def test_names_that_resolve_to_internal_addresses_fail_the_task_without_a_fetch(
    stack: Stack, traps: tuple[Trap, Trap]
) -> None:
    _, loopback = traps
    url = f"http://localhost:{loopback.port}/x.png"  # a name: only its lookup shows it is loopback
    cases = [
        ("/mj/insight-face/swap", {"sourceBase64": PNG, "targetUrl": url}, "image link"),
        ("/mj/insight-face/swap", {"sourceUrl": url, "targetBase64": PNG}, "image link"),
        ("/mj/submit/describe", {"link": url}, "image link"),
        ("/mj/submit/imagine", {"prompt": f"{url} a cat in the snow"}, "image prompt"),
    ]
    for path, body, what in cases:
        reply = await stack.post(path, {**body, **pin()})
        assert reply["code"] in (1, 22), (path, reply)
        task = await stack.wait_task(str(reply["result"]))
        assert task["status"] == "FAILURE", (path, task)
        reason = task["failReason"]
        assert reason.startswith(f"{what} refused: ") or reason.startswith("refused: "), reason
        assert re.search(r"localhost resolves to (127\.0\.0\.1|::1) \(loopback, not in url_", reason), reason
        assert "x.png" not in reason


async def test_a_hook_to_an_internal_name_is_accepted_then_given_up_and_recorded(
    stack: Stack, traps: tuple[Trap, Trap]
) -> None:
    _, loopback = traps
    hook = f"http://localhost:{loopback.port}/hook?token=secret"
    reply = await stack.post("/mj/submit/imagine", {"prompt": "a fox on a hill", "notifyHook": hook, **pin()})
    assert reply["code"] in (1, 22), reply
    task = await stack.wait_task(
        str(reply["result"]), ("SUCCESS",), check=lambda t: bool(t["properties"].get("notifyHookError"))
    )
    error = task["properties"]["notifyHookError"]
    assert error.startswith("refused: "), error
    assert re.search(r"localhost resolves to (127\.0\.0\.1|::1) \(loopback", error) and "secret" not in error


async def test_a_swap_link_that_is_not_an_image_fails_the_task(stack: Stack) -> None:
    # the simulator is on the allow-list: the fetch happens, and its answer (JSON) is refused
    health = f"http://127.0.0.1:{stack.mjsim_port}/_sim/health"
    reply = await stack.post("/mj/insight-face/swap", {"sourceBase64": PNG, "targetUrl": health, **pin()})
    task = await stack.wait_task(str(reply["result"]))
    assert task["status"] == "FAILURE", task
    assert task["failReason"].endswith("is not a PNG, JPEG, WebP or GIF image"), task["failReason"]


async def test_a_redirect_to_an_internal_address_is_refused(stack: Stack, traps: tuple[Trap, Trap]) -> None:
    other, _ = traps
    stack.receiver.modes["to-internal"] = f"redirect http://127.0.0.2:{other.port}/x.png"
    allowed = stack.receiver.url("to-internal")  # the hook receiver is on the allow-list
    reply = await stack.post("/mj/insight-face/swap", {"sourceBase64": PNG, "targetUrl": allowed, **pin()})
    task = await stack.wait_task(str(reply["result"]))
    assert task["status"] == "FAILURE", task
    assert "host 127.0.0.2 is loopback (not in url_guard.allow)" in task["failReason"], task["failReason"]
    assert stack.receiver.attempts.get("to-internal") == 1  # the allowed hop was fetched, not the next


async def test_the_simulator_cdn_stays_reachable_through_the_allow_list(stack: Stack) -> None:
    reply = await stack.post("/mj/submit/imagine", {"prompt": "a lighthouse at dusk", **pin()})
    grid = await stack.wait_task(str(reply["result"]))
    assert grid["status"] == "SUCCESS", grid
    image = grid["imageUrl"]
    for path, body in [
        ("/mj/insight-face/swap", {"sourceBase64": PNG, "targetUrl": image}),
        ("/mj/submit/describe", {"link": image}),
    ]:
        reply = await stack.post(path, {**body, **pin()})
        task = await stack.wait_task(str(reply["result"]))
        assert task["status"] == "SUCCESS", (path, task)
