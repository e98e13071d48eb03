"""Many processes: 2 web, 2 worker and 2 bridge processes over 6 accounts, one of each SIGKILLed mid-run.

The design's claim (DESIGN.md §2, §7): web, worker and bridge processes scale by running more of
them, against one Redis, and killing any of them at any moment loses no accepted task and sends no
interaction twice. Here every process is real, each web on its own port. The bridges split the six
accounts through their leases (three each) before anything is submitted. Submits and fetches are
spread over both webs. With every slot busy and most tasks queued, one web, one worker and one
bridge are SIGKILLed at once; then a second wave is submitted to the surviving web.

What must hold:

- the killed bridge's accounts move to the other bridge once their leases run out (its catch-up
  re-reads the channel, so the jobs that finished meanwhile are not lost);
- the killed worker's pending stream entries are claimed by the other worker (``--claim-idle-seconds``
  is small here, so the claim is quick); none stays pending under the dead consumers' names;
- every accepted task ends within its timeout. Every task whose interaction reached mjsim ends
  SUCCESS. One the killed bridge had claimed (SUBMITTED, nonce written) but not yet sent is never
  sent afterwards, by design (a claimed task is never sent twice): it must end FAILURE "the bot
  never acknowledged the job", on an account of the killed bridge. The figures print how many;
- mjsim received no interaction twice (no request key twice, no nonce twice);
- each task's hooks arrive in non-decreasing version order with exactly one terminal version: a
  delivery the killed worker made but had not recorded is POSTed again by the other worker (hooks
  are at least once, README "Notify hooks"), so the same terminal version may arrive twice; such
  repeats are counted and printed, a second, different terminal version fails the test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import TERMINAL, Stack
from redis.exceptions import RedisError

from broker import keys
from broker.redis_client import BoundedRedis

ACCOUNTS = 6
CORE = 3
FIRST_WAVE = 66
SECOND_WAVE = 12
TIMEOUT_MINUTES = 0.3
#: the Stack's queue timeout: max(timeout * 3, 1 minute)
QUEUE_TIMEOUT_MINUTES = 1.0
#: the sweeper runs every second, and a hook follows its write: what "within" may add
SLACK_MS = 5_000
HOOK_PATH = "procs"
NEVER_SENT = "the bot never acknowledged the job"


async def _holders(client: BoundedRedis) -> dict[str, str | None]:
    """Account id -> the bridge id holding its lease."""
    ids = [f"a{i}" for i in range(ACCOUNTS)]
    values = await client.mget([keys.account_lease(a) for a in ids])
    return {a: (v.decode() if v is not None else None) for a, v in zip(ids, values, strict=True)}


async def _wait_holders(client: BoundedRedis, ok: Any, within: float) -> dict[str, str | None]:
    """Until `ok(holders)`; the holders then. Polls the leases (no event to wait on: they live in Redis)."""
    async with asyncio.timeout(within):
        while True:
            with contextlib.suppress(RedisError, OSError):
                holders = await _holders(client)
                if ok(holders):
                    return holders
            await asyncio.sleep(0.1)


async def _wait_workers(client: BoundedRedis, count: int, within: float) -> None:
    """Until `count` worker processes have a live heartbeat (`broker.heartbeat`)."""
    async with asyncio.timeout(within):
        while await client.zcount(keys.WORKERS, time.time() * 1000, "+inf") < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _pid_of_bridge(bridge_id: str) -> int:
    """A bridge id is host:pid:random (`discord_bridge.main.Bridge`)."""
    return int(bridge_id.split(":")[-2])


async def _pending_by_consumer(client: BoundedRedis) -> dict[str, int]:
    """Pending entries of every consumer of every stream's groups, whatever the key layout."""
    pending: collections.Counter[str] = collections.Counter()
    async for name in client.scan_iter(_type="STREAM"):
        for group in await client.xinfo_groups(name):
            for consumer in await client.xinfo_consumers(name, group["name"]):
                pending[consumer["name"].decode()] += int(consumer["pending"])
    return dict(pending)


def _of_pid(pending: dict[str, int], pid: int) -> int:
    """A worker's consumers are named host-pid-random[-finishN] (`workers.main`)."""
    return sum(n for name, n in pending.items() if f"-{pid}-" in name)


async def _wait_pending(client: BoundedRedis, pid: int, within: float) -> int:
    """Until the consumers of worker `pid` hold a pending entry; how many they hold then."""
    async with asyncio.timeout(within):
        while not (held := _of_pid(await _pending_by_consumer(client), pid)):  # noqa: ASYNC110 - Redis state
            await asyncio.sleep(0.05)
    return held


