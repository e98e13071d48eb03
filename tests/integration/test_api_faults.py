"""The web without a worker: code 9 on submit, the accounts say so; the heartbeat's cache; and a
worker's consumer after an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import redis.asyncio as aioredis
from workers_support import STAND_IN_WORKER

from broker import heartbeat, keys
from broker.clock import now_ms
from broker.shutdown import cancel_and_wait
from workers.consumer import Entry, StreamConsumer


async def test_worker_watch_asks_redis_at_most_once_per_recheck_while_a_worker_lives(
    redis: aioredis.Redis,
) -> None:
    now = [10_000_000]
    await heartbeat.leave(redis, STAND_IN_WORKER)
    watch = heartbeat.WorkerWatch(redis, recheck_ms=1000, clock=lambda: now[0])
    assert not await watch.alive()
    await heartbeat.beat(redis, "w1", now=now[0], ttl_ms=10_000)
    assert await watch.alive()  # "none" was not cached
    await heartbeat.leave(redis, "w1")
    now[0] += 999
    assert await watch.alive()  # trusted for a second without a round trip
    now[0] += 1
    assert not await watch.alive()
    await heartbeat.beat(redis, "w2", now=now[0], ttl_ms=10_000)
    now[0] += 10_000
    assert not await watch.alive()  # an expired heartbeat (a SIGKILLed worker) does not count
    assert await heartbeat.workers_alive(redis, now=now[0]) == 0
    await heartbeat.beat(redis, "w3", now=now[0], ttl_ms=10_000)
    reads = watch.reads
    assert all(await asyncio.gather(*(watch.alive() for _ in range(50))))
    assert watch.reads == reads + 1  # concurrent requests share one read


async def test_submits_answer_code_9_while_no_worker_lives_and_the_accounts_say_so(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
) -> None:
    assert (await client.get("/mj/account/list")).json()[0]["properties"]["workerRunning"] is True
    await heartbeat.leave(redis, STAND_IN_WORKER)
    async with asyncio.timeout(5):  # the web trusts a "yes" for a second
        while (await client.get("/mj/account/list")).json()[0]["properties"]["workerRunning"]:  # noqa: ASYNC110 - polls the API, bounded by the timeout
            await asyncio.sleep(0.05)
    account = (await client.get("/mj/account/a1/fetch")).json()
    assert account["statusReason"].startswith("no worker running"), account
    for path, body in (
        ("/mj/submit/imagine", {"prompt": "a fox"}),
        ("/mj/submit/shorten", {"prompt": "a fox"}),
        ("/mj/submit/action", {"taskId": "nope", "customId": "MJ::JOB::upsample::1::x"}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 200, response.text
        reply = response.json()
        # an unknown parent is still code 4: bad input is reported before the missing worker
        expected = 4 if path.endswith("/action") else 9
        assert reply["code"] == expected, (path, reply)
        if expected == 9:
            assert reply["description"].startswith("no worker running") and reply["result"] is None
    assert await redis.keys(keys.TASK_RECORDS_MATCH) == []  # nothing was stored
    await heartbeat.beat(redis, "w1", now=now_ms(), ttl_ms=60_000)
    reply = (await client.post("/mj/submit/imagine", json={"prompt": "a fox"})).json()
    assert reply["code"] == 1, reply


async def test_a_restarted_consumer_handles_what_it_left_pending_at_once(redis: aioredis.Redis) -> None:
    """A worker restarted after a Redis outage keeps its consumer name and reads its own pending
    entries first, instead of waiting `claim_idle_ms` for them (a task could time out meanwhile)."""
    stream, group, name = "test:stream", "test-group", "worker-1"
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    await redis.xadd(stream, {"n": "1"})
    # the predecessor read the entry, and Redis went away before it acknowledged it
    assert await redis.xreadgroup(group, name, {stream: ">"}, count=10)
    handled: list[bytes] = []
    got = asyncio.Event()

    async def handle(entries: Sequence[Entry]) -> None:
        handled.extend(fields[b"n"] for _, fields in entries)
        got.set()

    consumer = StreamConsumer(
        redis, reads=[[stream]], group=group, name=name, handle=handle, block_ms=100, claim_idle_ms=60_000
    )
    running = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(5):
            await got.wait()
        await redis.xadd(stream, {"n": "2"})
        async with asyncio.timeout(5):
            while handled != [b"1", b"2"]:  # noqa: ASYNC110 - polls the consumer, bounded by the timeout
                await asyncio.sleep(0.02)
    finally:
        await cancel_and_wait(running)
    assert (await redis.xpending(stream, group))["pending"] == 0
