"""Exactly once through lost replies: Redis runs a command, its reply never arrives, the client resends.

Each test puts `LossyProxy` (tests/redis_proxy.py) between the product's code and the session's
real Valkey, and has it drop the connection right after the server ran the chosen command and
before its reply reached the client. The client then resends the call once (`broker.lua`); each
test checks that the call ends with exactly one effect and answers its first outcome. Without the
idempotent scripts, the caller got redis-py's ConnectionError (the web answered an error for a
task that was admitted, the bridge left a task claimed but never sent, a worker's batch waited for
the claim delay), or a resend did the work twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from api_support import AUTH, TOKEN_A1, WebProcess, account, write_config
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis_proxy import LossyProxy, evalsha_of
from workers_support import (
    HookReceiver,
    imagine_events,
    make_settings,
    push,
    running_worker,
    snowflake,
    submitted_task,
    wait_final,
)

from broker import keys
from broker.batching import PipelineBatcher
from broker.clock import now_ms
from broker.config import HookSettings, RedisSettings
from broker.events import GatewayEvent
from broker.ledger import Ledger
from broker.lua import Script
from broker.models import TaskStatus
from broker.queues import _ADMIT, AccountQueues, DayCount
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis
from broker.store import _CAS, TaskStore
from broker.url_guard import UrlGuard
from discord_bridge.consumer import claim
from discord_bridge.payloads import new_nonce
from workers.apply import Applier
from workers.delivery import HookDeliverer
from workers.matching import Matcher
from workers.outbox import _BEGIN, _SCHEDULE, HookOutbox

JOB = "3b1f0c9e-5d2a-4e6b-8c7d-1a2b3c4d5e6f"


@pytest.fixture
async def proxy(redis_server: EmbeddedRedis, redis: aioredis.Redis) -> AsyncIterator[LossyProxy]:
    """The proxy in front of the session's Valkey (flushed by `redis`)."""
    lossy = LossyProxy("127.0.0.1", redis_server.port, password=redis_server.password)
    await lossy.start()
    yield lossy
    await lossy.stop()


@pytest.fixture
async def lossy(proxy: LossyProxy) -> AsyncIterator[aioredis.Redis]:
    """The product's client, connected through the proxy."""
    client = connect(proxy.url, RedisSettings(command_timeout_seconds=5.0))
    yield client
    await client.aclose()


async def _revisions(redis: aioredis.Redis, task_id: str) -> list[int]:
    """The distinct revisions announced for `task_id`, in order: one per write that took effect (a
    resent write announces its revision again, never a new one; revisions are clock-floored, so
    their values say nothing of how many writes there were)."""
    announced = [
        int(fields[b"rev"])
        for _, fields in await redis.xrange(keys.changes_stream(task_id))
        if fields[b"id"] == task_id.encode()
    ]
    return sorted(set(announced))


async def _imagine(http: httpx.AsyncClient, prompt: str) -> dict[str, Any]:
    response = await http.post("/mj/submit/imagine", json={"prompt": prompt})
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


async def test_web_admission_whose_reply_is_lost_admits_once_and_answers_the_first_outcome(
    proxy: LossyProxy, redis: aioredis.Redis, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, proxy.url, accounts=[account("a1", 1, TOKEN_A1, core_size=1, queue_size=10)]
    )
    web = WebProcess(config)
    await asyncio.to_thread(web.start)  # in a thread: the web's start-up talks to Redis through the proxy
    try:
        async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=30) as http:
            proxy.lose_reply_once(evalsha_of(_ADMIT.sha))
            started = await _imagine(http, "a lost reply, started")
            assert proxy.lost.is_set()
            assert started["code"] == 1, started

            proxy.lose_reply_once(evalsha_of(_ADMIT.sha))
            queued = await _imagine(http, "a lost reply, queued")
            assert proxy.lost.is_set()
            assert (queued["code"], queued["properties"]["numberOfQueues"]) == (22, 1), queued

            # the record's own compare-and-set (written before admission) loses its reply
            proxy.lose_reply_once(evalsha_of(_CAS.sha))
            second = await _imagine(http, "a lost reply on the record")
            assert proxy.lost.is_set()
            assert (second["code"], second["properties"]["numberOfQueues"]) == (22, 2), second
            fetched = (await http.get(f"/mj/task/{second['result']}/fetch")).json()
            assert fetched["id"] == second["result"] and fetched["status"] == "NOT_START"
    finally:
        await asyncio.to_thread(web.stop)
    assert len(proxy.lost_commands) == 3
    # one effect each: one slot, one queue place each (the sequence counted twice), one wake-up
    assert await redis.zrange(keys.account_running("a1"), 0, -1) == [started["result"].encode()]
    waiting = await redis.zrange(keys.account_waiting("a1"), 0, -1)
    assert waiting == [queued["result"].encode(), second["result"].encode()]
    assert await redis.get(keys.account_seq("a1")) == b"2"
    assert await redis.lrange(keys.account_ready("a1"), 0, -1) == [started["result"].encode()]
    assert len(await redis.keys(keys.TASK_RECORDS_MATCH)) == 3
    for reply in (started, queued, second):  # each record written once
        written = await _revisions(redis, reply["result"])
        assert len(written) == 1
        assert await redis.hget(keys.task_record(reply["result"]), "v") == str(written[0]).encode()


