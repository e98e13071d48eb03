"""The whole pipeline through mjsim at speed 0, every process real (tests/e2e_support.Stack).

Figures:
- tasks_per_s: 10 accounts x core 3, imagines from submit to their SUCCESS hook (target >= 200/s);
- cpu_ms_per_task_<process>: CPU time (user + system) each process spent per task during that run,
  this one included (load generator and hook receiver): on a small machine the processes share the
  cores, so their sum bounds tasks_per_s;
- event_to_hook_p50/p99_ms: from the bridge receiving a job's final MESSAGE_CREATE (the event's `at`)
  to the SUCCESS hook arriving at the receiver, under a paced load (target p99 < 20 ms);
- bridge_rss_mb_per_account: one bridge process holding 100 connected accounts (target <= 15 MB).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psutil
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from e2e_support import Stack  # noqa: E402

from broker import keys  # noqa: E402
from broker.redis_client import connect  # noqa: E402

THROUGHPUT_TASKS = 1500
# Latency is measured well below the stack's capacity (180-210 tasks/s with every process on
# 2 cores): at capacity it would measure queueing, not the path.
PACED_TASKS = 150
PACED_RATE = 10.0


async def _submit_many(stack: Stack, prompts: list[str], concurrency: int) -> list[str]:
    # aiohttp rather than the stack's httpx client: the load generator shares the two cores with
    # the stack, and httpx costs several times the CPU per request.
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(
        base_url=str(stack.api.base_url), headers=dict(stack.api.headers)
    ) as session:

        async def one(prompt: str) -> None:
            body = {"prompt": prompt, "notifyHook": stack.hook_url("b")}
            async with sem, session.post("/mj/submit/imagine", json=body) as response:
                reply = await response.json()
            if reply["code"] in (1, 22):
                ids.append(str(reply["result"]))

        await asyncio.gather(*(one(p) for p in prompts))
    return ids


class _SuccessLog:
    """When each task's first SUCCESS hook arrived, read incrementally from the receiver.

    The bench polls it while the stack runs, so it must not re-read every hook on each poll.
    """

    def __init__(self, stack: Stack) -> None:
        self.received = stack.receiver.received
        self.seen = 0
        self.done: dict[str, float] = {}

    def update(self) -> dict[str, float]:
        for received in self.received[self.seen :]:
            if b'"SUCCESS"' not in received.body:
                continue
            body = msgspec.json.decode(received.body)
            if body.get("status") == "SUCCESS":
                self.done.setdefault(str(body["id"]), received.at)
        self.seen = len(self.received)
        return self.done


def _cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time (user + system) used so far by each process of the stack, and by this one."""
    pids = {name: proc.process.pid for name, proc in stack.procs.items() if proc.process is not None}
    if stack.redis.process is not None:
        pids["redis"] = stack.redis.process.pid
    pids["bench"] = os.getpid()
    used: dict[str, float] = {}
    for name, pid in pids.items():
        process = psutil.Process(pid)
        used[name] = 0.0
        # granian's web workers are children of the process the stack started
        children = process.children(recursive=True) if name != "bench" else []
        for one in [process, *children]:
            times = one.cpu_times()
            used[name] += times.user + times.system
    return used


async def _throughput(stack: Stack) -> tuple[float, dict[str, float]]:
    """Tasks per second from the first submit to the last SUCCESS hook, and CPU ms per task by process."""
    prompts = [f"throughput {i} a tiny watercolor" for i in range(THROUGHPUT_TASKS)]
    cpu_before = _cpu_seconds(stack)
    started = time.time()
    ids = await _submit_many(stack, prompts, 64)
    wanted = set(ids)
    successes = _SuccessLog(stack)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if wanted <= successes.update().keys():
            break
        await asyncio.sleep(0.1)
    done = successes.update()
    cpu_after = _cpu_seconds(stack)
    finished = [done[i] for i in wanted if i in done]
    if not finished:
        return 0.0, {}
    cpu_ms = {
        f"cpu_ms_per_task_{name}": (cpu_after[name] - used) * 1000 / len(finished)
        for name, used in cpu_before.items()
        if name in cpu_after
    }
    return len(finished) / (max(finished) - started), cpu_ms


