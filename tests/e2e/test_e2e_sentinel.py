"""The whole stack in ``redis.mode: sentinel`` with ``redis.durability: replicated``, through a failover.

A primary, two replicas and three sentinels (`sentinel_support.SentinelDeployment`); web, worker,
bridge and mjsim as processes. A task runs end to end; then 60 tasks over 3 accounts are put in
flight and the primary is SIGKILLed. The sentinels promote a replica, every process follows it, and
submits go on meanwhile. What must hold:

- every task the API acknowledged (code 1 or 22) is on the new primary and ends terminal within
  its timeout (tasks whose bot events went down with the old primary end FAILURE by timeout);
- no interaction reached mjsim twice;
- a submit made while there was no primary is refused with a clear API error (503 with the
  broker's description), never a 500; those are counted and printed with the rest;
- no log holds the servers' or the sentinels' password;
- with no replica left, a submit is refused (503, "could not confirm the write as durable") within
  the command timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import Stack, run
from redis.exceptions import RedisError
from sentinel_support import SentinelDeployment

from broker.store import TaskStore

TIMEOUT_MINUTES = 0.15
COMMAND_TIMEOUT_S = 2.0
IN_FLIGHT = 60
#: how long submits go on after the sentinels named the new primary
AFTER_FAILOVER_S = 1.0


class Submits:
    """Imagines posted one after another and what became of each."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.accepted: list[str] = []
        self.codes: collections.Counter[Any] = collections.Counter()
        self.refusals: collections.Counter[str] = collections.Counter()

    async def one(self, label: str) -> None:
        body = {"prompt": f"sentinel {label} a lighthouse", "notifyHook": self.stack.hook_url("sentinel")}
        try:
            response = await self.stack.api.post("/mj/submit/imagine", json=body, timeout=15)
        except httpx.HTTPError as exc:
            self.codes[f"unanswered {type(exc).__name__}"] += 1
            return
        reply = response.json()
        self.codes[(response.status_code, reply.get("code"))] += 1
        if response.status_code == 200 and reply.get("code") in (1, 22):
            self.accepted.append(str(reply["result"]))
        elif response.status_code != 200:
            self.refusals[str(reply.get("description"))] += 1

    async def until(self, stop: asyncio.Event, every: float = 0.1) -> None:
        n = 0
        while not stop.is_set():
            await self.one(f"during {n}")
            n += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()


async def _records(stack: Stack, ids: list[str], within: float) -> list[Any]:
    """The stored tasks of `ids` once all have ended, or as they are when `within` runs out."""
    client = stack.client()
    store = TaskStore(client, retention_seconds=3600)
    tasks: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while True:
                with contextlib.suppress(RedisError, OSError):
                    tasks = await store.get_many(ids)
                    if len(tasks) == len(ids) and all(t.status.is_terminal for t in tasks):
                        return tasks
                await asyncio.sleep(0.3)
    except TimeoutError:
        return tasks
    finally:
        await client.aclose()


