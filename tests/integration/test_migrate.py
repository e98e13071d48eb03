"""`python -m broker.migrate` on a real Valkey: keys of the layout before the shards, written by hand,
are moved so that today's code reads the tasks and delivers the hook that was pending."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from workers_support import HookReceiver, make_settings, running_worker, settings_yaml

from broker import keys
from broker.clock import now_ms
from broker.migrate import main
from broker.models import Task, TaskAction, TaskProperties, TaskStatus, encode_task
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore
from workers.outbox import HookOutbox

V1 = keys.V1
DONE, RUNNING = "1790000000000000001", "1790000000000000002"


async def _write_old_layout(redis: aioredis.Redis, hook: str) -> tuple[Task, dict[str, bytes]]:
    """A finished task whose hook is due, a running one with a blob, and the streams and sets of
    that time; returns the finished task and the changes entries a worker still needs."""
    now = now_ms()
    done = Task(
        id=DONE,
        action=TaskAction.IMAGINE,
        prompt="an old fox",
        status=TaskStatus.SUCCESS,
        progress="100%",
        submit_time=now - 60_000,
        instance_id="a1",
        revision=now - 1_000,
        properties=TaskProperties(notify_hook=hook),
    )
    running = Task(
        id=RUNNING,
        action=TaskAction.IMAGINE,
        prompt="an old owl",
        status=TaskStatus.IN_PROGRESS,
        progress="40%",
        submit_time=now - 30_000,
        instance_id="a1",
        revision=now - 2_000,
    )
    for task in (done, running):
        old = f"mjb:task:{{{task.id}}}"
        await redis.hset(old, mapping={"v": task.revision, "d": encode_task(task)})
        await redis.pexpire(old, 3_600_000)
    await redis.set(f"mjb:task:{{{RUNNING}}}:blob:image0", b"png bytes", px=3_600_000)
    await redis.hset(f"mjb:{{hooks}}:task:{DONE}", mapping={"wanted": done.revision})
    await redis.zadd(V1.HOOKS_DUE, {DONE: now})
    await redis.zadd(V1.LIVE_TASKS, {RUNNING: now - 30_000})
    await redis.zadd(V1.STORED_IMAGES, {DONE: now + 86_400_000})
    # the changes stream: one entry handled (acknowledged), one read but not acknowledged, one unread
    await redis.xgroup_create(V1.CHANGES_STREAM, keys.CHANGES_GROUP, id="0", mkstream=True)
    ids = [await redis.xadd(V1.CHANGES_STREAM, {"id": RUNNING, "rev": str(rev)}) for rev in (1, 2, 3)]
    await redis.xreadgroup(keys.CHANGES_GROUP, "old-worker", {V1.CHANGES_STREAM: ">"}, count=2)
    await redis.xack(V1.CHANGES_STREAM, keys.CHANGES_GROUP, ids[0])
    # an event no worker has read (no group yet: every entry is needed)
    await redis.xadd(
        V1.EVENTS_STREAM, {"account": "a1", "seq": 7, "t": "MESSAGE_UPDATE", "d": b"{}", "at": now}
    )
    return done, {"pending": ids[1], "unread": ids[2]}


async def _migrate(config: Path, *extra: str) -> str:
    """Run the command line tool (in a thread: it runs its own event loop) and return what it printed."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        await asyncio.to_thread(main, ["--config", str(config), *extra])
    return out.getvalue()


async def test_an_old_layout_is_moved_once_and_todays_code_reads_it_and_delivers_the_pending_hook(
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    store: TaskStore,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    done, needed = await _write_old_layout(redis, receiver.url("old"))
    settings = make_settings(redis_server.url, tmp_path, allow=(receiver.address,))
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(settings), encoding="utf-8")

    rehearsal = await _migrate(config, "--keep-old")
    assert "task records: 2 moved, 0 there already" in rehearsal, rehearsal
    assert f"{V1.CHANGES_STREAM}: 2 moved, 0 there already, 1 handled already, dropped" in rehearsal
    assert await redis.exists(f"mjb:task:{{{DONE}}}")  # kept
    moved = await _migrate(config)
    assert "task records: 0 moved, 2 there already" in moved, moved
    assert "task blobs: 0 moved, 1 there already" in moved
    assert f"{V1.CHANGES_STREAM}: 0 moved, 2 there already" in moved
    assert await redis.keys("mjb:task:*") == [] and await redis.keys("mjb:{hooks}*") == []
    for old in (V1.CHANGES_STREAM, V1.EVENTS_STREAM, V1.LIVE_TASKS, V1.STORED_IMAGES):
        assert not await redis.exists(old), old
    again = await _migrate(config)
    assert "task records: 0 moved, 0 there already" in again, again

    # today's layout, as today's code reads it
    assert await store.get(DONE) == done
    assert await store.get_blob(RUNNING, "image0") == b"png bytes"
    assert 0 < await redis.pttl(keys.task_record(DONE)) <= 3_600_000
    changes = await redis.xrange(keys.changes_stream(RUNNING))
    assert [entry_id for entry_id, _ in changes] == [needed["pending"], needed["unread"]]
    (event,) = await redis.xrange(keys.events_stream("a1"))
    assert event[1][b"seq"] == b"7"
    assert await redis.zscore(keys.live_tasks(RUNNING), RUNNING) is not None
    assert await redis.zscore(keys.stored_images(DONE), DONE) is not None
    assert await HookOutbox(redis, ttl_ms=60_000).state(DONE) == {"wanted": str(done.revision)}

    async with running_worker(settings):
        await receiver.wait_for(lambda: any(r.version == done.revision for r in receiver.for_path("old")))
    (delivered,) = receiver.for_path("old")
    assert delivered.task["status"] == "SUCCESS" and delivered.task["id"] == DONE


def test_the_tool_says_to_stop_the_processes_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Stop every web, worker and bridge process first" in capsys.readouterr().out
