"""/action, /modal, /change, /simple-change, /cancel, /image-seed and the bridge calls."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from broker import keys
from broker.bridge_calls import BridgeCall, BridgeReply
from broker.models import Button, Task, TaskAction, TaskProperties, TaskStatus
from broker.queues import AccountQueues
from broker.store import TaskStore

H = "4c3a5e2f-1111-2222-3333-444455556666"
PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
GRID = [
    *(f"MJ::JOB::upsample::{n}::{H}" for n in range(1, 5)),
    *(f"MJ::JOB::variation::{n}::{H}" for n in range(1, 5)),
    f"MJ::JOB::reroll::0::{H}::SOLO",
    f"MJ::CustomZoom::{H}",
    f"MJ::Inpaint::1::{H}::SOLO",
    f"MJ::BOOKMARK::{H}",
]


@pytest.fixture
def store(redis: aioredis.Redis) -> TaskStore:
    return TaskStore(redis, retention_seconds=3600)


async def make_parent(
    store: TaskStore, task_id: str = "1700000000000001", *, status: TaskStatus = TaskStatus.SUCCESS, **kw: Any
) -> Task:
    """A finished parent task, written through the store as the bridge and workers would."""
    task = Task(
        id=task_id,
        action=kw.pop("action", TaskAction.IMAGINE),
        prompt="a cat",
        prompt_en="a cat",
        submit_time=1,
        instance_id="a1",
        properties=TaskProperties(
            discord_instance_id="1200000000000000001", message_hash=kw.pop("message_hash", H)
        ),
    )
    await store.create(task)
    if status == TaskStatus.NOT_START:
        return task
    await store.transition(task_id, TaskStatus.SUBMITTED, progress="0%", start_time=2)
    if status == TaskStatus.SUBMITTED:
        return task
    props = TaskProperties(
        discord_instance_id="1200000000000000001",
        message_id="9001",
        message_hash=task.properties.message_hash,
        flags=0,
        final_prompt="a cat --v 6",
    )
    update = await store.transition(
        task_id,
        TaskStatus.SUCCESS,
        progress="100%",
        finish_time=3,
        properties=props,
        buttons=[Button(custom_id=c) for c in kw.pop("buttons", GRID)],
        **kw,
    )
    assert update.task is not None
    return update.task


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_upscale_action_creates_a_child_on_the_parents_account(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    parent = await make_parent(store)
    reply = await _post(
        client, "/mj/submit/action", {"taskId": parent.id, "customId": GRID[1], "state": "st"}
    )
    assert reply["code"] == 1 and reply["properties"]["discordInstanceId"] == "1200000000000000001"
    child = await store.get(reply["result"])
    assert child is not None and child.action == "UPSCALE" and child.parent_id == parent.id
    assert child.description == f"/up {parent.id} U2" and child.state == "st"
    assert child.properties.referenced_message_id == "9001" and child.properties.index == 2
    assert child.custom_id == GRID[1] and child.prompt == "a cat --v 6"


async def test_action_errors(client: httpx.AsyncClient, store: TaskStore) -> None:
    parent = await make_parent(store)
    running = await make_parent(store, "1700000000000002", status=TaskStatus.SUBMITTED)
    unknown = await _post(client, "/mj/submit/action", {"taskId": "999", "customId": GRID[0]})
    assert unknown["code"] == 4 and "not found" in unknown["description"]
    foreign = await _post(
        client, "/mj/submit/action", {"taskId": parent.id, "customId": "MJ::JOB::upsample::1::zzz"}
    )
    assert foreign["code"] == 4 and "not a button" in foreign["description"]
    busy = await _post(client, "/mj/submit/action", {"taskId": running.id, "customId": GRID[0]})
    assert busy["code"] == 4 and "SUBMITTED" in busy["description"]
    remix = await _post(
        client, "/mj/submit/action", {"taskId": parent.id, "customId": GRID[4], "enableRemix": True}
    )
    assert remix["code"] == 4 and "remix is off" in remix["description"]


async def test_bookmark_answers_the_parent_id_and_creates_nothing(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    parent = await make_parent(store)
    reply = await _post(client, "/mj/submit/action", {"taskId": parent.id, "customId": f"MJ::BOOKMARK::{H}"})
    assert (reply["code"], reply["result"]) == (1, parent.id)


async def test_custom_zoom_modal_flow_21_then_modal_then_1(
    client: httpx.AsyncClient, store: TaskStore, queues: AccountQueues
) -> None:
    parent = await make_parent(store)
    parked = await _post(
        client, "/mj/submit/action", {"taskId": parent.id, "customId": f"MJ::CustomZoom::{H}"}
    )
    assert parked["code"] == 21 and parked["description"] == "Waiting for window confirm"
    assert parked["properties"]["finalPrompt"] == "a cat --v 6" and parked["properties"]["remix"] is True
    task_id = parked["result"]
    fetched = (await client.get(f"/mj/task/{task_id}/fetch")).json()
    assert fetched["status"] == "MODAL" and fetched["action"] == "ZOOM"
    assert (await queues.loads(["a1"]))["a1"] == (0, 0)  # a MODAL task takes no slot

    bad = await _post(client, "/mj/submit/modal", {"taskId": task_id, "prompt": "a cat --zoom 3"})
    assert bad["code"] == 4 and "--zoom" in bad["description"]
    done = await _post(client, "/mj/submit/modal", {"taskId": task_id, "prompt": "a cat --zoom 1.5"})
    assert (done["code"], done["result"]) == (1, task_id)
    task = await store.get(task_id)
    assert task is not None and task.status == "NOT_START" and task.prompt == "a cat --zoom 1.5"
    again = await _post(client, "/mj/submit/modal", {"taskId": task_id, "prompt": "a cat --zoom 1.5"})
    assert again["code"] == 4 and "MODAL" in again["description"]


async def test_vary_region_modal_needs_a_png_mask(client: httpx.AsyncClient, store: TaskStore) -> None:
    parent = await make_parent(store)
    for i in range(3):  # fill a1's slots, so the modal answer queues
        await _post(client, "/mj/submit/imagine", {"prompt": f"x{i}"})
    parked = await _post(client, "/mj/submit/action", {"taskId": parent.id, "customId": GRID[10]})
    assert parked["code"] == 21
    missing = await _post(client, "/mj/submit/modal", {"taskId": parked["result"]})
    assert missing["code"] == 4 and "maskBase64" in missing["description"]
    queued = await _post(client, "/mj/submit/modal", {"taskId": parked["result"], "maskBase64": PNG_URL})
    assert queued["code"] == 22 and queued["properties"]["numberOfQueues"] == 1
    assert (await store.get_blob(parked["result"], "mask.png") or b"").startswith(b"\x89PNG")


async def test_modal_answer_on_a_full_queue_gives_23_and_stays_modal(
    client: httpx.AsyncClient, store: TaskStore
) -> None:
    parent = await make_parent(store)
    parked = await _post(
        client, "/mj/submit/action", {"taskId": parent.id, "customId": f"MJ::CustomZoom::{H}"}
    )
    for i in range(13):
        await _post(client, "/mj/submit/imagine", {"prompt": f"x{i}"})
    full = await _post(client, "/mj/submit/modal", {"taskId": parked["result"], "prompt": "a --zoom 2"})
    assert full["code"] == 23
    task = await store.get(parked["result"])
    assert task is not None and task.status == "MODAL"
    action = await _post(client, "/mj/submit/action", {"taskId": parent.id, "customId": GRID[0]})
    assert action["code"] == 23


async def test_legacy_change_and_simple_change(client: httpx.AsyncClient, store: TaskStore) -> None:
    parent = await make_parent(store, buttons=GRID[:1])
    up = await _post(client, "/mj/submit/change", {"taskId": parent.id, "action": "UPSCALE", "index": 1})
    child = await store.get(up["result"])
    assert child is not None and child.custom_id == GRID[0] and child.description == f"/up {parent.id} U1"
    # no V3 button on the parent: the customId is built from the message hash
    v3 = await _post(client, "/mj/submit/simple-change", {"content": f"{parent.id} V3"})
    child = await store.get(v3["result"])
    assert (
        child is not None and child.custom_id == f"MJ::JOB::variation::3::{H}" and child.action == "VARIATION"
    )
    rr = await _post(client, "/mj/submit/simple-change", {"content": f"{parent.id} R"})
    assert rr["code"] == 1 and (await store.get(rr["result"])).action == "IMAGINE"  # type: ignore[union-attr]
    bad = await _post(client, "/mj/submit/simple-change", {"content": "nonsense"})
    assert bad["code"] == 4
    no_index = await _post(client, "/mj/submit/change", {"taskId": parent.id, "action": "VARIATION"})
    assert no_index["code"] == 4


async def test_cancel_releases_the_queue_place(
    client: httpx.AsyncClient, store: TaskStore, queues: AccountQueues
) -> None:
    replies = [await _post(client, "/mj/submit/imagine", {"prompt": f"x{i}"}) for i in range(5)]
    started, queued = replies[0]["result"], replies[4]["result"]
    assert (await _post(client, f"/mj/task/{queued}/cancel", {}))["code"] == 1
    task = await store.get(queued)
    assert task is not None and task.status == "CANCEL"
    assert (await queues.loads(["a1"]))["a1"] == (3, 1)
    assert (await _post(client, f"/mj/task/{started}/cancel", {}))["code"] == 1
    assert (await queues.loads(["a1"]))["a1"] == (
        3,
        0,
    )  # the queued one took the freed slot
    await store.transition(replies[1]["result"], TaskStatus.SUBMITTED)
    running = await _post(client, f"/mj/task/{replies[1]['result']}/cancel", {})
    assert running["code"] == 4 and "cannot be cancelled" in running["description"]
    assert (await _post(client, "/mj/task/404/cancel", {}))["code"] == 4


async def _fake_bridge(redis: aioredis.Redis, account_id: str, answer: Any, seen: list[BridgeCall]) -> None:
    _, raw = await redis.brpop([keys.bridge_rpc(account_id)], timeout=10)
    call = msgspec.json.decode(raw, type=BridgeCall)
    seen.append(call)
    reply = BridgeReply(id=call.id, ok=True, result=answer)
    await redis.lpush(keys.bridge_rpc_reply(call.id), msgspec.json.encode(reply))


async def test_image_seed(client: httpx.AsyncClient, store: TaskStore, redis: aioredis.Redis) -> None:
    parent = await make_parent(store)
    seen: list[BridgeCall] = []
    bridge = asyncio.create_task(_fake_bridge(redis, "a1", "636646138", seen))
    reply = (await client.get(f"/mj/task/{parent.id}/image-seed")).json()
    await bridge
    assert (reply["code"], reply["result"]) == (1, "636646138")
    assert seen[0].kind == "seed" and seen[0].task_id == parent.id
    again = (await client.get(f"/mj/task/{parent.id}/image-seed")).json()  # stored: no bridge call
    assert again["result"] == "636646138"
    unknown = await client.get("/mj/task/404/image-seed")
    assert (unknown.status_code, unknown.json()["code"]) == (404, 4)
    running = await make_parent(store, "1700000000000002", status=TaskStatus.SUBMITTED)
    assert (await client.get(f"/mj/task/{running.id}/image-seed")).json()["code"] == 4
    hashless = await make_parent(store, "1700000000000003", message_hash=None)
    assert (await client.get(f"/mj/task/{hashless.id}/image-seed")).json()["code"] == 4


async def test_upload_discord_images_returns_urls(
    client: httpx.AsyncClient, store: TaskStore, redis: aioredis.Redis
) -> None:
    seen: list[BridgeCall] = []
    urls = ["https://cdn.example/a.png"]
    bridge = asyncio.create_task(_fake_bridge(redis, "a1", urls, seen))
    reply = await _post(client, "/mj/submit/upload-discord-images", {"base64Array": [PNG_URL]})
    await bridge
    assert (reply["code"], reply["result"]) == (1, urls)
    assert seen[0].kind == "upload" and seen[0].blob_names == ["0.png"]
    assert (await store.get_blob(seen[0].id, "0.png") or b"").startswith(b"\x89PNG")
    assert (await _post(client, "/mj/submit/upload-discord-images", {"base64Array": []}))["code"] == 4
