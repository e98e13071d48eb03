"""Capacity: what one task (submit -> SUCCESS hook) costs Redis and each process, and the model built on it.

Every process real (`bench.stack.BenchStack`): Valkey, mjsim, web, worker(s), bridge.

1. **Measure** (30 accounts x core 3, one worker, the bridge's and sweeper's default rhythms). The
   stack idles `IDLE_SECONDS` first: the Redis
   commands, bytes and CPU of each process per second with no task (heartbeats, leases, gateway
   heartbeats, metrics snapshots). Then ``CONFIG RESETSTAT`` and `PACED_TASKS` imagines submitted at
   `PACED_RATE`/s, below the slots' pace, with mjsim's jobs spread as the real bot's are
   (`PROGRESS_STEPS` progress edits, 0.3 s apart here, 2-5 s on Discord): every event is its own
   write and hook, as in production, rather than merged with the next one. Per completed task:
   Redis commands (``INFO commandstats``: every command Redis ran, those inside Lua scripts
   included, so a script call counts as its EVALSHA plus its inner commands; the top
   `TOP_COMMANDS` by calls with their server time), bytes in and out (``INFO stats``
   total_net_input_bytes / total_net_output_bytes) and CPU seconds of every process
   (``/proc/<pid>/stat`` utime + stime through psutil, granian's children included). The idle
   cost over the run's length is taken out first, so the per-task figures are what a task adds.
2. **Model** (`bench.capacity_model`): tasks/s per Redis shard and per core of web, worker and bridge,
   and what deployments of 10, 100 and 1,000 accounts need at Midjourney's pace (3 jobs at once,
   45 s each: 0.067 tasks/s per account), each process kept at 50 % of its cores.
3. **Check**: the same workload flat out, `SATURATION_TASKS` submitted at once (the 90 slots offer
   60 tasks/s, more than the machine finishes), with 1 worker process (the same stack) and then 2 (a
   new one). The model's prediction for this machine (its cores shared by every process, mjsim and
   the load generator included, each single-threaded process capped at one core) is printed beside
   the measured tasks/s: completed / (last SUCCESS hook - first submit). ``cores_used`` is the CPU
   the stack's processes got per second of the run: fewer than the machine's cores when something
   else ran too, and then ``predicted_at_cores_used`` is the fair comparison (it compares the
   per-task costs at full load with the paced run's: batching makes them cheaper under load).

What the figures leave out: submits refused (any code but 1 and 22, counted by code) and tasks
accepted but not completed when a run ended (``unfinished``) are reported and not divided into the
per-task costs (their cost is in the totals); fetch polling (clients that poll ``/fetch`` instead
of taking hooks: see `api_bench` for a fetch's cost), image store copies (off here), translation,
and the fsync wait of ``appendfsync always``, which costs Redis wall time, not CPU.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from bench.capacity_model import PROCESSES, Costs, Pace, machine_prediction, needs, per_core
from bench.stack import BenchStack, Shape
from broker.redis_client import connect

#: 90 slots of 1.5 s jobs offer 60 tasks/s, more than 2 cores finish: the check runs are CPU-bound
ACCOUNTS = 30
CORE = 3
IDLE_SECONDS = 4.0
PACED_TASKS = 240
PACED_RATE = 12.0
PROGRESS_STEPS = 4
JOB_SECONDS = 1.5
SATURATION_TASKS = 600
TOP_COMMANDS = 8
DRAIN_SECONDS = 120.0
DEPLOYMENTS = (10, 100, 1000)
#: how long the web may take to answer after its start (a shared, loaded machine can take a minute)
START_SECONDS = 120.0


class RedisStats(msgspec.Struct, frozen=True):
    """Counters of ``INFO``: calls and server microseconds by command, bytes, commands processed."""

    calls: dict[str, int]
    usec: dict[str, int]
    net_in: int
    net_out: int
    commands: int

    def minus(self, other: RedisStats) -> RedisStats:
        return RedisStats(
            calls={k: v - other.calls.get(k, 0) for k, v in self.calls.items()},
            usec={k: v - other.usec.get(k, 0) for k, v in self.usec.items()},
            net_in=self.net_in - other.net_in,
            net_out=self.net_out - other.net_out,
            commands=self.commands - other.commands,
        )


async def _redis_stats(stack: BenchStack, *, reset: bool = False) -> RedisStats:
    redis = connect(stack.redis.url)
    try:
        if reset:
            await redis.config_resetstat()
        commands = await redis.info("commandstats")
        stats = await redis.info("stats")
    finally:
        await redis.aclose()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()}
    usec = {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in commands.items()}
    return RedisStats(
        calls=calls,
        usec=usec,
        net_in=int(stats["total_net_input_bytes"]),
        net_out=int(stats["total_net_output_bytes"]),
        commands=int(stats["total_commands_processed"]),
    )


def _cpu(stack: BenchStack) -> dict[str, float]:
    """CPU seconds so far by process, the worker processes added up under ``worker``."""
    used: dict[str, float] = {}
    for name, seconds in stack.cpu_seconds().items():
        key = "worker" if name.startswith("worker") else name
        used[key] = used.get(key, 0.0) + seconds
    return used


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


class Run(msgspec.Struct, kw_only=True):
    """One run's outcome: what happened to every submit, the rate, and what it cost."""

    submitted: int
    accepted: int
    rejected: dict[int, int]
    completed: int
    failed: int
    unfinished: int
    seconds: float
    tasks_per_s: float
    cpu: dict[str, float]

    def summary(self) -> str:
        rejected = ", ".join(f"code {c}: {n}" for c, n in sorted(self.rejected.items())) or "0"
        return (
            f"submitted {self.submitted}, accepted {self.accepted}, rejected {rejected}, completed "
            f"{self.completed}, failed {self.failed}, unfinished {self.unfinished}"
        )


