"""Worker hot path: gateway event pushed into Redis -> notify-hook POST received on loopback.

An embedded Valkey and a minimal HTTP receiver run in this process; the worker runs as its own
process (`python -m workers`), as in production. 100 submitted tasks
get 10,000 progress events round-robin (each task's events 100 apart, paced at `RATE` events/s), so
every event makes a new revision and one POST; latency = receive time - time before XADD.
``worker_cpu_ms_per_hook`` is the worker process's CPU time (user + system) over the paced run,
divided by the hooks received: what the delivery path costs, parsing and Redis included.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil
import yaml

from broker.config import Account, HookSettings, Settings, TaskSettings
from broker.events import GatewayEvent, publish
from broker.models import Task, TaskAction, TaskProperties, TaskStatus
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis, free_port
from broker.store import TaskStore

EVENTS = 10_000
TASKS = 100
RATE = 250.0
MJ_BOT = {"id": "936929561302675456", "username": "Midjourney Bot", "bot": True}


class _Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = json.loads(await reader.readexactly(length))
                self.arrivals.setdefault((body["id"], body["progress"]), time.perf_counter())
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


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


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _main() -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="mjb-bench-")
    redis_server = EmbeddedRedis(port=free_port(), data_dir=data_dir)
    redis_server.start()
    receiver = _Receiver()
    http = await receiver.start()
    settings = Settings(
        hooks=HookSettings(default_url=f"http://127.0.0.1:{receiver.port}/hook"),
        tasks=TaskSettings(ledger_path=str(Path(data_dir) / "ledger.db")),
        accounts=(Account(id="a1", guild_id="g", channel_id="1", token="t", core_size=TASKS),),
    )
    settings = msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, url=redis_server.url)
    )
    redis = connect(redis_server.url)
    store = TaskStore(redis, retention_seconds=3600)
    config = Path(data_dir) / "config.yaml"
    config.write_text(yaml.safe_dump(msgspec.to_builtins(settings)))
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", "--config", str(config), "--log-level", "WARNING"
    )
    try:
        now = int(time.time() * 1000)
        ids: list[tuple[str, str]] = []
        for i in range(TASKS):
            task = Task(id=f"{now}{i:04d}", action=TaskAction.IMAGINE, prompt=f"bench {i}", instance_id="a1")
            await store.create_and_admit(task, "a1", core_size=TASKS, queue_size=0)
            msg_id = str(10**17 + i)
            await store.index("message", msg_id, task.id)
            await store.transition(
                task.id, TaskStatus.SUBMITTED, start_time=now, progress="0%", properties=TaskProperties()
            )
            ids.append((task.id, msg_id))
        async with asyncio.timeout(30):  # the worker is up once every SUBMITTED hook arrived
            while len(receiver.arrivals) < TASKS:  # noqa: ASYNC110 - polls the receiver, bounded
                await asyncio.sleep(0.05)
        sent: dict[tuple[str, str], float] = {}
        worker_cpu = psutil.Process(worker.pid)
        cpu_before = _cpu_seconds(worker_cpu)
        started = time.perf_counter()
        for n in range(EVENTS):
            task_id, msg_id = ids[n % TASKS]
            percent = n // TASKS + 1
            due = started + n / RATE
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sent[(task_id, f"{percent}%")] = time.perf_counter()
            event = GatewayEvent(
                account="a1",
                seq=n,
                t="MESSAGE_UPDATE",
                d=_progress(msg_id, f"bench {n % TASKS}", percent),
                at=0,
            )
            await publish(redis, event)
        deadline = time.perf_counter() + 10
        while len(receiver.arrivals) < len(sent) + TASKS and time.perf_counter() < deadline:  # noqa: ASYNC110 - polls Redis state, bounded by the timeout
            await asyncio.sleep(0.05)
        cpu_used = _cpu_seconds(worker_cpu) - cpu_before
        latencies = sorted(
            (receiver.arrivals[key] - t0) * 1000 for key, t0 in sent.items() if key in receiver.arrivals
        )
    finally:
        worker.terminate()
        await worker.wait()
        http.close()
        await redis.aclose()
        redis_server.stop()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return {
        "events": EVENTS,
        "rate_events_per_s": RATE,
        "hooks_received": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": p99,
        "max_ms": latencies[-1] if latencies else float("nan"),
        "target_p99_ms": 20.0,
        "worker_cpu_ms_per_hook": cpu_used * 1000 / len(latencies) if latencies else float("nan"),
    }


def run() -> dict[str, Any]:
    figures = asyncio.run(_main())
    for key, value in figures.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    return figures


if __name__ == "__main__":
    run()
