"""Video events -> task state, through a running worker and real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from workers_support import (
    CHANNEL,
    USER,
    HookReceiver,
    make_settings,
    message,
    push,
    running_worker,
    snowflake,
    submitted_task,
    wait_final,
)

from broker import keys
from broker.models import TaskAction, TaskStatus
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from workers.main import WorkerRuntime

JOB = "0f4b2a7c-5d6e-4f80-9a1b-2c3d4e5f6a7b"
PROMPT = "<https://s.mj.run/abcdefghijk> waves roll in --video 1 --motion low"


@pytest.fixture
async def worker(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path, receiver: HookReceiver
) -> AsyncIterator[WorkerRuntime]:
    settings = make_settings(redis_server.url, tmp_path, allow=(receiver.address,))
    async with running_worker(settings) as runtime:
        yield runtime


def _videos(msg_id: str, count: int, first: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": snowflake(),
            "filename": f"user_waves_{JOB}_{i}.mp4",
            "url": f"https://cdn.discordapp.com/attachments/{CHANNEL}/{msg_id}/user_waves_{JOB}_{i}.mp4?ex=1&",
            "content_type": "video/mp4",
        }
        for i in range(first, first + count)
    ]


def _extend_buttons(n: int) -> list[dict[str, Any]]:
    ids = (f"MJ::JOB::animate_high_extend::{n}::{JOB}", f"MJ::JOB::animate_low_extend::{n}::{JOB}")
    return [{"type": 1, "components": [{"type": 2, "style": 2, "custom_id": c} for c in ids]}]


async def test_a_video_result_fills_video_url_and_video_urls(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    task, nonce = await submitted_task(store, prompt="waves roll in", action=TaskAction.VIDEO)
    msg_id = snowflake()
    await push(redis, "MESSAGE_CREATE", message(f"**{PROMPT}** - <@{USER}> (Waiting to start)", nonce=nonce))
    interaction = snowflake()
    await push(redis, "INTERACTION_SUCCESS", {"id": interaction, "nonce": nonce})
    final = message(f"**{PROMPT}** - <@{USER}> (fast)", id=msg_id, attachments=_videos(msg_id, 2))
    final["interaction_metadata"] = {"id": interaction, "type": 2, "name": "imagine"}
    await push(redis, "MESSAGE_CREATE", final)
    done = await wait_final(store, task.id)
    assert done.status == TaskStatus.SUCCESS
    urls = [a["url"] for a in final["attachments"]]
    assert done.video_url == urls[0] == done.image_url
    assert [v.url for v in done.video_urls or []] == urls
    assert done.properties.message_hash == JOB


async def test_a_videos_u_reply_lands_on_no_running_video_task_by_prompt(
    store: TaskStore, redis: aioredis.Redis, worker: WorkerRuntime
) -> None:
    # An extend's first step brings one video up: the reply has the video's prompt and hash but is
    # the result of neither the extend nor another video job that happens to share the prompt.
    video, _ = await submitted_task(store, prompt=PROMPT, action=TaskAction.VIDEO)
    extend, _ = await submitted_task(store, prompt=PROMPT, action=TaskAction.VIDEO_EXTEND)
    msg_id = snowflake()
    step = message(
        f"**{PROMPT}** - <@{USER}> (fast)",
        id=msg_id,
        attachments=_videos(msg_id, 1, first=1),
        components=_extend_buttons(2),
        reference=snowflake(),
    )
    await push(redis, "MESSAGE_CREATE", step)
    async with asyncio.timeout(5):
        while int(await redis.get(keys.UNMATCHED_EVENTS) or 0) < 1:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
            await asyncio.sleep(0.01)
    for task in (video, extend):
        current = await store.get(task.id)
        assert current is not None and current.status == TaskStatus.SUBMITTED, current
