"""Faults end to end, on a stack of their own with a 3-second task timeout: a 429 longer than the
timeout, a 429 longer than the bridge waits, a bot that never answers, a deleted progress message, no
worker alive, and Redis down. Each ends the way the README promises, with its own reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from e2e_support import Stack

from broker.store import TaskStore

#: the accounts' task timeout: short, so a 429 wait can outlast it, yet long enough for a job to run
#: on a loaded 2-core machine after a bridge restart (3 s failed there, also before this session)
TIMEOUT_S = 5.0
#: the bridge's longest 429 wait in this stack
MAX_WAIT_S = 10.0


class FaultStack(Stack):
    """The e2e stack with this module's short waits in its config."""

    def config(self) -> dict[str, Any]:
        document = super().config()
        document["bridge"]["rate_limit_max_wait_seconds"] = MAX_WAIT_S
        return document


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    # a0: long 429; a1: 429 beyond the wait; a2: silent bot, deleted message; a3: no worker, Redis
    # down (with a longer timeout: its tasks must outlive the outage)
    running = FaultStack(
        tmp_path_factory.mktemp("faults"),
        accounts=4,
        core_size=2,
        timeout_minutes=TIMEOUT_S / 60,
        account_overrides={3: {"timeout_minutes": 0.5}},
    )
    try:
        await running.start()
        yield running
    finally:
        await running.close()


async def imagine(stack: Stack, prompt: str, account: str) -> str:
    reply = await stack.post(
        "/mj/submit/imagine",
        {"prompt": prompt, "notifyHook": stack.hook_url("faults"), "accountFilter": {"instanceId": account}},
    )
    assert reply["code"] in (1, 22), reply
    return str(reply["result"])


async def account_view(stack: Stack, account: str) -> dict[str, Any]:
    data: dict[str, Any] = (await stack.api.get(f"/mj/account/{account}/fetch")).json()
    return data


async def wait_account(stack: Stack, account: str, status: str, within: float = 10) -> dict[str, Any]:
    last: dict[str, Any] = {}
    async with asyncio.timeout(within):
        while (last := await account_view(stack, account)).get("status") != status:  # noqa: ASYNC110 - polls the API, bounded by the timeout
            await asyncio.sleep(0.05)
    return last


async def test_a_429_longer_than_the_timeout_is_waited_out_and_the_job_succeeds(stack: Stack) -> None:
    retry_after = TIMEOUT_S + 1.5
    await stack.fault(0, "rate_limit", count=1, retry_after=retry_after)
    task_id = await imagine(stack, "a patient fox", "a0")
    account = await wait_account(stack, "a0", "RATE_LIMITED")
    assert "rate limited by Discord" in account["statusReason"], account
    parked = await stack.fetch(task_id)
    assert parked is not None and parked["status"] == "SUBMITTED", parked
    assert parked["properties"]["rateLimitedUntil"] > parked["startTime"], parked

    task = await stack.wait_task(task_id, within=retry_after + 15)
    assert task["status"] == "SUCCESS", task
    # The clock started at the send, after the whole wait; the job ran exactly once.
    assert task["startTime"] - task["submitTime"] >= retry_after * 1000 - 100, task
    assert "rateLimitedUntil" not in task["properties"]
    counters = await stack.counters()
    assert counters["interactions"]["by_nonce"][task["properties"]["nonce"]] == 1
    assert [h["status"] for h in stack.hooks_for(task_id) if h["status"] == "FAILURE"] == []
    await wait_account(stack, "a0", "ONLINE")


async def parked(stack: Stack, task_id: str) -> dict[str, Any]:
    """The task once the bridge parked it after a 429."""
    return await stack.wait_task(
        task_id, ("SUBMITTED",), within=10, check=lambda t: "rateLimitedUntil" in t["properties"]
    )


async def test_a_task_parked_by_a_429_is_sent_once_by_a_bridge_that_restarted(stack: Stack) -> None:
    await stack.fault(0, "rate_limit", count=1, retry_after=TIMEOUT_S + 1)
    task_id = await imagine(stack, "a fox across a restart", "a0")
    await parked(stack, task_id)
    stack.restart("bridge")  # SIGKILL: the wait was only in the dead bridge's memory and the record
    task = await stack.wait_task(task_id, within=30)
    assert task["status"] == "SUCCESS", (task.get("failReason"), task)
    counters = await stack.counters()
    assert counters["interactions"]["by_nonce"][task["properties"]["nonce"]] == 1
    await stack.wait_accounts_online()


async def test_a_parked_task_that_failed_meanwhile_is_never_sent(stack: Stack) -> None:
    await stack.fault(0, "rate_limit", count=1, retry_after=2.0)
    task_id = await imagine(stack, "a fox that gives up", "a0")
    nonce = (await parked(stack, task_id))["properties"]["nonce"]
    client = stack.client()
    try:  # as the sweeper or the account's health would, while the bridge waits
        assert await TaskStore(client, retention_seconds=3600).fail(task_id, "failed while it waited")
    finally:
        await client.aclose()
    await wait_account(stack, "a0", "ONLINE")  # the wait is over: the bridge had its chance
    follower = await stack.wait_task(await imagine(stack, "the next fox", "a0"))
    assert follower["status"] == "SUCCESS", follower  # sent after the parked one's turn
    counters = await stack.counters()
    assert nonce not in counters["interactions"]["by_nonce"]
    task = await stack.fetch(task_id)
    assert task is not None and task["failReason"] == "failed while it waited", task