async def test_a_resent_admission_returns_its_receipt_and_a_new_admission_is_decided_afresh(
    redis: aioredis.Redis,
) -> None:
    queues = AccountQueues(redis)
    first = await queues.admit("a1", "t1", core_size=1, queue_size=0)
    assert first.code == 1
    # the same call again (what a resend is): same id, same arguments, the first outcome
    receipt = await redis.get(keys.admission_receipt("a1", "t1"))
    assert receipt is not None
    call_id = receipt.split()[0].decode()
    keys_ = [
        keys.account_waiting("a1"),
        keys.account_running("a1"),
        keys.account_ready("a1"),
        keys.account_seq("a1"),
        keys.admission_receipt("a1", "t1"),
    ]
    await queues.release("a1", "t1", core_size=1)
    again = await _ADMIT(redis, keys_, ["t1", 1, 0, now_ms(), call_id, 60_000])
    assert again == [1, 0, 1]
    assert await redis.zcard(keys.account_running("a1")) == 0  # nothing admitted twice
    assert await redis.llen(keys.account_ready("a1")) == 1
    # a new call for the same task (a modal answered again) is a new admission
    assert (await queues.admit("a1", "t1", core_size=1, queue_size=0)).code == 1
    assert await redis.zcard(keys.account_running("a1")) == 1


async def test_bridge_claim_whose_reply_is_lost_returns_the_claimed_task_once(
    proxy: LossyProxy, lossy: aioredis.Redis, store: TaskStore, redis: aioredis.Redis
) -> None:
    task, _ = await submitted_task(store, prompt="a claimed fox", submit=False)
    nonce = new_nonce()
    proxy.lose_reply_once(evalsha_of(_CAS.sha))
    claimed = await claim(
        TaskStore(lossy, retention_seconds=3600), task, nonce=nonce, account_id="a1", now=now_ms()
    )
    assert proxy.lost.is_set()
    # the bridge sends the task it claimed: a caller that saw an error would have left it SUBMITTED
    # and never sent (its next try finds it claimed and never sends it twice)
    assert claimed is not None and claimed.properties.nonce == nonce
    assert claimed.status == TaskStatus.SUBMITTED
    assert await _revisions(redis, task.id) == [task.revision, claimed.revision]  # one claim
    stored = await store.get(task.id)
    assert stored == claimed
    assert await store.find("nonce", nonce) == task.id
    assert await claim(store, stored, nonce=new_nonce(), account_id="a1", now=now_ms()) is None


async def test_worker_write_whose_reply_is_lost_applies_the_event_once(
    proxy: LossyProxy, lossy: aioredis.Redis, store: TaskStore
) -> None:
    prompt = "a progressing fox"
    task, nonce = await submitted_task(store, prompt=prompt)
    start_id = snowflake()
    # a clock at 0: each write's revision is the previous one's + 1, so revisions count the writes
    lossy_store = TaskStore(lossy, retention_seconds=3600, clock=lambda: 0)
    queues = AccountQueues(lossy)
    applier = Applier(
        lossy_store,
        Matcher(lossy_store, queues=queues, window_ms=lambda _: 600_000, clock=now_ms),
        clock=now_ms,
    )
    events = imagine_events(prompt, nonce, JOB, start_id=start_id, final_id=snowflake())
    proxy.lose_reply_once(evalsha_of(_CAS.sha))
    for seq, (t, d) in enumerate(events[:2], start=1):
        event = GatewayEvent(account="a1", seq=seq, t=t, d=json.dumps(d).encode(), at=now_ms())
        outcome = await applier.apply(event)
        assert outcome.changed and outcome.task_id == task.id, outcome
    assert proxy.lost.is_set()
    stored = await store.get(task.id)
    assert stored is not None
    # two events, two revisions: the resend of the first write was not a second one
    assert stored.revision == task.revision + 2
    assert (stored.status, stored.progress) == (TaskStatus.IN_PROGRESS, "15%")


