"""The whole pipeline through mjsim at speed 0, every process real (`bench.stack.BenchStack`).

Throughput run (10 accounts x core 3, queue 1000 each, one worker process): `THROUGHPUT_TASKS`
imagines are POSTed by 64 concurrent requests; the run ends when every accepted task had a
terminal hook, or `DRAIN_SECONDS` after the last reply. Its figures:

- ``submitted``, ``accepted`` (code 1 or 22), ``rejected`` (any other code, counted by code: 23 is a
  full queue), ``completed`` (a SUCCESS hook arrived), ``failed`` (a FAILURE or CANCEL hook arrived)
  and ``unfinished`` (accepted, no terminal hook when the run ended): what the rate leaves out;
- ``tasks_per_s`` = completed / (arrival of the last SUCCESS hook - the moment the first submit was
  sent): only tasks that finished count, over the whole time from the first request to the last
  finish (the submits, the queueing behind 30 slots, the jobs and the hooks);
- ``cpu_ms_per_task_<process>``: the CPU time (user + system, children included) each process spent
  during the run, per completed task, this bench process too (load generator and hook receiver):
  on a small machine they share the cores, so their sum bounds ``tasks_per_s``.

Then, on the current tree only: ``event_to_hook_p50/p99_ms`` from the bridge receiving a job's final
MESSAGE_CREATE (the event's ``at``) to its SUCCESS hook arriving, under a paced load (target p99 <
20 ms); ``tasks_per_s_two_workers``; ``bridge_rss_mb_per_account`` with 100 connected accounts.

With a baseline tree (``make bench BASELINE=<ref>``), the throughput run alternates between the two
trees, after before after before (`ROUNDS` each), and the figures add each side's runs, the ratio
after/before of their mean ``tasks_per_s`` (the issue's target: >= 0.75), that ratio round by round,
and each side's CPU per task by process with their ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from bench.stack import BenchStack, ProductTree, Shape
from broker import keys
from broker.redis_client import connect

THROUGHPUT_TASKS = 1500
#: how long the run waits after the last reply for the accepted tasks to finish
DRAIN_SECONDS = 120.0
#: throughput runs per side in an A/B invocation
ROUNDS = 2
# Latency is measured well below the stack's capacity (180-210 tasks/s with every process on
# 2 cores): at capacity it would measure queueing, not the path.
PACED_TASKS = 150
PACED_RATE = 10.0


class Outcome(msgspec.Struct, kw_only=True):
    """What one throughput run did with every task it submitted."""

    submitted: int
    accepted: int
    rejected: dict[int, int]
    completed: int
    failed: int
    unfinished: int
    tasks_per_s: float
    cpu_ms_per_task: dict[str, float]

    def summary(self) -> str:
        rejected = ", ".join(f"code {c}: {n}" for c, n in sorted(self.rejected.items())) or "0"
        return (
            f"{self.tasks_per_s:.1f} tasks/s; submitted {self.submitted}, accepted {self.accepted}, "
            f"rejected {rejected}, completed {self.completed}, failed {self.failed}, "
            f"unfinished {self.unfinished}; cpu ms/task {sum(self.cpu_ms_per_task.values()):.2f}"
        )


async def _submit_many(stack: BenchStack, prompts: list[str], concurrency: int) -> dict[str, int]:
    """POST every prompt (at most `concurrency` at once); returns task id -> reply code.

    Rejected submits have no id worth following: they are keyed ``rejected-<n>``.
    """
    codes: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    http = stack.http
    assert http is not None
    hook = stack.hooks.url("b")

    async def one(n: int, prompt: str) -> None:
        body = {"prompt": prompt, "notifyHook": hook}
        async with sem, http.post(f"{stack.web_url}/mj/submit/imagine", json=body) as response:
            try:
                reply = await response.json(content_type=None)
                code = int(reply["code"])
            except (ValueError, KeyError, TypeError):
                reply, code = {}, response.status  # not an API reply: counted under its HTTP status
        codes[str(reply["result"]) if code in (1, 22) else f"rejected-{n}"] = code

    await asyncio.gather(*(one(n, p) for n, p in enumerate(prompts)))
    return codes


async def _throughput(stack: BenchStack) -> Outcome:
    prompts = [f"throughput {i} a tiny watercolor" for i in range(THROUGHPUT_TASKS)]
    cpu_before = stack.cpu_seconds()
    started = time.time()
    codes = await _submit_many(stack, prompts, 64)
    accepted = {task_id for task_id, code in codes.items() if code in (1, 22)}
    terminal = stack.hooks.terminal
    deadline = time.monotonic() + DRAIN_SECONDS
    while not accepted <= terminal.keys() and time.monotonic() < deadline:
        stack.hooks.changed.clear()
        # woken by the next hook, or once a second to look at the clock
        try:
            async with asyncio.timeout(1.0):
                await stack.hooks.changed.wait()
        except TimeoutError:
            pass
    cpu_after = stack.cpu_seconds()
    ends = [terminal[t] for t in accepted if t in terminal]
    done = [hook.at for hook in ends if hook.status == "SUCCESS"]
    completed = len(done)
    return Outcome(
        submitted=len(prompts),
        accepted=len(accepted),
        rejected=dict(Counter(code for code in codes.values() if code not in (1, 22))),
        completed=completed,
        failed=len(ends) - completed,
        unfinished=len(accepted) - len(ends),
        tasks_per_s=completed / (max(done) - started) if done else 0.0,
        cpu_ms_per_task={
            name: (cpu_after[name] - used) * 1000 / max(completed, 1)
            for name, used in cpu_before.items()
            if name in cpu_after
        },
    )


async def _event_to_hook(stack: BenchStack) -> dict[str, Any]:
    # Spread each job's events as the real bot does (progress edits seconds apart, here 0.25 s):
    # with no gap, the final would wait for its own start and progress, all sent in the same ms.
    await stack.sim_settings(speed=1.0, job_seconds=0.75, progress_steps=2)
    assert stack.http is not None
    prompts: dict[str, str] = {}
    for i in range(PACED_TASKS):
        prompt = f"paced {i} a small sketch of a bird"
        body = {"prompt": prompt, "notifyHook": stack.hooks.url("p")}
        async with stack.http.post(f"{stack.web_url}/mj/submit/imagine", json=body) as response:
            prompts[prompt] = str((await response.json())["result"])
        await asyncio.sleep(1 / PACED_RATE)
    await asyncio.sleep(3)
    redis = connect(stack.redis.url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for stream in keys.EVENTS_STREAMS:
                pipe.xrevrange(stream, count=20_000)
            rows = [row for shard in await pipe.execute() for row in shard]
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
    terminal = stack.hooks.terminal
    lat = sorted(
        terminal[t].at * 1000 - at
        for t, at in final_at.items()
        if t in terminal and terminal[t].status == "SUCCESS"
    )
    return {
        "event_to_hook_p50_ms": statistics.median(lat) if lat else float("nan"),
        "event_to_hook_p99_ms": _p99(lat),
        "event_to_hook_samples": f"{len(lat)} of {PACED_TASKS} tasks",
        "bridge_event_to_stream_p99_ms": _p99(sorted(to_stream)),
    }


def _p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else float("nan")


def _stack(product: ProductTree, worker_processes: int = 1) -> BenchStack:
    root = Path(tempfile.mkdtemp(prefix=f"mjb-bench-{product.label}-"))
    return BenchStack(root, product=product, shape=Shape(worker_processes=worker_processes))


async def _run_throughput(product: ProductTree, *, paced: bool = False) -> tuple[Outcome, dict[str, Any]]:
    """One throughput run on a fresh stack of `product` (and the paced latency run after it)."""
    stack = _stack(product)
    await stack.start()
    extra: dict[str, Any] = {}
    try:
        proof = product.check(stack.running())
        outcome = await _throughput(stack)
        if paced:
            extra = await _event_to_hook(stack)
    finally:
        await stack.close()
    extra[f"{product.label}_tree"] = f"{product.ref}: {proof}"
    return outcome, extra


def _figures(outcome: Outcome, prefix: str = "") -> dict[str, Any]:
    return {
        f"{prefix}tasks_per_s": outcome.tasks_per_s,
        f"{prefix}submitted": outcome.submitted,
        f"{prefix}accepted": outcome.accepted,
        f"{prefix}rejected": sum(outcome.rejected.values()),
        **{f"{prefix}rejected_code_{code}": n for code, n in sorted(outcome.rejected.items())},
        f"{prefix}completed": outcome.completed,
        f"{prefix}failed": outcome.failed,
        f"{prefix}unfinished": outcome.unfinished,
    }


async def _pipeline(baseline: ProductTree | None) -> dict[str, Any]:
    current = ProductTree.current()
    figures: dict[str, Any] = {}
    first, extra = await _run_throughput(current, paced=True)
    figures.update(_figures(first))
    figures.update({f"cpu_ms_per_task_{k}": v for k, v in first.cpu_ms_per_task.items()})
    figures["cpu_ms_per_task_total"] = sum(first.cpu_ms_per_task.values())
    figures.update(extra)
    if baseline is not None:
        runs: dict[str, list[Outcome]] = {"after": [first], "before": []}
        order = [baseline, *[side for _ in range(ROUNDS - 1) for side in (current, baseline)]]
        for product in order:
            outcome, proof = await _run_throughput(product)
            runs[product.label].append(outcome)
            figures.update(proof)
        for label, outcomes in runs.items():
            for n, outcome in enumerate(outcomes, 1):
                figures[f"ab_{label}_run{n}"] = outcome.summary()
        mean = {label: statistics.mean(o.tasks_per_s for o in outcomes) for label, outcomes in runs.items()}
        figures["ab_tasks_per_s_after"] = mean["after"]
        figures["ab_tasks_per_s_before"] = mean["before"]
        figures["ab_tasks_per_s_ratio (target >= 0.75)"] = mean["after"] / mean["before"]
        # each after run over the before run that followed it: a drift of the machine's load
        # between rounds shows as a spread here
        figures["ab_tasks_per_s_ratio_by_round"] = ", ".join(
            f"{a.tasks_per_s / b.tasks_per_s:.3f}" for a, b in zip(runs["after"], runs["before"], strict=True)
        )
        cpu = {label: statistics.mean(sum(o.cpu_ms_per_task.values()) for o in runs[label]) for label in runs}
        figures["ab_cpu_ms_per_task_ratio_after_over_before"] = cpu["after"] / cpu["before"]
        for label, outcomes in runs.items():
            per_process = {
                name: statistics.mean(o.cpu_ms_per_task.get(name, 0.0) for o in outcomes)
                for name in outcomes[0].cpu_ms_per_task
            }
            figures[f"ab_cpu_ms_per_task_{label}"] = f"{sum(per_process.values()):.2f} = " + ", ".join(
                f"{name} {ms:.2f}" for name, ms in per_process.items()
            )
    # Workers scale by running more of them; on this 2-core machine they compete with the rest.
    stack = _stack(current, worker_processes=2)
    await stack.start()
    try:
        two = await _throughput(stack)
    finally:
        await stack.close()
    figures["tasks_per_s_two_workers"] = two.tasks_per_s
    figures["two_workers_run"] = two.summary()
    return figures


async def _rss() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mjb-bench-rss-"))
    stack = BenchStack(root, shape=Shape(accounts=100))
    try:
        await stack.start(services=["bridge"])
        await asyncio.sleep(2)
        rss = stack.services["bridge"].rss_bytes() / 1e6
    finally:
        await stack.close()
    return {"bridge_rss_mb_100_accounts": rss, "bridge_rss_mb_per_account": rss / 100}


def run(baseline: ProductTree | None = None) -> dict[str, Any]:
    # uvloop, as the stack's own processes: the load generator and hook receiver share their cores
    figures = uvloop.run(_pipeline(baseline))
    figures.update(uvloop.run(_rss()))
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