async def _event_to_hook(stack: Stack) -> tuple[float, float, int, float]:
    # Spread each job's events as the real bot does (progress edits seconds apart, here 0.25 s):
    # with no gap, the final would wait for its own start and progress, all sent in the same ms.
    await stack.sim_control(
        "PATCH", "/_sim/settings", {"speed": 1.0, "job_seconds": 0.75, "progress_steps": 2}
    )
    prompts = {f"paced {i} a small sketch of a bird": "" for i in range(PACED_TASKS)}
    for prompt in prompts:
        reply = await stack.post("/mj/submit/imagine", {"prompt": prompt, "notifyHook": stack.hook_url("p")})
        prompts[prompt] = str(reply["result"])
        await asyncio.sleep(1 / PACED_RATE)
    await asyncio.sleep(3)
    redis = connect(stack.redis.url)
    try:
        rows = await redis.xrevrange(keys.EVENTS_STREAM, count=20_000)
    finally:
        await redis.aclose()
    final_at: dict[str, int] = {}
    to_stream: list[float] = []
    for entry_id, fields in rows:
        if fields[b"t"] != b"MESSAGE_CREATE":
            continue
        d = msgspec.json.decode(fields[b"d"])
        if not d.get("components") or not d.get("attachments"):
            continue
        content = str(d.get("content", ""))
        for prompt, task_id in prompts.items():
            if f"**{prompt}" in content:
                final_at[task_id] = int(fields[b"at"])
                # the stream id's first part is Redis's clock (ms) at XADD: the bridge's own share
                to_stream.append(int(entry_id.split(b"-")[0]) - int(fields[b"at"]))
    hooks = _SuccessLog(stack).update()
    lat = sorted(hooks[t] * 1000 - at for t, at in final_at.items() if t in hooks)
    if not lat:
        return 0.0, 0.0, 0, 0.0
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    to_stream.sort()
    bridge_p99 = float(to_stream[min(len(to_stream) - 1, int(len(to_stream) * 0.99))]) if to_stream else 0.0
    return statistics.median(lat), p99, len(lat), bridge_p99


def _stack(root: Path, worker_processes: int) -> Stack:
    return Stack(
        root,
        accounts=10,
        core_size=3,
        queue_size=1000,
        timeout_minutes=5,
        job_seconds=0.0,
        speed=0.0,
        progress_steps=1,
        worker_processes=worker_processes,
    )


async def _pipeline() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mjb-bench-"))
    stack = _stack(root / "one", 1)
    await stack.start()
    try:
        rate, cpu_ms = await _throughput(stack)
        p50, p99, n, bridge_p99 = await _event_to_hook(stack)
    finally:
        await stack.close()
    # Workers scale by running more of them; on this 2-core machine they compete with the rest.
    stack = _stack(root / "two", 2)
    await stack.start()
    try:
        rate_two, _ = await _throughput(stack)
    finally:
        await stack.close()
    return {
        "tasks_per_s": rate,
        "tasks_per_s_two_workers": rate_two,
        "event_to_hook_p50_ms": p50,
        "event_to_hook_p99_ms": p99,
        "event_to_hook_samples": n,
        "bridge_event_to_stream_p99_ms": bridge_p99,
        **cpu_ms,
        "cpu_ms_per_task_total": sum(cpu_ms.values()),
    }


async def _rss() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mjb-bench-rss-"))
    stack = Stack(root, accounts=100, core_size=3, job_seconds=0.0, speed=0.0)
    stack.write_config()
    await stack.receiver.start()
    stack.redis.start()
    stack.procs["mjsim"].start()
    try:
        await stack._wait_http(stack.sim, "/_sim/health", "mjsim")
        stack.procs["bridge"].start()
        await stack.wait_accounts_online(within=120)
        await asyncio.sleep(2)
        process = stack.procs["bridge"].process
        assert process is not None
        rss = psutil.Process(process.pid).memory_info().rss / 1e6
    finally:
        await stack.close()
    return {"bridge_rss_mb_100_accounts": rss, "bridge_rss_mb_per_account": rss / 100}


def run() -> dict[str, Any]:
    # uvloop, as the stack's own processes: the load generator and hook receiver share their cores
    figures = uvloop.run(_pipeline())
    figures.update(uvloop.run(_rss()))
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
