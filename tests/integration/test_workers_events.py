"""Gateway events -> task state, through a running worker, real Redis and a real hook receiver."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from workers_support import (
    CHANNEL,
    USER,
    HookReceiver,
    image,
    imagine_events,
    make_settings,
    message,
    push,
    running_worker,
    snowflake,
    submitted_task,
    wait_final,
    wait_task,
)

from broker import keys
from broker.account_status import decode_fact
from broker.models import Task, TaskAction, TaskStatus
from broker.queues import AccountQueues
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from workers.main import WorkerRuntime

JOB = "5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab"


@pytest.fixture
async def worker(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path, receiver: HookReceiver
) -> AsyncIterator[WorkerRuntime]:
    settings = make_settings(redis_server.url, tmp_path, allow=(receiver.address,))
    async with running_worker(settings) as runtime:
        yield runtime


async def test_imagine_runs_from_start_through_progress_to_success_with_buttons(
    store: TaskStore,
    redis: aioredis.Redis,
    worker: WorkerRuntime,
    receiver: HookReceiver,
    tmp_path: Path,
    queues: AccountQueues,
) -> None:
    task, nonce = await submitted_task(store, prompt="a red fox --ar 16:9", hook=receiver.url("fox"))
    start_id, final_id = snowflake(), snowflake()
    events = imagine_events("a red fox --ar 16:9", nonce, JOB, start_id=start_id, final_id=final_id)
    for t, d in events[:3]:
        await push(redis, t, d)
    mid = await wait_task(store, task.id, lambda t: t.progress == "46%")
    assert mid.status == TaskStatus.IN_PROGRESS
    assert mid.image_url is not None and mid.image_url.split("?")[0].endswith(f"{JOB}_grid_0.webp")
    for t, d in events[3:]:
        await push(redis, t, d)

    done = await wait_final(store, task.id)
    assert done.status == TaskStatus.SUCCESS
    assert done.progress == "100%"
    assert done.finish_time is not None and done.finish_time >= (done.start_time or 0)
    assert done.image_url is not None and f"{final_id}/user_a_{JOB}.png" in done.image_url
    assert [b.label or b.emoji for b in done.buttons] == [
        "U1",
        "U2",
        "U3",
        "U4",
        "🔄",
        "V1",
        "V2",
        "V3",
        "V4",
    ]
    assert done.buttons[0].custom_id == f"MJ::JOB::upsample::1::{JOB}"
    props = done.properties
    assert props.final_prompt == "a red fox --ar 16:9"
    assert (props.message_id, props.message_hash, props.progress_message_id) == (final_id, JOB, start_id)
    assert props.flags == 0 and props.discord_instance_id == CHANNEL
    assert props.message_content == f"**a red fox --ar 16:9** - <@{USER}> (fast)"

    # every change from SUBMITTED on reaches the hook, in order, ending with the final revision
    await receiver.wait_for(lambda: any(r.version == done.revision for r in receiver.for_path("fox")))
    versions = [r.version for r in receiver.for_path("fox")]
    assert versions == sorted(versions) and versions[-1] == done.revision
    assert receiver.for_path("fox")[-1].task["status"] == "SUCCESS"
    # the slot is free and the ledger has the row
    assert await queues.running("a1") == []
    await _wait_ledger(tmp_path, task.id, "SUCCESS")


async def _wait_ledger(tmp_path: Path, task_id: str, status: str) -> None:
    async with asyncio.timeout(5):
        while True:
            with sqlite3.connect(tmp_path / "ledger.db") as db:
                row = db.execute("select status from tasks where id = ?", (task_id,)).fetchone()
            if row is not None:
                assert row[0] == status
                return
            await asyncio.sleep(0.02)


async def _grid_parent(store: TaskStore, redis: aioredis.Redis, prompt: str) -> tuple[Task, str]:
    parent, nonce = await submitted_task(store, prompt=prompt)
    final_id = snowflake()
    for t, d in imagine_events(prompt, nonce, JOB, start_id=snowflake(), final_id=final_id):
        await push(redis, t, d)
    done = await wait_final(store, parent.id)
    assert done.status == TaskStatus.SUCCESS
    return done, final_id


async def test_upscale_variation_zoom_pan_results_finish_their_child_tasks(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    prompt = "Pure Chinese female singer on campus, singing in the bar"
    parent, grid_id = await _grid_parent(store, redis, prompt)
    kw: dict[str, Any] = {"prompt": prompt, "parent_id": parent.id}
    upscale, _ = await submitted_task(store, action=TaskAction.UPSCALE, index=1, **kw)
    other_upscale, _ = await submitted_task(store, action=TaskAction.UPSCALE, index=3, **kw)
    variation, v_nonce = await submitted_task(store, action=TaskAction.VARIATION, index=2, **kw)
    zoom, _ = await submitted_task(store, action=TaskAction.ZOOM, **kw)
    pan, _ = await submitted_task(store, action=TaskAction.PAN, **kw)

    # U1: recorded content, matched by the referenced grid message + image index
    up_id = snowflake()
    await push(redis, "MESSAGE_CREATE", _recorded("javamj-image1", up_id, reference=grid_id, img="u1"))
    # V2: the click's INTERACTION_SUCCESS links nonce -> interaction id; the result carries it
    interaction = snowflake()
    await push(redis, "INTERACTION_SUCCESS", {"id": interaction, "nonce": v_nonce})
    var_d = _recorded("javamj-vary-strong", snowflake(), img="v2")
    var_d["interaction_metadata"] = {"id": interaction, "type": 3}
    await push(redis, "MESSAGE_CREATE", var_d)
    # zoom: no ids at all, matched by prompt among the account's running tasks (parameters ignored)
    await push(redis, "MESSAGE_CREATE", _recorded("javamj-zoom-out", snowflake(), img="zoom"))
    # pan: replies to the grid, matched by reference + action
    await push(
        redis, "MESSAGE_CREATE", _recorded("javamj-pan-left", snowflake(), reference=grid_id, img="pan")
    )

    for child, name in ((upscale, "u1"), (variation, "v2"), (zoom, "zoom"), (pan, "pan")):
        done = await wait_final(store, child.id)
        assert done.status == TaskStatus.SUCCESS, child.action
        assert done.image_url is not None and f"_{name}_" in done.image_url
        expected = "Chinese rock singers swing together --ar 3:2" if name == "pan" else prompt
        assert done.properties.final_prompt == expected
    assert (await store.get(other_upscale.id)).status == TaskStatus.SUBMITTED  # type: ignore[union-attr]
    up = await store.get(upscale.id)
    assert up is not None and up.properties.message_id == up_id


def _recorded(case: str, msg_id: str, *, img: str, reference: str | None = None) -> dict[str, Any]:
    from workers_support import fixture

    d = fixture(case, id=msg_id, attachments=image(msg_id, f"user_{img}_{JOB}.png"))
    if reference:
        d["message_reference"] = {"message_id": reference, "channel_id": CHANNEL}
    return d


async def test_describe_shorten_and_blend_results(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    from workers_support import fixture

    describe, d_nonce = await submitted_task(store, prompt=None, action=TaskAction.DESCRIBE)
    shorten, s_nonce = await submitted_task(store, prompt="appdash app", action=TaskAction.SHORTEN)
    blend, b_nonce = await submitted_task(store, prompt=None, action=TaskAction.BLEND)

    # describe: the placeholder binds the message, the edit with the prompts finishes it
    d_id = snowflake()
    placeholder = message(
        "", id=d_id, nonce=d_nonce, interaction={"id": snowflake(), "type": 2, "name": "describe"}
    )
    placeholder["embeds"] = [{"type": "rich", "image": {"url": "https://cdn.example/x.png"}}]
    await push(redis, "MESSAGE_CREATE", placeholder)
    await push(redis, "MESSAGE_UPDATE", fixture("describe-blonde-butterfly-2025", id=d_id))
    # shorten: one message with the nonce
    await push(
        redis, "MESSAGE_CREATE", fixture("shorten-appdash-show-details", id=snowflake(), nonce=s_nonce)
    )
    # blend: start with the nonce (links in the prompt), final without ids -> by prompt
    links = "<https://s.mj.run/abc> <https://s.mj.run/def> --ar 1:1"
    blend_start = message(f"**{links}** - <@{USER}> (Waiting to start)", nonce=b_nonce)
    blend_start["interaction"] = {"id": snowflake(), "type": 2, "name": "blend"}
    await push(redis, "MESSAGE_CREATE", blend_start)
    final_id = snowflake()
    await push(
        redis,
        "MESSAGE_CREATE",
        message(
            f"**{links}** - <@{USER}> (fast)", id=final_id, attachments=image(final_id, f"u_blend_{JOB}.png")
        ),
    )

    d = await wait_final(store, describe.id)
    assert d.status == TaskStatus.SUCCESS
    assert d.properties.final_prompt is not None and d.properties.final_prompt.startswith("1️⃣ A simple, flat")
    assert d.image_url is not None and "1748599984985576.jpg" in d.image_url
    assert [b.custom_id for b in d.buttons][:1] == ["MJ::Job::PicReader::1"]
    s = await wait_final(store, shorten.id)
    assert s.status == TaskStatus.SUCCESS
    assert s.properties.final_prompt is not None and "appdash appdash, toonami" in s.properties.final_prompt
    assert any(b.custom_id.startswith("MJ::Job::PromptAnalyzer") for b in s.buttons)
    b = await wait_final(store, blend.id)
    assert b.status == TaskStatus.SUCCESS and b.action == TaskAction.BLEND
    assert b.properties.message_id == final_id and b.properties.final_prompt == links


async def test_error_embed_fails_the_task_with_title_and_text(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime, tmp_path: Path, queues: AccountQueues
) -> None:
    from workers_support import fixture

    task, nonce = await submitted_task(store, prompt="a cat --q 9", core_size=1)
    queued, _ = await submitted_task(store, prompt="next", core_size=1, submit=False)
    assert await queues.waiting("a1") == [queued.id]
    await push(
        redis, "MESSAGE_CREATE", fixture("err-invalid-parameter-unrecognized", id=snowflake(), nonce=nonce)
    )
    failed = await wait_final(store, task.id)
    assert failed.status == TaskStatus.FAILURE
    assert failed.fail_reason == "[Invalid parameter] Unrecognized parameter(s)"
    assert failed.progress == "" and failed.finish_time is not None
    # the slot goes to the queued task
    async with asyncio.timeout(5):
        while [tid for tid, _ in await queues.running("a1")] != [queued.id]:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
            await asyncio.sleep(0.02)
    await _wait_ledger(tmp_path, task.id, "FAILURE")


async def test_duplicated_and_reordered_events_give_the_same_final_state(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    rng = random.Random(7)
    finals: list[dict[str, Any]] = []
    for round_ in range(6):
        prompt = f"lighthouse at dusk number {round_}"
        task, nonce = await submitted_task(store, prompt=prompt)
        events = imagine_events(prompt, nonce, JOB, start_id=snowflake(), final_id=snowflake())
        if round_ == 0:
            order = events
        else:
            order = events + rng.sample(events, 3)  # duplicates
            rng.shuffle(order)
        for t, d in order:
            await push(redis, t, d)
        await wait_final(store, task.id)
        await _settled(redis)
        final = await store.get(task.id)
        assert final is not None
        finals.append(_comparable(final, prompt))
    assert all(f == finals[0] for f in finals), finals


async def _settled(redis: aioredis.Redis) -> None:
    """Wait until the worker acknowledged every event (late duplicates applied or dropped)."""
    async with asyncio.timeout(5):
        while True:
            groups = [g for stream in keys.EVENTS_STREAMS for g in await redis.xinfo_groups(stream)]
            if all(g["pending"] == 0 and g["lag"] == 0 for g in groups):
                return
            await asyncio.sleep(0.01)


def _comparable(task: Task, prompt: str) -> dict[str, Any]:
    p = task.properties
    return {
        "status": task.status,
        "progress": task.progress,
        "image": (task.image_url or "").rsplit("/", 1)[-1].replace(prompt.split()[0], "P"),
        "buttons": [b.custom_id for b in task.buttons],
        "final_prompt": (p.final_prompt or "").replace(prompt, "P"),
        "hash": p.message_hash,
        "fail": task.fail_reason,
    }


async def test_captcha_fails_the_task_and_is_reported_to_the_accounts_health(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    task, nonce = await submitted_task(store, prompt="a cat")
    await push(
        redis,
        "INTERACTION_IFRAME_MODAL_CREATE",
        {
            "id": snowflake(),
            "nonce": nonce,
            "custom_id": "MJ::iframe::tok",
            "title": "Action required to continue",
            "iframe_path": "/captcha/embedded/x",
            "application": {"id": "936929561302675456"},
        },
    )
    failed = await wait_final(store, task.id)
    assert failed.status == TaskStatus.FAILURE
    assert (
        failed.fail_reason is not None and "captcha" in failed.fail_reason and "human" in failed.fail_reason
    )
    # what it means for the account is the bridge's call: the worker reports the fact, writes no status
    facts = [decode_fact(raw) for raw in await redis.lrange(keys.account_facts("a1"), 0, -1)]
    assert [(f.kind, f.task_id) for f in facts if f is not None] == [("captcha", task.id)]
    assert await redis.exists(keys.account_status("a1")) == 0


async def test_unmatched_events_are_counted_and_touch_no_task(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    task, _ = await submitted_task(store, prompt="a quiet harbour")
    stranger = message(
        f"**someone else's prompt** - <@{USER}> (fast)", attachments=image("1", f"x_{JOB}.png")
    )
    await push(redis, "MESSAGE_CREATE", stranger)
    await push(
        redis,
        "MESSAGE_CREATE",
        message("", nonce="999", embeds=[{"title": "Invalid prompt", "color": 16711680}]),
    )
    async with asyncio.timeout(5):
        while int(await redis.get(keys.UNMATCHED_EVENTS) or 0) < 2:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
            await asyncio.sleep(0.01)
    current = await store.get(task.id)
    assert (
        current is not None and current.status == TaskStatus.SUBMITTED and current.revision == task.revision
    )


async def test_seed_dm_sets_the_seed_of_a_finished_task(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    parent, _ = await _grid_parent(store, redis, "a seed test")
    dm = message(f"**a seed test**\n**Job ID**: {JOB}\n**seed** 123456")
    await push(redis, "MESSAGE_CREATE", dm)
    seeded = await wait_task(store, parent.id, lambda t: t.seed is not None)
    assert seeded.seed == "123456" and seeded.status == TaskStatus.SUCCESS


async def test_sibling_results_in_one_batch_each_finish_their_own_task(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    """Pans of one parent whose start and final land in the same read: no final goes to a sibling.

    The finals carry no nonce and a new message id; only the interaction bound by their start (or
    the pan direction) tells the siblings apart, so a concurrent lane must not guess by reference.
    """
    import json
    import time

    from broker.events import GatewayEvent, publish_many

    prompt = "a lighthouse in the fog"
    parent, grid_id = await _grid_parent(store, redis, prompt)
    events: list[tuple[str, dict[str, Any]]] = []
    pans: dict[str, Task] = {}
    for direction in ("left", "right", "up", "down"):
        task, nonce = await submitted_task(store, action=TaskAction.PAN, prompt=prompt, parent_id=parent.id)
        await store.transition(
            task.id, TaskStatus.SUBMITTED, custom_id=f"MJ::JOB::pan_{direction}::1::{JOB}::SOLO"
        )
        pans[direction] = task
        interaction = {"id": snowflake(), "type": 3, "name": "pan"}
        start_id, final_id = snowflake(), snowflake()
        word = direction.capitalize()
        events.append(("INTERACTION_SUCCESS", {"id": interaction["id"], "nonce": nonce}))
        events.append(
            (
                "MESSAGE_CREATE",
                message(
                    f"**{prompt}** - Pan {word} by <@{USER}> (Waiting to start)",
                    id=start_id,
                    nonce=nonce,
                    reference=grid_id,
                    interaction=interaction,
                ),
            )
        )
        events.append(
            (
                "MESSAGE_CREATE",
                message(
                    f"**{prompt}** - Pan {word} by <@{USER}> (fast)",
                    id=final_id,
                    reference=grid_id,
                    interaction=interaction,
                    attachments=image(final_id, f"u_pan_{direction}_{snowflake()}.png"),
                ),
            )
        )
    # Finals first within the read, as a backlog after a restart can deliver them.
    ordered = [e for e in events if "fast" in json.dumps(e[1])] + [
        e for e in events if "fast" not in json.dumps(e[1])
    ]
    now = int(time.time() * 1000)
    await publish_many(
        redis,
        [
            GatewayEvent(account="a1", seq=i, t=t, d=json.dumps(d).encode(), at=now)
            for i, (t, d) in enumerate(ordered)
        ],
    )
    for direction, task in pans.items():
        final = await wait_final(store, task.id)
        assert final.status == TaskStatus.SUCCESS
        assert final.image_url is not None and f"_pan_{direction}_" in final.image_url