@pytest.mark.timeout(120)
async def test_the_stack_follows_a_sentinel_failover_and_loses_no_acknowledged_task(
    tmp_path: Path, record_property: Any
) -> None:
    deployment = SentinelDeployment(tmp_path / "sentinel", sentinel_password="e2e-sentinel-pw")
    stack = Stack(
        tmp_path,
        accounts=3,
        core_size=3,
        queue_size=IN_FLIGHT,
        timeout_minutes=TIMEOUT_MINUTES,
        job_seconds=0.6,
        speed=1.0,
        progress_steps=2,
        lease_seconds=5.0,  # longer than the failover, as README asks of bridge.lease_seconds
        redis=deployment,
        redis_section=deployment.redis_section(command_timeout_seconds=COMMAND_TIMEOUT_S),
    )
    await stack.start()
    submits = Submits(stack)
    try:
        await run(stack, "/mj/submit/imagine", {"prompt": "sentinel warm-up a lighthouse"})
        await asyncio.gather(*(submits.one(f"burst {i}") for i in range(IN_FLIGHT)))
        burst = len(submits.accepted)
        async with asyncio.timeout(20):  # a few jobs sent to "Discord" and running
            while (await stack.counters())["interactions"]["total"] < 10:  # noqa: ASYNC110 - polls mjsim
                await asyncio.sleep(0.05)
        old = deployment.kill_primary()
        killed_at = time.monotonic()
        stop = asyncio.Event()
        during = asyncio.create_task(submits.until(stop))
        new = await asyncio.to_thread(deployment.wait_failover, old)
        failover_s = time.monotonic() - killed_at
        await asyncio.sleep(AFTER_FAILOVER_S)
        stop.set()
        await during
        # then a task runs end to end on the new primary, once it has a replica again
        await _run_when_durable(stack)
        within = TIMEOUT_MINUTES * 60 * 3 + 10
        tasks = await _records(stack, submits.accepted, within)
        counters = await stack.counters()
        # with no replica left, a submit cannot be made durable: a clear 503 within the timeout
        for node in deployment.data:
            if node is not new:
                node.stop(kill=True)
        started = time.monotonic()
        alone = {"prompt": "sentinel alone a lighthouse"}
        no_replica = await stack.api.post("/mj/submit/imagine", json=alone)
        no_replica_s = time.monotonic() - started
    finally:
        await stack.close()

    found = {t.id for t in tasks}
    lost = [i for i in submits.accepted if i not in found]
    unfinished = [t.id for t in tasks if not t.status.is_terminal]
    by_status = collections.Counter(t.status.value for t in tasks)
    interactions = counters["interactions"]
    duplicates: dict[str, int] = interactions["duplicate_keys"]
    sends = collections.Counter(interactions["by_nonce"].values())
    server_errors = sum(n for (status, *_), n in _statuses(submits.codes) if status >= 500 and status != 503)
    refused = sum(submits.refusals.values())
    line = (
        f"sentinel failover {old.name} -> {new.name} in {failover_s:.1f}s: acknowledged "
        f"{len(submits.accepted)} ({burst} before the kill), lost {len(lost)}, unfinished {len(unfinished)}, "
        f"by_status {dict(by_status)}; submits {dict(submits.codes)}, refused {refused} "
        f"{dict(submits.refusals)}; interactions {interactions['total']}, duplicate interactions "
        f"{len(duplicates)}, sends per nonce {dict(sends)}"
    )
    print(line, flush=True)
    record_property("sentinel", line)

    assert burst >= IN_FLIGHT * 0.9, line
    assert not lost, f"acknowledged tasks lost: {lost[:10]}; {line}"
    assert not unfinished, f"tasks did not end: {unfinished[:10]}; {line}"
    assert not duplicates, f"interactions sent twice: {duplicates}; {line}"
    assert set(sends) <= {1}, line
    assert server_errors == 0, line
    assert all("internal error" not in d for d in submits.refusals), line
    assert no_replica.status_code == 503, no_replica.text
    assert "could not confirm the write as durable" in no_replica.json()["description"]
    assert no_replica.headers.get("retry-after")
    assert no_replica_s < COMMAND_TIMEOUT_S + 1
    # the servers' and the sentinels' passwords appear in no process's log, failover errors included
    logs = "".join(path.read_text(errors="replace") for path in stack.logs.glob("*.log"))
    assert "MasterNotFoundError" in logs or "ConnectionError" in logs  # the failover was logged
    for secret in (deployment.password, deployment.sentinel_password):
        assert secret not in logs


async def _run_when_durable(stack: Stack, within: float = 15) -> None:
    """Submit until the web acknowledges (503 while no replica follows the new primary), then
    wait for SUCCESS."""
    body = {"prompt": "sentinel after a lighthouse", "notifyHook": stack.hook_url()}
    async with asyncio.timeout(within):
        while True:
            response = await stack.api.post("/mj/submit/imagine", json=body)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                break
            await asyncio.sleep(0.2)
    reply = response.json()
    assert reply["code"] in (1, 22), reply
    task = await stack.wait_task(str(reply["result"]))
    assert task["status"] == "SUCCESS", task


def _statuses(codes: collections.Counter[Any]) -> list[tuple[tuple[int, ...], int]]:
    """The (HTTP status, ...) keys of `codes` with their counts (unanswered requests left out)."""
    return [(key, n) for key, n in codes.items() if isinstance(key, tuple)]