async def test_hook_schedule_whose_reply_is_lost_delivers_once_and_at_once(
    proxy: LossyProxy, lossy: aioredis.Redis, store: TaskStore, receiver: HookReceiver, redis: aioredis.Redis
) -> None:
    task, _ = await submitted_task(store, prompt="a hooked fox", hook=receiver.url("lost"))
    # a lease far longer than the wait below: a delivery left to the lease's end would fail the test
    settings = HookSettings(request_timeout_seconds=30.0)
    outbox = HookOutbox(lossy, ttl_ms=600_000)
    deliverer = HookDeliverer(lossy, outbox, settings=settings, guard=UrlGuard([receiver.address]))
    try:
        proxy.lose_reply_once(evalsha_of(_SCHEDULE.sha))
        await deliverer.schedule(task.id, task.revision)
        assert proxy.lost.is_set()
        await receiver.wait_for(lambda: len(receiver.for_path("lost")) == 1, within=5)
        async with asyncio.timeout(5):
            while int((await outbox.state(task.id)).get("delivered", 0)) < task.revision:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.01)
        # wanted twice: still one entry, nothing more to send
        await deliverer.schedule(task.id, task.revision)
        assert await redis.zscore(keys.hooks_due(task.id), task.id) is None
        assert "lease_ms" not in await outbox.state(task.id)
        assert deliverer.sent == 1
        assert [r.version for r in receiver.for_path("lost")] == [task.revision]
    finally:
        await deliverer.close()


async def test_hook_claimed_from_the_due_set_whose_reply_is_lost_is_delivered_at_once(
    proxy: LossyProxy, lossy: aioredis.Redis, store: TaskStore, receiver: HookReceiver, redis: aioredis.Redis
) -> None:
    task, _ = await submitted_task(store, prompt="a due fox", hook=receiver.url("due"))
    settings = HookSettings(request_timeout_seconds=30.0)
    outbox = HookOutbox(lossy, ttl_ms=600_000)
    # wanted by another process, which had no room to start it: it waits in the due set
    await redis.zadd(keys.hooks_due(task.id), {task.id: now_ms()})
    await redis.hset(keys.hook_state(task.id), "wanted", task.revision)
    deliverer = HookDeliverer(lossy, outbox, settings=settings, guard=UrlGuard([receiver.address]))
    proxy.lose_reply_once(evalsha_of(_BEGIN.sha))
    loop = asyncio.create_task(deliverer.run())
    try:
        await receiver.wait_for(lambda: len(receiver.for_path("due")) == 1, within=5)
        assert proxy.lost.is_set()
        async with asyncio.timeout(5):
            while await redis.zscore(keys.hooks_due(task.id), task.id) is not None:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
                await asyncio.sleep(0.01)
        assert [r.version for r in receiver.for_path("due")] == [task.revision]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await deliverer.close()


async def test_worker_through_lost_replies_delivers_each_revision_once(
    proxy: LossyProxy,
    store: TaskStore,
    redis: aioredis.Redis,
    receiver: HookReceiver,
    tmp_path: Path,
) -> None:
    # The worker as the CLI runs it, its Redis behind the proxy: the write of the first progress and
    # the hook schedule of the final revision lose their replies. A batch that fails waits for the
    # claim delay (30 s here), and a schedule that leased the delivery without knowing it leaves it
    # to the lease's end (35 s): everything must instead arrive within seconds, each revision once.
    settings = make_settings(
        proxy.url, tmp_path, hooks=HookSettings(request_timeout_seconds=30.0), allow=(receiver.address,)
    )
    prompt = "a fox through lost replies"
    async with running_worker(settings, claim_idle_seconds=30.0):
        task, nonce = await submitted_task(store, prompt=prompt, hook=receiver.url("worker"))
        events = imagine_events(prompt, nonce, JOB, start_id=snowflake(), final_id=snowflake())
        cas = evalsha_of(_CAS.sha)
        # the write of the first progress: an announced one
        # (args: EVALSHA sha 2 record stream expected rev json ...)
        proxy.lose_reply_once(lambda args: cas(args) and b'"progress":"15%"' in args[7])
        for t, d in events[:-1]:
            await push(redis, t, d)
        await receiver.wait_for(lambda: any(r.task["progress"] == "93%" for r in receiver.for_path("worker")))
        assert proxy.lost.is_set()
        seen = max(r.version for r in receiver.for_path("worker"))
        schedule = evalsha_of(_SCHEDULE.sha)
        # a schedule of a newer revision: the final's (args: EVALSHA sha 2 key key task revision ...)
        proxy.lose_reply_once(lambda args: schedule(args) and int(args[6]) > seen)
        await push(redis, *events[-1])
        final = await wait_final(store, task.id)
        await receiver.wait_for(lambda: any(r.version == final.revision for r in receiver.for_path("worker")))
        assert proxy.lost.is_set()
        # The hook may come before the change's handling has reached the ledger (it is written after
        # the hook's schedule): wait for it while the worker still runs, not after stopping it.
        ledger = Ledger(tmp_path / "ledger.db")
        try:
            async with asyncio.timeout(10):
                while (row := ledger.get(task.id)) is None:  # noqa: ASYNC110 - the worker's SQLite write
                    await asyncio.sleep(0.02)
        finally:
            ledger.close()
    versions = [r.version for r in receiver.for_path("worker")]
    assert versions == sorted(set(versions)), versions  # none twice, none backwards
    assert final.status == TaskStatus.SUCCESS
    announced = [
        int(fields[b"rev"])
        for _, fields in await redis.xrange(keys.changes_stream(task.id))
        if fields[b"id"] == task.id.encode()
    ]
    # the resent write found its record and its announcement in place: each change announced once
    assert len(announced) == len(set(announced)), announced
    assert row["status"] == "SUCCESS"  # ...and recorded once (an upsert)
    assert msgspec.json.decode(row["task_json"])["revision"] == final.revision


