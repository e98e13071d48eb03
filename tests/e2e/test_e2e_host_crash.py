"""The chaos test's "host crash": every process and Valkey SIGKILLed at once, the AOF's unsynced tail lost.

While tasks are being submitted and run, the web, worker and bridge processes and Valkey are
SIGKILLed together (mjsim, standing in for Discord, keeps running), and the AOF is cut back to what
its last completed fsync had made durable (`crash_support.TracedRedis`: strace logs the AOF's writes
and fsyncs, so the test knows that size exactly). Then everything starts again.

With the product's policy (acknowledgements wait for the fsync: ``WAITAOF`` on a server with
``appendfsync always``), what must hold:

- every task the API acknowledged (code 1 or 22) is still there;
- no interaction reached mjsim twice (each job is paid once);
- no hook version was sent twice with different content (revisions never repeat, see
  `broker.store.next_revision`), so a receiver that drops a version not higher than the last loses
  nothing.

The same run with the older policy (``appendfsync everysec``, no wait) prints the loss the fsync
prevents; how much it loses depends on where the kill falls in the second between two fsyncs, so
only its hook versions are asserted (they never repeat whatever Redis forgot).
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
from crash_support import TracedRedis
from e2e_support import Stack
from redis.exceptions import RedisError

from broker.store import TaskStore

#: how long tasks are submitted before the crash, and how often
SUBMIT_SECONDS = 2.5
SUBMIT_EVERY = 0.08
TIMEOUT_MINUTES = 0.2


async def _submit_until(
    stack: Stack, stop: asyncio.Event, accepted: list[str], codes: collections.Counter[Any]
) -> None:
    """Submit imagines at a steady rate until `stop`; record the acknowledged ids."""

    async def one(i: int) -> None:
        body = {"prompt": f"host crash task {i} a lighthouse", "notifyHook": stack.hook_url("crash")}
        try:
            response = await stack.api.post("/mj/submit/imagine", json=body, timeout=10)
            reply = response.json()
        except (httpx.HTTPError, ValueError):
            codes["unanswered"] += 1
            return
        codes[reply.get("code")] += 1
        if reply.get("code") in (1, 22):
            accepted.append(str(reply["result"]))

    pending: set[asyncio.Task[None]] = set()
    i = 0
    while not stop.is_set():
        job = asyncio.create_task(one(i))
        pending.add(job)
        job.add_done_callback(pending.discard)
        i += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBMIT_EVERY):
                await stop.wait()
    # requests in flight at the crash end unanswered (their web process is gone)
    await asyncio.gather(*pending, return_exceptions=True)


async def _records(stack: Stack, ids: list[str], within: float) -> list[Any]:
    """The stored tasks of `ids` once all have ended, or as they are when `within` runs out."""
    client = stack.client()
    store = TaskStore(client, retention_seconds=3600)
    deadline = time.monotonic() + within
    tasks: list[Any] = []
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                tasks = await store.get_many(ids)
                if all(t.status.is_terminal for t in tasks):
                    break
            await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    return tasks


def _repeated_versions(stack: Stack) -> tuple[int, int, int]:
    """(hooks received, versions received with two different bodies, deliveries older than one before)."""
    bodies: dict[tuple[str, int], set[bytes]] = collections.defaultdict(set)
    last: dict[str, int] = {}
    older = 0
    received = stack.receiver.for_path("crash")
    for hook in received:
        task_id = str(hook.task["id"])
        bodies[(task_id, hook.version)].add(hook.body)
        if hook.version < last.get(task_id, 0):
            older += 1
        last[task_id] = max(last.get(task_id, 0), hook.version)
    return len(received), sum(1 for seen in bodies.values() if len(seen) > 1), older


@pytest.mark.timeout(150)
@pytest.mark.parametrize("policy", ["durable", "everysec"])
async def test_host_crash_loses_no_acknowledged_task(
    policy: str, tmp_path: Path, record_property: Any
) -> None:
    durable = policy == "durable"
    stack = Stack(
        tmp_path,
        accounts=3,
        core_size=3,
        queue_size=30,
        timeout_minutes=TIMEOUT_MINUTES,
        job_seconds=1.0,
        speed=1.0,
        progress_steps=3,
        lease_seconds=2.0,
        durable=durable,
    )
    server = TracedRedis(
        port=stack.redis_port,
        data_dir=tmp_path / "redis",
        appendfsync="always" if durable else "everysec",
        trace=tmp_path / "aof.strace",
    )
    stack.redis = server
    await stack.start()
    accepted: list[str] = []
    codes: collections.Counter[Any] = collections.Counter()
    try:
        stop = asyncio.Event()
        submitting = asyncio.create_task(_submit_until(stack, stop, accepted, codes))
        await asyncio.sleep(SUBMIT_SECONDS)
        # The host goes down: Valkey and every process of ours at once; mjsim ("Discord") stays up.
        cut = server.crash()
        for name in ("web", "worker", "bridge"):
            stack.kill(name)
        stop.set()
        await submitting
        acknowledged = list(accepted)
        for name in ("redis", "web", "worker", "bridge"):
            stack.revive(name)
        await stack.wait_accounts_online()
        # Queued tasks run after the restart; tasks whose bot events went with the crash time out.
        within = TIMEOUT_MINUTES * 60 * 2 + 15
        tasks = await _records(stack, acknowledged, within)
        counters = await stack.counters()
    finally:
        await stack.close()

    found = {t.id for t in tasks}
    lost = [i for i in acknowledged if i not in found]
    unfinished = [t.id for t in tasks if not t.status.is_terminal]
    interactions = counters["interactions"]
    duplicates: dict[str, int] = interactions["duplicate_keys"]
    nonce_counts = collections.Counter(interactions["by_nonce"].values())
    hooks, repeated, older = _repeated_versions(stack)
    by_status = collections.Counter(t.status.value for t in tasks)
    line = (
        f"host crash ({policy}): AOF cut {cut.size} -> {cut.kept} bytes (dropped {cut.dropped}); "
        f"submits {dict(codes)}, acknowledged {len(acknowledged)}, lost {len(lost)}, "
        f"by_status {dict(by_status)}, unfinished {len(unfinished)}; interactions {interactions['total']}, "
        f"sent twice {len(duplicates)}, sends per nonce {dict(nonce_counts)}; hooks {hooks}, "
        f"versions repeated with other content {repeated}, deliveries older than one before {older}"
    )
    print(line, flush=True)
    record_property("host_crash", line)

    assert acknowledged, "nothing was acknowledged before the crash"
    assert hooks > 0, "no hook arrived"
    assert repeated == 0, line  # whatever Redis forgot, a version is never reused
    if durable:
        assert not lost, f"acknowledged tasks lost: {lost[:10]}; {line}"
        assert not duplicates, f"interactions sent twice: {duplicates}; {line}"
        assert set(nonce_counts) <= {1}, line
        assert not unfinished, f"tasks did not end: {unfinished[:10]}; {line}"
