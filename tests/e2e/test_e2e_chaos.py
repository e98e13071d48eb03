"""Chaos: 200 tasks over 5 accounts while the bridge, the worker, the web process and Redis die.

Every accepted task must end (SUCCESS, FAILURE or CANCEL) within its timeout, none may be lost, and
mjsim must never have received the same interaction twice.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from pathlib import Path

import pytest
from e2e_support import TERMINAL, Stack

from broker.redis_client import connect
from broker.store import TaskStore

TASKS = 200
TIMEOUT_MINUTES = 0.5


@pytest.mark.timeout(240)
async def test_chaos_no_task_lost_and_no_interaction_sent_twice(tmp_path: Path) -> None:
    rng = random.Random(int(time.time()))
    root = tmp_path
    stack = Stack(
        root,
        accounts=5,
        core_size=3,
        queue_size=50,
        timeout_minutes=TIMEOUT_MINUTES,
        job_seconds=0.8,
        speed=1.0,
        progress_steps=2,
        lease_seconds=3.0,
    )
    await stack.start()
    accepted: list[str] = []
    rejected = 0
    try:
        sem = asyncio.Semaphore(20)

        async def submit(i: int) -> None:
            nonlocal rejected
            async with sem:
                reply = await stack.post(
                    "/mj/submit/imagine",
                    {"prompt": f"chaos task number {i} a painting", "notifyHook": stack.hook_url("chaos")},
                )
            if reply["code"] in (1, 22):
                accepted.append(str(reply["result"]))
            else:
                rejected += 1

        await asyncio.gather(*(submit(i) for i in range(TASKS)))
        started = time.monotonic()

        for name in ("bridge", "worker", "web", "redis"):
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            stack.kill(name) if name != "redis" else None
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            stack.restart(name)
            print(f"chaos: {name} killed and restarted at +{time.monotonic() - started:.1f}s")

        redis = connect(stack.redis.url)
        store = TaskStore(redis, retention_seconds=3600)
        # queued tasks may wait behind a slot that only frees at a timeout: two timeouts and slack
        deadline = time.monotonic() + TIMEOUT_MINUTES * 60 * 3 + 20
        tasks = []
        while time.monotonic() < deadline:
            try:
                tasks = await store.get_many(accepted)
            except Exception:
                await asyncio.sleep(0.5)
                continue
            if len(tasks) == len(accepted) and all(t.status.value in TERMINAL for t in tasks):
                break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
        await redis.aclose()

        by_status = collections.Counter(t.status.value for t in tasks)
        reasons = collections.Counter(
            (t.fail_reason or "")[:70] for t in tasks if t.status.value == "FAILURE"
        )
        counters = await stack.counters()
        interactions = counters["interactions"]
        print(
            f"chaos: accepted={len(accepted)} rejected={rejected} found={len(tasks)} "
            f"by_status={dict(by_status)} elapsed={elapsed:.1f}s "
            f"interactions={interactions['total']} duplicates={len(interactions['duplicate_keys'])}"
        )
        for reason, n in reasons.most_common(5):
            print(f"chaos: {n} x FAILURE {reason!r}")
        assert len(tasks) == len(accepted), "a task record was lost"
        unfinished = [t for t in tasks if t.status.value not in TERMINAL]
        detail = [(t.id, t.status.value, t.instance_id, t.progress) for t in unfinished[:8]]
        assert not unfinished, f"{len(unfinished)} tasks did not end: {detail}\n{stack.tail_all()}"
        assert not interactions["duplicate_keys"], interactions["duplicate_keys"]
        assert all(n == 1 for n in interactions["by_nonce"].values())
        limit_ms = TIMEOUT_MINUTES * 60_000 + 10_000
        late = [
            t.id for t in tasks if t.start_time and t.finish_time and t.finish_time - t.start_time > limit_ms
        ]
        assert not late, f"{len(late)} tasks ended after their timeout"
        assert by_status["SUCCESS"] > len(accepted) // 2
    finally:
        await stack.close()