async def test_the_proxy_loses_a_reply_after_the_command_ran(
    proxy: LossyProxy, lossy: aioredis.Redis
) -> None:
    # The harness itself: the SET runs, its reply is lost, the client sees a failed connection.
    proxy.lose_reply_once(lambda args: args[0].upper() == b"SET")
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await lossy.set("t:lost", "ran")
    assert time.monotonic() - started < 5
    assert await lossy.get("t:lost") == b"ran"
    assert proxy.lost_commands == [[b"SET", b"t:lost", b"ran"]]


async def test_a_merged_pipeline_is_resent_only_for_the_callers_that_allow_it(
    proxy: LossyProxy, lossy: aioredis.Redis, redis: aioredis.Redis
) -> None:
    # Two callers share one round trip (broker.batching); the connection fails after it ran. The
    # idempotent one is sent again and gets its reply; the counter is not, and ran once.
    batcher = PipelineBatcher(lossy, [])
    proxy.lose_reply_once(lambda args: args[0].upper() == b"INCRBY")
    safe = batcher.execute(lambda pipe: pipe.set("t:safe", "1"), resend=True)
    unsafe = batcher.execute(lambda pipe: pipe.incr("t:count"))
    results = await asyncio.gather(safe, unsafe, return_exceptions=True)
    assert proxy.lost.is_set()
    assert results[0] == [True]
    assert isinstance(results[1], RedisConnectionError)
    assert await redis.get("t:count") == b"1"


async def test_a_resend_follows_a_failed_connection_but_never_a_timeout(
    proxy: LossyProxy, redis: aioredis.Redis
) -> None:
    # A script that counts its runs, sent as if it were idempotent, shows what the client resends.
    runs = Script("return redis.call('INCR', KEYS[1])")
    client = connect(proxy.url, RedisSettings(command_timeout_seconds=0.5))
    try:
        proxy.lose_reply_once(evalsha_of(runs.sha))
        assert await runs(client, ["t:runs"], [], resend=True) == 2  # the second run's reply
        # a Redis that stops answering: failed after one deadline, not resent into a second one
        proxy.lose_reply_once(evalsha_of(runs.sha), hang=True)
        with pytest.raises(RedisTimeoutError):
            await runs(client, ["t:runs"], [], resend=True)
        assert proxy.lost.is_set()
        # and without the opt-in, a failed connection is the caller's to handle
        proxy.lose_reply_once(evalsha_of(runs.sha))
        with pytest.raises(RedisConnectionError):
            await runs(client, ["t:runs"], [])
    finally:
        await client.aclose()
    assert await redis.get("t:runs") == b"4"


async def test_an_admission_counted_on_a_daily_limit_whose_reply_is_lost_counts_once(
    proxy: LossyProxy, lossy: aioredis.Redis, redis: aioredis.Redis
) -> None:
    queues = AccountQueues(lossy)
    day = DayCount(key=keys.account_day_count("a1", "2026-03-01"), limit=1)
    proxy.lose_reply_once(evalsha_of(_ADMIT.sha))
    # the resend answers the receipt: neither a second count nor a refusal by the first one
    assert (await queues.admit("a1", "t1", core_size=5, queue_size=0, day=day)).code == 1
    assert proxy.lost.is_set()
    assert await redis.get(day.key) == b"1"
    # the limit (1) is reached: the next task is refused, and neither counted nor admitted
    assert (await queues.admit("a1", "t2", core_size=5, queue_size=0, day=day)).code == 3
    assert await redis.get(day.key) == b"1"
    assert await redis.zrange(keys.account_running("a1"), 0, -1) == [b"t1"]