async def test_a_429_beyond_the_longest_wait_fails_the_task_before_it_is_sent(stack: Stack) -> None:
    await stack.fault(1, "rate_limit", count=1, retry_after=MAX_WAIT_S * 10)
    task = await stack.wait_task(await imagine(stack, "an impatient fox", "a1"), within=10)
    assert task["status"] == "FAILURE", task
    assert task["failReason"].startswith(f"rate limited by Discord for {MAX_WAIT_S * 10:.0f} s"), task
    counters = await stack.counters()
    assert task["properties"]["nonce"] not in counters["interactions"]["by_nonce"]  # no job ran
    account = await account_view(stack, "a1")
    assert account["status"] == "RATE_LIMITED", account
    # The account's next task is refused the same way, without being sent.
    second = await stack.wait_task(await imagine(stack, "another impatient fox", "a1"), within=10)
    assert second["status"] == "FAILURE" and second["failReason"].startswith("rate limited by Discord")
    assert second["properties"].get("nonce") is None, second


async def test_a_bot_that_never_answers_fails_soon_with_its_own_reason(stack: Stack) -> None:
    await stack.fault(2, "fail_next_job", error="no_response")
    task = await stack.wait_task(await imagine(stack, "a silent bot", "a2"), within=TIMEOUT_S + 10)
    assert task["status"] == "FAILURE", task
    assert task["failReason"].startswith("the bot never acknowledged the job"), task
    # the sweeper runs every second: the task ends within about its timeout of being sent
    assert TIMEOUT_S * 1000 <= task["finishTime"] - task["startTime"] < (TIMEOUT_S + 3) * 1000, task


async def test_a_deleted_progress_message_fails_the_task_with_that_reason(stack: Stack) -> None:
    await stack.fault(2, "delete_mid_job")
    task = await stack.wait_task(await imagine(stack, "a vanishing fox", "a2"), within=TIMEOUT_S + 10)
    assert task["status"] == "FAILURE", task
    assert task["failReason"].startswith("the job's message was deleted before the job finished"), task
    assert task["properties"]["messageDeletedTime"] < task["finishTime"]


async def test_with_no_worker_alive_submits_answer_code_9_and_the_accounts_say_so(stack: Stack) -> None:
    stack.procs["worker"].stop()
    try:
        async with asyncio.timeout(15):
            while (await account_view(stack, "a3"))["properties"]["workerRunning"]:  # noqa: ASYNC110 - polls the API, bounded by the timeout
                await asyncio.sleep(0.1)
        listed = (await stack.api.get("/mj/account/list")).json()
        assert all("no worker running" in a["statusReason"] for a in listed), listed
        response = await stack.api.post(
            "/mj/submit/imagine", json={"prompt": "nobody home", "accountFilter": {"instanceId": "a3"}}
        )
        assert response.status_code == 200
        reply = response.json()
        assert reply["code"] == 9 and "no worker running" in reply["description"], reply
        assert reply["result"] is None
    finally:
        stack.procs["worker"].start()
    async with asyncio.timeout(20):
        while not (await account_view(stack, "a3"))["properties"]["workerRunning"]:  # noqa: ASYNC110 - polls the API, bounded by the timeout
            await asyncio.sleep(0.1)
    task = await stack.wait_task(await imagine(stack, "someone is home", "a3"))
    assert task["status"] == "SUCCESS", task


async def test_redis_down_gives_503_with_retry_after_then_recovers_with_nothing_lost(stack: Stack) -> None:
    before = [await imagine(stack, f"before the outage {i}", "a3") for i in range(4)]
    stack.redis.stop()  # a clean stop: what Valkey acknowledged is on disk
    try:
        for method, path, body in (
            ("POST", "/mj/submit/imagine", {"prompt": "during the outage"}),
            ("GET", f"/mj/task/{before[0]}/fetch", None),
            ("GET", "/mj/account/list", None),
            ("POST", "/mj/task/list-by-condition", {"ids": before}),
        ):
            response = await stack.api.request(method, path, json=body)
            assert response.status_code == 503, (path, response.status_code, response.text)
            assert int(response.headers["retry-after"]) >= 1
            reply = response.json()
            assert reply["code"] == 9 and "Redis" in reply["description"], reply
        # An outage of a second, deliberately: the worker and the bridge meet it too.
        await asyncio.sleep(1.0)
    finally:
        stack.redis.start()
    after = await imagine(stack, "after the outage", "a3")
    for task_id in [*before, after]:
        task = await stack.wait_task(task_id, within=30)
        assert task["status"] == "SUCCESS", (task.get("failReason"), task)
    for name in ("web", "worker", "bridge"):
        assert stack.procs[name].alive, f"{name} died in the outage:\n{stack.procs[name].tail()}"
