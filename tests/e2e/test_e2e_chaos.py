"""Chaos: 200 tasks over 5 accounts while the bridge, the worker, the web process and Redis crash.

Every process, Redis included, is SIGKILLed at a random moment and started again after a random
pause; Redis comes back from its AOF (the embedded Valkey runs with appendonly yes, appendfsync
always). Part of the tasks are submitted while the crashes happen. The plan (order, moments,
pauses) comes from one seed, printed first; ``MJBROKER_CHAOS_SEED=<seed>`` replays the same plan
(the processes' own timing still varies from run to run).

What must hold (DESIGN.md §7): every accepted task ends (SUCCESS, FAILURE with a failReason, or
CANCEL) within its timeout, none is lost, and mjsim never received the same interaction twice
(`duplicate_keys` of ``/_sim/counters`` stays empty, each nonce once).

Just before a kill of Redis the test writes a marker and notes every task's revision; after the
restart it reads them back and prints what Redis lost (nothing, with appendfsync always: a SIGKILL
of the server alone leaves the page cache to the kernel). A task may be missing or sent twice only
if its own record went back across the crash. The host crash, which also loses what the kernel had
not written to disk, is `test_e2e_host_crash.py`.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import TERMINAL, Stack
from redis.exceptions import RedisError

from broker.models import Task, TaskStatus
from broker.store import TaskStore

SEED_ENV = "MJBROKER_CHAOS_SEED"
TASKS = 200
#: submitted while the processes crash (the rest before the first crash)
DURING = 50
TIMEOUT_MINUTES = 0.5
#: the Stack's queue timeout for these accounts: max(timeout * 3, 1 minute)
QUEUE_TIMEOUT_MINUTES = max(TIMEOUT_MINUTES * 3, 1.0)
#: the sweeper runs every second and the end is written after it: what "within" may add
SLACK_MS = 10_000
PROCESSES = ("bridge", "worker", "web", "redis")
MARKER_KEY = "chaos:marker"


@dataclass(frozen=True)
class Crash:
    """SIGKILL `name` `pause` seconds after the previous crash's restart; start it `down` s later."""

    name: str
    pause: float
    down: float


def plan(rng: random.Random) -> list[Crash]:
    """Each process once in a random order, then two more crashes of any of them."""
    names = [*rng.sample(PROCESSES, len(PROCESSES)), *rng.choices(PROCESSES, k=2)]
    return [Crash(name, round(rng.uniform(0.3, 2.0), 2), round(rng.uniform(0.1, 1.0), 2)) for name in names]


@dataclass
class RedisLoss:
    """What one SIGKILL of Redis took with it."""

    at: float
    marker_kept: bool
    #: task id -> (revision before the kill, revision found after the restart; 0 = record gone)
    went_back: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def lost_writes(self) -> bool:
        return not self.marker_kept or bool(self.went_back)


async def _revisions(store: TaskStore, ids: list[str]) -> dict[str, int]:
    found = {t.id: t.revision for t in await store.get_many(ids)}
    return {task_id: found.get(task_id, 0) for task_id in ids}


async def _crash_redis(stack: Stack, accepted: list[str], down: float, at: float) -> RedisLoss:
    """SIGKILL Redis right after a marker write and a note of every task's revision; then restart
    it from its AOF and read both back before anything else writes much."""
    probe = stack.client()
    store = TaskStore(probe, retention_seconds=3600)
    try:
        # The marker first: if it survives, so did every write acknowledged before it (the AOF is
        # replayed in order); the revisions read after it show which tasks lost writes if not.
        marker = f"{time.time_ns()}"
        await probe.set(MARKER_KEY, marker)
        before = await _revisions(store, list(accepted))
        stack.kill("redis")
    finally:
        await probe.aclose()
    await asyncio.sleep(down)
    stack.revive("redis")
    probe = stack.client()
    store = TaskStore(probe, retention_seconds=3600)
    try:
        kept = (await probe.get(MARKER_KEY)) == marker.encode()
        after = await _revisions(store, list(before))
    finally:
        await probe.aclose()
    went_back = {i: (before[i], after[i]) for i in before if after[i] < before[i]}
    return RedisLoss(at=at, marker_kept=kept, went_back=went_back)


