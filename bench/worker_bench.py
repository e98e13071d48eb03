"""Worker hot path: gateway event pushed into Redis -> notify-hook POST received on loopback.

An embedded Valkey and the benches' hook receiver (`bench.hooks.HookSink`) run in this process;
the worker runs as its own process (`python -m workers`), as in production. 100 submitted tasks
get 10,000 progress events round-robin (each task's events 100 apart, paced at `RATE` events/s);
each event makes a new revision of its task, with a higher progress than the one before.

Every event pushed is timed, the merged ones included: an event's latency runs from just before
its XADD to the arrival of the first hook of its task carrying its revision or a newer one (a
progress at least its own; progress only grows, so it stands for the revision). When a newer
revision overtook an older one before its hook went out, the worker sends only the newer one: the
older event is ``merged`` (no hook of its own) and its latency ends with the newer hook. Events
with no such hook within 10 s of the last push are ``unfinished`` and left out of the percentiles.

``worker_cpu_ms_per_hook`` is the worker process's CPU time (user + system) over the paced run,
divided by the hooks received; ``worker_cpu_ms_per_event`` divides it by the events pushed.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import yaml

from bench.hooks import HookSink, percent
from bench.stack import Child, ProductTree
from broker.admission import create_and_admit
from broker.config import Account, HookSettings, Settings, TaskSettings, UrlGuardSettings
from broker.events import GatewayEvent, publish
from broker.models import Task, TaskAction, TaskProperties, TaskStatus
from broker.queues import AccountQueues
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis, free_port
from broker.store import TaskStore

EVENTS = 10_000
TASKS = 100
RATE = 250.0
MJ_BOT = {"id": "936929561302675456", "username": "Midjourney Bot", "bot": True}


def _progress(msg_id: str, prompt: str, percent: int) -> bytes:
    d = {
        "id": msg_id,
        "channel_id": "1",
        "author": MJ_BOT,
        "content": f"**{prompt}** - <@1> ({percent}%) (fast)",
        "attachments": [],
        "components": [],
        "embeds": [],
    }
    return json.dumps(d).encode()


def _timed(sent: dict[tuple[str, int], float], sink: HookSink) -> tuple[list[float], int, int]:
    """Latency (ms) of every event that got its revision or a newer one delivered; merged; unfinished."""
    latencies: list[float] = []
    merged = unfinished = 0
    # per task: the hooks' arrival times and the highest progress delivered so far at each
    reached: dict[str, tuple[list[int], list[float], set[int]]] = {}
    for task_id, hooks in sink.by_task.items():
        high, times, highs = -1, [], []
        for hook in hooks:
            high = max(high, percent(hook.progress))
            highs.append(high)
            times.append(hook.at)
        reached[task_id] = (highs, times, {percent(h.progress) for h in hooks})
    for (task_id, step), t0 in sent.items():
        highs, times, own = reached.get(task_id, ([], [], set()))
        first = bisect.bisect_left(highs, step)
        if first == len(highs):
            unfinished += 1
            continue
        latencies.append((times[first] - t0) * 1000)
        merged += step not in own
    return sorted(latencies), merged, unfinished


async def _main() -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="mjb-bench-")
    redis_server = EmbeddedRedis(port=free_port(), data_dir=data_dir)
    redis_server.start()
    sink = HookSink()
    await sink.start()
    settings = Settings(
        hooks=HookSettings(default_url=sink.url()),
        url_guard=UrlGuardSettings(allow=(f"127.0.0.1:{sink.port}",)),  # the sink listens on loopback
        tasks=TaskSettings(ledger_path=str(Path(data_dir) / "ledger.db")),
        accounts=(Account(id="a1", guild_id="g", channel_id="1", token="t", core_size=TASKS),),
    )
    settings = msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, url=redis_server.url)
    )
    redis = connect(redis_server.url)
    store = TaskStore(redis, retention_seconds=3600)
    queues = AccountQueues(redis)
    config = Path(data_dir) / "config.yaml"
    config.write_text(yaml.safe_dump(msgspec.to_builtins(settings)))
    tree = ProductTree.current()
    worker = Child(
        "worker",
        [sys.executable, "-m", "workers", "--config", str(config), "--log-level", "WARNING"],
        cwd=tree.path,
        env=tree.env(os.environ, "worker"),
        log_dir=Path(data_dir),
    )
    worker.start()
    sent: dict[tuple[str, int], float] = {}
    try:
        now = int(time.time() * 1000)
        ids: list[tuple[str, str]] = []
        for i in range(TASKS):
            task = Task(id=f"{now}{i:04d}", action=TaskAction.IMAGINE, prompt=f"bench {i}", instance_id="a1")
            await create_and_admit(store, queues, task, "a1", core_size=TASKS, queue_size=0)
            msg_id = str(10**17 + i)
            await store.index("message", msg_id, task.id)
            await store.transition(
                task.id, TaskStatus.SUBMITTED, start_time=now, progress="0%", properties=TaskProperties()
            )
            ids.append((task.id, msg_id))
        async with asyncio.timeout(30):  # the worker is up once every SUBMITTED hook arrived
            while len(sink.by_task) < TASKS:  # noqa: ASYNC110 - polls the receiver, bounded
                await asyncio.sleep(0.05)
        hooks_before = sink.received
        cpu_before = worker.cpu_seconds()
        started = time.perf_counter()
        for n in range(EVENTS):
            task_id, msg_id = ids[n % TASKS]
            step = n // TASKS + 1
            due = started + n / RATE
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sent[(task_id, step)] = time.time()
            event = GatewayEvent(
                account="a1", seq=n, t="MESSAGE_UPDATE", d=_progress(msg_id, f"bench {n % TASKS}", step), at=0
            )
            await publish(redis, event)
        last = EVENTS // TASKS
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(  # noqa: ASYNC110 - polls the receiver, bounded
            sink.by_task[task_id] and percent(sink.by_task[task_id][-1].progress) >= last
            for task_id, _ in ids
        ):
            await asyncio.sleep(0.05)
        cpu_used = worker.cpu_seconds() - cpu_before
        hooks = sink.received - hooks_before
    finally:
        worker.stop()
        await sink.stop()
        await redis.aclose()
        redis_server.stop()
    latencies, merged, unfinished = _timed(sent, sink)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return {
        "events": len(sent),
        "rate_events_per_s": RATE,
        "hooks_received": hooks,
        "events_timed": len(latencies),
        "events_merged (no hook of their own)": merged,
        "events_unfinished": unfinished,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": p99,
        "max_ms": latencies[-1] if latencies else float("nan"),
        "target_p99_ms": 20.0,
        "worker_cpu_ms_per_hook": cpu_used * 1000 / hooks if hooks else float("nan"),
        "worker_cpu_ms_per_event": cpu_used * 1000 / len(sent),
    }


def run() -> dict[str, Any]:
    return asyncio.run(_main())


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