async def _submit(stack: BenchStack, prompt: str) -> tuple[str | None, int]:
    assert stack.http is not None
    body = {"prompt": prompt, "notifyHook": stack.hooks.url("c")}
    async with stack.http.post(f"{stack.web_url}/mj/submit/imagine", json=body) as response:
        try:
            reply = await response.json(content_type=None)
            code = int(reply["code"])
        except (ValueError, KeyError, TypeError):
            return None, response.status
    return (str(reply["result"]) if code in (1, 22) else None), code


async def _run(stack: BenchStack, tasks: int, *, rate: float | None) -> Run:
    """Submit `tasks` imagines (`rate` per second, or 64 at a time when None), wait for their ends."""
    cpu_before = _cpu(stack)
    started = time.time()
    gate = asyncio.Semaphore(64)

    async def one(n: int) -> tuple[str | None, int]:
        async with gate:
            return await _submit(stack, f"capacity {n} {started} a pencil sketch")

    pending = []
    for n in range(tasks):
        pending.append(asyncio.create_task(one(n)))
        if rate is not None:
            await asyncio.sleep(1 / rate)
    replies = await asyncio.gather(*pending)
    accepted = {task_id for task_id, _ in replies if task_id is not None}
    terminal = stack.hooks.terminal
    deadline = time.monotonic() + DRAIN_SECONDS
    while not accepted <= terminal.keys() and time.monotonic() < deadline:
        stack.hooks.changed.clear()
        try:
            async with asyncio.timeout(1.0):
                await stack.hooks.changed.wait()
        except TimeoutError:
            pass
    ended = time.time()
    cpu = _minus(_cpu(stack), cpu_before)
    ends = [terminal[t] for t in accepted if t in terminal]
    done = [hook.at for hook in ends if hook.status == "SUCCESS"]
    return Run(
        submitted=tasks,
        accepted=len(accepted),
        rejected=dict(Counter(code for task_id, code in replies if task_id is None)),
        completed=len(done),
        failed=len(ends) - len(done),
        unfinished=len(accepted) - len(ends),
        seconds=ended - started,
        tasks_per_s=len(done) / (max(done) - started) if done else 0.0,
        cpu=cpu,
    )