class Submitter:
    """Posts imagines and sorts the answers: accepted (1, 22), refused (any other code), or
    unanswered (the web process or Redis was down: the client cannot know, so it is not counted)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.accepted: list[str] = []
        self.codes: collections.Counter[int] = collections.Counter()
        self.unanswered = 0
        self._gate = asyncio.Semaphore(20)

    async def submit(self, i: int) -> None:
        body = {"prompt": f"chaos task number {i} a painting", "notifyHook": self.stack.hook_url("chaos")}
        async with self._gate:
            try:
                response = await self.stack.api.post("/mj/submit/imagine", json=body, timeout=10)
                reply: dict[str, Any] = response.json()
            except (httpx.HTTPError, ValueError):
                self.unanswered += 1
                return
        code = int(reply.get("code", -1))
        self.codes[code] += 1
        if code in (1, 22):
            self.accepted.append(str(reply["result"]))


async def _wait_all_ended(store: TaskStore, ids: list[str], gone: set[str], within: float) -> list[Task]:
    """The tasks `ids` once every one is terminal, or as they are when `within` runs out; a task in
    `gone` (its record lost with a crash of Redis) is not waited for."""
    deadline = time.monotonic() + within
    tasks: list[Task] = []
    while time.monotonic() < deadline:
        try:
            tasks = await store.get_many(ids)
        except (RedisError, OSError):
            tasks = []
        found = {t.id for t in tasks}
        if set(ids) - gone <= found and all(t.status.is_terminal for t in tasks):
            return tasks
        await asyncio.sleep(0.5)
    return tasks


def _late(task: Task) -> str | None:
    """Why `task` ended later than its timeouts allow, or None."""
    if task.finish_time is None:
        return "no finishTime"
    if task.start_time and task.finish_time - task.start_time > TIMEOUT_MINUTES * 60_000 + SLACK_MS:
        return f"ran {(task.finish_time - task.start_time) / 1000:.1f}s"
    waited = task.finish_time - (task.submit_time or task.finish_time)
    if waited > (QUEUE_TIMEOUT_MINUTES + TIMEOUT_MINUTES) * 60_000 + SLACK_MS:
        return f"ended {waited / 1000:.1f}s after its submit"
    return None


@pytest.mark.timeout(300)
async def test_chaos_no_task_lost_and_no_interaction_sent_twice(tmp_path: Path, record_property: Any) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    crashes = plan(rng)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(f"chaos: {line}", flush=True)

    say(f"seed={seed} (rerun: {SEED_ENV}={seed}); plan: " + ", ".join(f"{c.name}" for c in crashes))
    stack = Stack(
        tmp_path,
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
    submitter = Submitter(stack)
    losses: list[RedisLoss] = []
    try:
        await asyncio.gather(*(submitter.submit(i) for i in range(TASKS - DURING)))
        started = time.monotonic()

        async def trickle() -> None:
            for i in range(TASKS - DURING, TASKS):
                await submitter.submit(i)
                await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        for crash in crashes:
            await asyncio.sleep(crash.pause)
            at = time.monotonic() - started
            if crash.name == "redis":
                loss = await _crash_redis(stack, submitter.accepted, crash.down, at)
                losses.append(loss)
                gone = "" if loss.marker_kept else ", the marker written just before it is GONE"
                say(
                    f"redis SIGKILLed at +{at:.1f}s, down {crash.down}s, restarted from its AOF{gone}; "
                    f"{len(loss.went_back)} tasks went back: {sorted(loss.went_back.items())[:10]}"
                )
            else:
                stack.kill(crash.name)
                await asyncio.sleep(crash.down)
                stack.revive(crash.name)
                say(f"{crash.name} SIGKILLed at +{at:.1f}s, down {crash.down}s, restarted")
        await trickling
        accepted = list(submitter.accepted)

        redis = stack.client()
        store = TaskStore(redis, retention_seconds=3600)
        try:
            # A queued task may wait behind slots that only free at a timeout: the queue timeout,
            # then its own run, and slack.
            within = (QUEUE_TIMEOUT_MINUTES + TIMEOUT_MINUTES) * 60 + 20
            gone = {i for loss in losses for i, (_, after) in loss.went_back.items() if after == 0}
            tasks = await _wait_all_ended(store, accepted, gone, within)
        finally:
            await redis.aclose()
        elapsed = time.monotonic() - started
        counters = await stack.counters()
    finally:
        await stack.close()

    interactions = counters["interactions"]
    by_nonce: dict[str, int] = interactions["by_nonce"]
    duplicates: dict[str, int] = interactions["duplicate_keys"]
    by_status = collections.Counter(t.status.value for t in tasks)
    found = {t.id for t in tasks}
    missing = [i for i in accepted if i not in found]
    unfinished = [t for t in tasks if t.status.value not in TERMINAL]
    no_reason = [t.id for t in tasks if t.status == TaskStatus.FAILURE and not t.fail_reason]
    late = {t.id: why for t in tasks if t.status.is_terminal and (why := _late(t)) is not None}
    nonce_counts = collections.Counter(by_nonce.values())
    say(
        f"submitted={TASKS} accepted={len(accepted)} codes={dict(submitter.codes)} "
        f"unanswered={submitter.unanswered} found={len(tasks)} by_status={dict(by_status)} "
        f"elapsed={elapsed:.1f}s"
    )
    say(
        f"interactions={interactions['total']} nonces={len(by_nonce)} "
        f"sends_per_nonce={dict(sorted(nonce_counts.items()))} duplicates={len(duplicates)}"
    )
    reasons = collections.Counter((t.fail_reason or "")[:70] for t in tasks if t.status == TaskStatus.FAILURE)
    for reason, n in reasons.most_common(5):
        say(f"{n} x FAILURE {reason!r}")
    lost = [loss for loss in losses if loss.lost_writes]
    if lost:
        say(
            "Redis LOST acknowledged writes at its SIGKILL (appendfsync everysec): "
            + "; ".join(
                f"+{loss.at:.1f}s marker {'kept' if loss.marker_kept else 'lost'}, "
                f"went back: {sorted(loss.went_back.items())}"
                for loss in lost
            )
            + f"; missing={missing} duplicates={duplicates}"
        )
    else:
        say(f"Redis lost no acknowledged write at its {len(losses)} SIGKILL(s)")
    record_property("chaos", "\n".join(lines))

    context = f"(seed {seed}: rerun with {SEED_ENV}={seed})"
    assert len(accepted) >= TASKS - DURING, f"the web refused tasks before any crash {context}"
    # Only a write Redis lost may explain a missing record or an interaction sent twice: the tasks
    # whose record went back across a crash of Redis (none when Redis lost nothing).
    gap_explains = {task_id for loss in lost for task_id in loss.went_back}
    assert set(missing) <= gap_explains, f"task records lost {context}: {missing}"
    detail = [(t.id, t.status.value, t.instance_id, t.progress) for t in unfinished[:8]]
    assert not unfinished, f"{len(unfinished)} tasks did not end {context}: {detail}"
    assert not no_reason, f"FAILURE without a failReason {context}: {no_reason}"
    assert not late, f"tasks ended after their timeout {context}: {late}"
    # Each prompt is one task's: a duplicated imagine key names the task sent twice.
    sent_twice = {t.id for t in tasks for key in duplicates if f'"{t.prompt}"' in key}
    assert len(sent_twice) == len(duplicates), f"duplicates of unknown tasks {context}: {duplicates}"
    assert sent_twice <= gap_explains, f"interactions sent twice {context}: {duplicates}"
    # A nonce is one claim: the same one twice is a request sent again, never explained by Redis.
    assert set(nonce_counts) <= {1}, f"a nonce sent more than once {context}: {nonce_counts}"
    assert by_status["SUCCESS"] > len(accepted) // 2, f"most tasks should succeed {context}"