class Client:
    """Submits and reads tasks through every live web process in turn."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.webs = list(stack.apis)
        self.turn = 0
        self.accepted: list[str] = []
        self.codes: collections.Counter[int] = collections.Counter()
        self.by_web: collections.Counter[int] = collections.Counter()
        self.unanswered = 0

    def _next(self) -> tuple[int, httpx.AsyncClient]:
        self.turn += 1
        index = self.turn % len(self.webs)
        return index, self.webs[index]

    def drop(self, web: httpx.AsyncClient) -> None:
        self.webs.remove(web)

    async def submit(self, i: int) -> None:
        body = {"prompt": f"processes task {i} an ink drawing", "notifyHook": self.stack.hook_url(HOOK_PATH)}
        index, web = self._next()
        try:
            reply = (await web.post("/mj/submit/imagine", json=body, timeout=10)).json()
        except (httpx.HTTPError, ValueError):
            self.unanswered += 1
            return
        self.codes[int(reply["code"])] += 1
        if reply["code"] in (1, 22):
            self.accepted.append(str(reply["result"]))
            self.by_web[index] += 1

    async def tasks(self, ids: list[str]) -> list[dict[str, Any]]:
        _, web = self._next()
        response = await web.post("/mj/task/list-by-condition", json={"ids": ids}, timeout=10)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found

    async def wait_running(self, count: int, within: float) -> None:
        """Until `count` accepted tasks are IN_PROGRESS (the tasks live in Redis: polled)."""
        async with asyncio.timeout(within):
            while sum(t["status"] == "IN_PROGRESS" for t in await self.tasks(self.accepted)) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.1)

    async def wait_ended(self, within: float) -> list[dict[str, Any]]:
        """The accepted tasks once all are terminal, or as they are when `within` runs out."""
        deadline = time.monotonic() + within
        tasks: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                tasks = await self.tasks(self.accepted)
                if len(tasks) == len(self.accepted) and all(t["status"] in TERMINAL for t in tasks):
                    return tasks
            await asyncio.sleep(0.3)
        return tasks


def _late(task: dict[str, Any]) -> str | None:
    """Why `task` ended later than its timeouts allow, or None."""
    finish, start, submit = task.get("finishTime"), task.get("startTime"), task.get("submitTime")
    if not finish:
        return "no finishTime"
    if start and finish - start > TIMEOUT_MINUTES * 60_000 + SLACK_MS:
        return f"ran {(finish - start) / 1000:.1f}s"
    if submit and finish - submit > (QUEUE_TIMEOUT_MINUTES + TIMEOUT_MINUTES) * 60_000 + SLACK_MS:
        return f"ended {(finish - submit) / 1000:.1f}s after its submit"
    return None


def _without_terminal_hook(stack: Stack, task_ids: list[str]) -> list[str]:
    ended = {str(r.task["id"]) for r in stack.receiver.for_path(HOOK_PATH) if r.task["status"] in TERMINAL}
    return [task_id for task_id in task_ids if task_id not in ended]


def _hook_order(stack: Stack, task_ids: list[str]) -> tuple[dict[str, str], int]:
    """Per task, what is wrong with its hooks (versions going back, no terminal or two different
    terminal versions); and how many terminal hooks were repeats of one already received."""
    by_task: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for received in stack.receiver.for_path(HOOK_PATH):
        body = received.task
        by_task[str(body["id"])].append((received.version, str(body["status"])))
    wrong: dict[str, str] = {}
    repeats = 0
    for task_id in task_ids:
        hooks = by_task.get(task_id, [])
        versions = [v for v, _ in hooks]
        terminal = [v for v, status in hooks if status in TERMINAL]
        if versions != sorted(versions):
            wrong[task_id] = f"versions out of order: {versions}"
        elif len(set(terminal)) != 1:
            wrong[task_id] = f"terminal versions {terminal} in {hooks}"
        elif terminal[-1] != versions[-1]:
            wrong[task_id] = f"a hook after the terminal one: {hooks}"
        repeats += len(terminal) - 1
    return wrong, repeats


@pytest.mark.timeout(150)
async def test_two_of_each_process_survive_one_of_each_killed(tmp_path: Path, record_property: Any) -> None:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(f"processes: {line}", flush=True)

    stack = Stack(
        tmp_path,
        accounts=ACCOUNTS,
        core_size=CORE,
        queue_size=20,
        timeout_minutes=TIMEOUT_MINUTES,
        job_seconds=1.2,
        speed=1.0,
        progress_steps=2,
        lease_seconds=3.0,
        web_processes=2,
        worker_processes=2,
        bridge_processes=2,
        claim_idle_seconds=1.0,
    )
    await stack.start()
    redis = stack.client()
    try:
        # The first bridge up takes every account; the second's announcement makes it give three back.
        split = await _wait_holders(
            redis,
            lambda h: None not in h.values() and sorted(collections.Counter(h.values()).values()) == [3, 3],
            30,
        )
        await _wait_workers(redis, 2, within=30)
        victim = stack.procs["bridge2"]
        assert victim.process is not None
        moving = sorted(
            a for a, b in split.items() if b is not None and _pid_of_bridge(b) == victim.process.pid
        )
        assert len(moving) == 3, split
        client = Client(stack)
        started = time.monotonic()
        await asyncio.gather(*(client.submit(i) for i in range(FIRST_WAVE)))
        # Every slot busy (jobs sent, events flowing), most tasks still queued: then the kills.
        await client.wait_running(ACCOUNTS * CORE // 2, within=20)
        in_flight = sum(t["status"] not in TERMINAL for t in await client.tasks(client.accepted))
        assert all(proc.alive for proc in stack.procs.values()), stack.tail_all()
        worker_pid = stack.procs["worker2"].process.pid  # type: ignore[union-attr]
        # worker2 hangs first, then dies: Redis goes on handing new entries to its blocked reads,
        # so it dies holding entries it never acknowledged, which only a claim can recover.
        os.kill(worker_pid, signal.SIGSTOP)
        held = await _wait_pending(redis, worker_pid, within=10)
        stack.kill("web2")
        stack.kill("worker2")
        stack.kill("bridge2")
        killed_at = time.monotonic()
        client.drop(stack.apis[1])
        say(
            f"SIGKILLed web2, worker2 (hung, then killed holding {held} pending entries) "
            f"and bridge2 (holding {', '.join(moving)}) at +{killed_at - started:.1f}s with {in_flight} of "
            f"{len(client.accepted)} accepted tasks unfinished"
        )
        await asyncio.gather(*(client.submit(i) for i in range(FIRST_WAVE, FIRST_WAVE + SECOND_WAVE)))
        survivor = stack.procs["bridge"].process.pid  # type: ignore[union-attr]
        await _wait_holders(redis, lambda h: all(b and _pid_of_bridge(b) == survivor for b in h.values()), 20)
        moved_after = time.monotonic() - killed_at
        say(f"{', '.join(moving)} held by the surviving bridge {moved_after:.1f}s after the kill")
        within = (QUEUE_TIMEOUT_MINUTES + TIMEOUT_MINUTES) * 60 + 10
        tasks = await client.wait_ended(within)
        elapsed = time.monotonic() - started
        left_pending = _of_pid(await _pending_by_consumer(redis), worker_pid)
        counters = await stack.counters()
        # A task's terminal hook follows its terminal write: waited for, then checked below.
        with contextlib.suppress(TimeoutError):
            await stack.receiver.wait_for(
                lambda: _without_terminal_hook(stack, client.accepted) == [], within=15
            )
    finally:
        await redis.aclose()
        await stack.close()

    interactions = counters["interactions"]
    by_nonce: dict[str, int] = interactions["by_nonce"]
    duplicates: dict[str, int] = interactions["duplicate_keys"]
    by_status = collections.Counter(t["status"] for t in tasks)
    found = {t["id"] for t in tasks}
    missing = [i for i in client.accepted if i not in found]
    unfinished = [t["id"] for t in tasks if t["status"] not in TERMINAL]
    late = {t["id"]: why for t in tasks if t["status"] in TERMINAL and (why := _late(t)) is not None}
    sent = {t["id"] for t in tasks if by_nonce.get((t.get("properties") or {}).get("nonce", ""))}
    not_sent = [t for t in tasks if t["id"] not in sent]
    not_success = [
        (t["id"], t["status"], t.get("failReason"))
        for t in tasks
        if t["id"] in sent and t["status"] != "SUCCESS"
    ]
    wrong_hooks, repeats = _hook_order(stack, client.accepted)
    say(
        f"submitted={FIRST_WAVE + SECOND_WAVE} accepted={len(client.accepted)} (web {client.by_web[0]}, "
        f"web2 {client.by_web[1]}) codes={dict(client.codes)} unanswered={client.unanswered} "
        f"by_status={dict(by_status)} elapsed={elapsed:.1f}s"
    )
    say(
        f"interactions={interactions['total']} nonces={len(by_nonce)} duplicate_keys={len(duplicates)} "
        f"claimed but never sent (killed bridge)={len(not_sent)}; "
        f"hooks={len(stack.receiver.for_path(HOOK_PATH))} "
        f"terminal hooks repeated={repeats}; dead worker's entries still pending={left_pending}"
    )
    record_property("processes", "\n".join(lines))

    assert not missing, f"accepted tasks lost: {missing}"
    assert not unfinished, f"{len(unfinished)} tasks did not end: {unfinished[:8]}"
    assert not late, f"tasks ended after their timeout: {late}"
    assert not not_success, f"tasks sent to Discord that did not succeed: {not_success[:8]}"
    for task in not_sent:
        assert task["instanceId"] in moving and task["status"] == "FAILURE", task
        assert NEVER_SENT in (task.get("failReason") or ""), task
    assert len(not_sent) <= len(moving) * CORE, not_sent
    assert not duplicates, f"interactions sent twice: {duplicates}"
    assert set(by_nonce.values()) <= {1}, (
        f"a nonce sent more than once: {collections.Counter(by_nonce.values())}"
    )
    assert not wrong_hooks, f"hooks out of order: {dict(list(wrong_hooks.items())[:5])}"
    assert held > 0 and left_pending == 0, "the killed worker's pending entries were never claimed"
