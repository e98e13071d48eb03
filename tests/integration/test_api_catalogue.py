"""The rest of the button catalogue at the API door (issue 12 part 4): Make Square, the old models'
upscales, describe's "Imagine all", cancelling a running task, and the web-only edits/retexture."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from broker import keys
from broker.bridge_calls import BridgeCall, BridgeReply
from broker.models import Button, Task, TaskAction, TaskProperties, TaskStatus
from broker.store import TaskStore

H = "7d2c1a9e-aaaa-bbbb-cccc-ddddeeeeffff"
PROMPTS = ["a red fox, watercolor", "a fox in snow, photo", "fox portrait, ink", "a fox cub, 3d render"]
DESCRIBED = "\n\n".join(f"{n}\ufe0f\u20e3 {p}" for n, p in enumerate(PROMPTS, 1))


@pytest.fixture
def store(redis: aioredis.Redis) -> TaskStore:
    return TaskStore(redis, retention_seconds=3600)


async def _finished(
    store: TaskStore, task_id: str, *, action: TaskAction, buttons: list[str], **props: Any
) -> Task:
    task = Task(id=task_id, action=action, prompt="a fox", prompt_en="a fox", submit_time=1, instance_id="a1")
    await store.create(task)
    await store.transition(task_id, TaskStatus.SUBMITTED, progress="0%", start_time=2)
    update = await store.transition(
        task_id,
        TaskStatus.SUCCESS,
        progress="100%",
        finish_time=3,
        properties=TaskProperties(
            discord_instance_id="1200000000000000001", message_id="9001", message_hash=H, flags=0, **props
        ),
        buttons=[Button(custom_id=c) for c in buttons],
    )
    assert update.task is not None
    return update.task


async def _running(store: TaskStore, task_id: str, **props: Any) -> Task:
    task = Task(id=task_id, action=TaskAction.IMAGINE, prompt="a fox", submit_time=1, instance_id="a1")
    await store.create(task)
    update = await store.transition(
        task_id, TaskStatus.SUBMITTED, progress="0%", start_time=2, properties=TaskProperties(**props)
    )
    assert update.task is not None
    return update.task


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def _bridge(redis: aioredis.Redis, seen: list[BridgeCall], *, ok: bool) -> None:
    """Stands in for the bridge holding a1: answers one call (the real one is tested end to end)."""
    _, raw = await redis.brpop([keys.bridge_rpc("a1")], timeout=10)
    call = msgspec.json.decode(raw, type=BridgeCall)
    seen.append(call)
    reply = BridgeReply(id=call.id, ok=ok, result=call.task_id, error=None if ok else "Discord said no")
    await redis.lpush(keys.bridge_rpc_reply(call.id), msgspec.json.encode(reply))


@pytest.mark.parametrize("path", ["/mj/submit/edits", "/mj/submit/retexture", "/mj-fast/mj/submit/edits"])
async def test_edits_and_retexture_answer_code_4_naming_the_web_account(
    client: httpx.AsyncClient, path: str
) -> None:
    reply = await _post(client, path, {"prompt": "make it blue", "image": "data:image/png;base64,AAAA"})
    assert reply["code"] == 4
    assert "midjourney.com web account" in reply["description"]
    assert "Discord accounts" in reply["description"]


async def test_make_square_and_the_old_upscales_are_actions(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    buttons = [
        f"MJ::Outpaint::100::1::{H}::SOLO",
        f"MJ::JOB::upsample_v5_2x::1::{H}::SOLO",
        f"MJ::JOB::upsample_v5_4x::1::{H}::SOLO",
        f"MJ::JOB::upsample_v6_2x_subtle::1::{H}::SOLO",
        f"MJ::JOB::upsample_v6_2x_creative::1::{H}::SOLO",
    ]
    parent = await _finished(store, "1700000000000101", action=TaskAction.UPSCALE, buttons=buttons)
    actions = []
    for custom_id in buttons:
        reply = await _post(client, "/mj/submit/action", {"taskId": parent.id, "customId": custom_id})
        assert reply["code"] in (1, 22), reply  # core 3: the fourth and fifth wait
        child = await store.get(reply["result"])
        assert child is not None and child.custom_id == custom_id and child.status == TaskStatus.NOT_START
        actions.append(child.action)
    assert actions == ["ZOOM", "UPSCALE", "UPSCALE", "UPSCALE", "UPSCALE"]


async def test_imagine_all_submits_one_imagine_per_described_prompt(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    picks = [f"MJ::Job::PicReader::{n}" for n in range(1, 5)]
    parent = await _finished(
        store,
        "1700000000000102",
        action=TaskAction.DESCRIBE,
        buttons=[*picks, "MJ::Picread::Retry", "MJ::Job::PicReader::all"],
        final_prompt=DESCRIBED,
    )
    reply = await _post(
        client,
        "/mj/submit/action",
        {"taskId": parent.id, "customId": "MJ::Job::PicReader::all", "state": "s"},
    )
    assert reply["code"] == 22, reply  # core 3: the fourth waits
    ids = reply["result"].split(",")
    assert ids == reply["properties"]["taskIds"] and len(ids) == 4
    children = [await store.get(i) for i in ids]
    for n, child in enumerate(children, 1):
        assert child is not None
        # submitted at once (the bridge answers the modal with the prompt), never parked in MODAL
        assert (child.action, child.status, child.custom_id) == ("IMAGINE", "NOT_START", picks[n - 1])
        assert child.prompt == PROMPTS[n - 1] and child.properties.index == n
        assert child.properties.modal_kind == "prompt" and child.parent_id == parent.id and child.state == "s"


async def test_imagine_all_without_described_prompts_is_code_4(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    parent = await _finished(
        store, "1700000000000103", action=TaskAction.DESCRIBE, buttons=["MJ::Job::PicReader::all"]
    )
    reply = await _post(
        client, "/mj/submit/action", {"taskId": parent.id, "customId": "MJ::Job::PicReader::all"}
    )
    assert reply["code"] == 4 and "no described prompts" in reply["description"]


async def test_cancel_of_a_running_task_presses_cancel_job_through_the_bridge(
    client: httpx.AsyncClient, store: TaskStore, redis: aioredis.Redis
) -> None:
    task = await _running(
        store,
        "1700000000000104",
        progress_message_id="9100",
        cancel_custom_id=f"MJ::CancelJob::ByJobid::{H}",
    )
    seen: list[BridgeCall] = []
    bridge = asyncio.create_task(_bridge(redis, seen, ok=True))
    reply = await _post(client, f"/mj/task/{task.id}/cancel", {})
    await bridge
    assert reply["code"] == 1 and reply["result"] == task.id and "cancelled" in reply["description"]
    assert (seen[0].kind, seen[0].task_id) == ("cancel", task.id)
    stored = await store.get(task.id)
    # still running: the bot's "(Stopped)" edit is what fails it (see the end-to-end test)
    assert stored is not None and stored.status == "SUBMITTED"
    assert stored.properties.cancel_requested_time is not None


async def test_cancel_that_the_bridge_could_not_press_is_forgotten(
    client: httpx.AsyncClient, store: TaskStore, redis: aioredis.Redis
) -> None:
    task = await _running(
        store, "1700000000000105", progress_message_id="9100", cancel_custom_id=f"MJ::CancelJob::ByJobid::{H}"
    )
    seen: list[BridgeCall] = []
    bridge = asyncio.create_task(_bridge(redis, seen, ok=False))
    reply = await _post(client, f"/mj/task/{task.id}/cancel", {})
    await bridge
    assert reply["code"] == 9 and "Discord said no" in reply["description"]
    stored = await store.get(task.id)
    assert stored is not None and stored.properties.cancel_requested_time is None


async def test_cancel_before_the_bot_showed_its_button_is_code_4(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    task = await _running(store, "1700000000000106")
    reply = await _post(client, f"/mj/task/{task.id}/cancel", {})
    assert reply["code"] == 4 and "Cancel Job" in reply["description"]