class _ProductionRhythm(BenchStack):
    """The bench stack with the bridge's and sweeper's default rhythms (lease renewals, running-set
    reconciles, status writes, sweeps), rather than the faster ones other benches use to start
    quickly: the idle cost is then what a deployment pays."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        del config["bridge"]
        del config["tasks"]["sweep_seconds"]
        return config


def _stack(*, workers: int, speed: float) -> BenchStack:
    root = Path(tempfile.mkdtemp(prefix="mjb-bench-capacity-"))
    shape = Shape(
        accounts=ACCOUNTS,
        core_size=CORE,
        worker_processes=workers,
        speed=speed,
        job_seconds=JOB_SECONDS,
        progress_steps=PROGRESS_STEPS,
    )
    return _ProductionRhythm(root, shape=shape)


async def _measure(stack: BenchStack) -> tuple[Costs, dict[str, Any]]:
    """Idle, then the paced run, on a started `stack` with one worker: the per-task costs."""
    await asyncio.sleep(2.0)  # the sessions' first READY, catch-up and status writes settle
    redis_idle0, cpu_idle0, idle_started = await _redis_stats(stack), _cpu(stack), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    redis_idle = (await _redis_stats(stack)).minus(redis_idle0)
    idle_seconds = time.monotonic() - idle_started
    idle_cpu = {k: v / idle_seconds for k, v in _minus(_cpu(stack), cpu_idle0).items()}
    before = await _redis_stats(stack, reset=True)
    run = await _run(stack, PACED_TASKS, rate=PACED_RATE)
    redis_run = (await _redis_stats(stack)).minus(before)
    n = max(run.completed, 1)
    share = run.seconds / idle_seconds  # the idle cost that fell within the run, taken out
    cpu_per_task = {k: max(v - idle_cpu.get(k, 0.0) * run.seconds, 0.0) / n for k, v in run.cpu.items()}
    calls = {k: (v - redis_idle.calls.get(k, 0) * share) / n for k, v in redis_run.calls.items()}
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:TOP_COMMANDS]
    figures: dict[str, Any] = {
        "measure_run": run.summary() + f" in {run.seconds:.1f}s at {PACED_RATE:.0f} submits/s",
        "redis_commands_per_task": (redis_run.commands - redis_idle.commands * share) / n,
        "redis_bytes_in_per_task": (redis_run.net_in - redis_idle.net_in * share) / n,
        "redis_bytes_out_per_task": (redis_run.net_out - redis_idle.net_out * share) / n,
        "redis_top_commands_per_task": ", ".join(
            f"{k} {v:.1f} ({redis_run.usec.get(k, 0) / max(redis_run.calls[k], 1):.1f} us)" for k, v in top
        ),
        "idle_redis_commands_per_s": redis_idle.commands / idle_seconds,
        "idle_cpu_ms_per_s": ", ".join(f"{k} {v * 1000:.1f}" for k, v in idle_cpu.items()),
        **{f"cpu_ms_per_task_{k}": v * 1000 for k, v in cpu_per_task.items()},
    }
    return Costs(cpu_per_task=cpu_per_task, idle_cpu_per_s=idle_cpu, accounts=ACCOUNTS), figures


def _model(costs: Costs) -> dict[str, Any]:
    pace = Pace()
    figures: dict[str, Any] = {
        f"tasks_per_s_per_{'redis_shard' if p == 'redis' else p + '_core'}": rate
        for p, rate in per_core(costs).items()
    }
    figures["assumed_account_pace"] = (
        f"{pace.slots} jobs at once x 1 per {pace.job_seconds:.0f}s = "
        f"{pace.tasks_per_s:.3f} tasks/s per account"
    )
    for accounts in DEPLOYMENTS:
        need = needs(costs, accounts, pace=pace)
        figures[f"deployment_{accounts}_accounts"] = f"{need['tasks_per_s']:.1f} tasks/s: " + ", ".join(
            f"{p} {int(need[p])}" for p in PROCESSES
        )
    return figures


def _cores() -> float:
    return float(len(os.sched_getaffinity(0)))


async def _check(stack: BenchStack, costs: Costs, workers: int) -> dict[str, Any]:
    """The saturation run on a started `stack`, against the prediction."""
    run = await _run(stack, SATURATION_TASKS, rate=None)
    predicted, bound = machine_prediction(costs.cpu_per_task, cores=_cores(), workers=workers)
    name = f"check_{workers}_worker{'s' if workers > 1 else ''}"
    n = max(run.completed, 1)
    used = sum(run.cpu.values()) / run.seconds
    at_used, _ = machine_prediction(costs.cpu_per_task, cores=used, workers=workers)
    return {
        f"{name}_predicted_tasks_per_s": predicted,
        f"{name}_bound": bound,
        # what the stack's processes got of the cores: fewer than the machine's when another load
        # shared them, and then the prediction for the cores they got is the one to compare
        f"{name}_cores_used": used,
        f"{name}_predicted_at_cores_used": at_used,
        f"{name}_measured_tasks_per_s": run.tasks_per_s,
        f"{name}_measured_over_predicted": run.tasks_per_s / predicted,
        f"{name}_measured_over_predicted_at_cores_used": run.tasks_per_s / at_used,
        f"{name}_run": run.summary()
        + "; cpu ms/task "
        + ", ".join(f"{k} {v * 1000 / n:.2f}" for k, v in run.cpu.items()),
    }


async def _capacity() -> dict[str, Any]:
    # One stack for the measure and the one-worker check (a stack's start is the slow part), then
    # one with two workers.
    stack = _stack(workers=1, speed=1.0)
    try:
        await stack.start(within=START_SECONDS)
        costs, figures = await _measure(stack)
        figures.update(_model(costs))
        figures.update(await _check(stack, costs, 1))
    finally:
        await stack.close()
    stack = _stack(workers=2, speed=1.0)
    try:
        await stack.start(within=START_SECONDS)
        figures.update(await _check(stack, costs, 2))
    finally:
        await stack.close()
    return figures


def run() -> dict[str, Any]:
    return uvloop.run(_capacity())


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
