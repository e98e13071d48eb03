"""What durable acknowledgements cost: submit latency and pipeline throughput under three policies.

Every process real (`bench.stack.BenchStack`, 10 accounts x core 3), on the current tree, with:

- ``everysec`` (the yardstick, the policy before durable acknowledgements): the embedded Valkey
  fsyncs its AOF once a second in the background and the product does not wait for it
  (``redis.durability: none``): an acknowledged task may be lost with the host;
- ``always`` (the product's default): ``appendfsync always`` (the server fsyncs before it replies,
  one fsync per event-loop turn for every client's writes) and ``WAITAOF 1 0`` at the end of the
  admission's and the claim's round trips (answered at once, since the write is already on disk);
- ``everysec_waitaof``: ``appendfsync everysec`` and the same WAITAOF, which then waits for the
  server's next fsync (its cron runs 10 times a second): what an external Redis left on everysec
  costs with ``redis.durability: local``.

First, on an idle server (no stack): ``round_trip_*_ms``, the latency of a SET alone on
``everysec`` (the yardstick) and of a SET + WAITAOF pipeline on ``always`` and on ``everysec``
(`ALONE` each, one after the other): what one acknowledgement waits for, without the noise of a
whole stack. Then, for each policy, on a fresh stack: ``submit_p50/p99_ms`` of `SEQUENTIAL`
submits sent one after the other (latency without queueing), ``submit_rps`` and
``submit_loaded_p50/p99_ms`` of `CONCURRENCY` concurrent submitters for `LOAD_SECONDS` (the
accounts' queues are sized so none is refused), then the pipeline's ``tasks_per_s`` (as
`bench.pipeline_bench`: 1,500 imagines, first submit to last
SUCCESS hook). The policies alternate (`ROUNDS` each); the figures are the means of each and
their ratios to ``everysec``. Left out: a disk slower than this machine's (fsync is what
``always`` pays per event-loop turn: measure on your own disk), and replicas (``replica``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import uvloop

from bench.pipeline_bench import _throughput
from bench.stack import BenchStack, Shape
from broker.redis_server import EmbeddedRedis, free_port

POLICIES = {
    "everysec": ("everysec", "none"),
    "always": ("always", "local"),
    "everysec_waitaof": ("everysec", "local"),
}
ROUNDS = 2
SEQUENTIAL = 200
CONCURRENCY = 32
LOAD_SECONDS = 5.0
BODY = {"prompt": "durability bench a small watercolor", "state": "bench"}


ALONE = 100


def _round_trips() -> dict[str, float]:
    """Latency of one acknowledgement's round trip on an idle server, per policy."""
    figures: dict[str, float] = {}
    for name, appendfsync, wait in (
        ("everysec_set", "everysec", False),
        ("always_set_waitaof", "always", True),
        ("everysec_set_waitaof", "everysec", True),
    ):
        server = EmbeddedRedis(
            port=free_port(), data_dir=tempfile.mkdtemp(prefix="mjb-bench-aof-"), appendfsync=appendfsync
        )
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            latencies = []
            for n in range(ALONE):
                started = time.perf_counter()
                pipe = client.pipeline(transaction=False)
                pipe.set("bench:key", n)
                if wait:
                    pipe.execute_command("WAITAOF", 1, 0, 0)
                pipe.execute()
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            client.close()
            server.stop()
        figures[f"round_trip_{name}_p50_ms"] = statistics.median(latencies)
        figures[f"round_trip_{name}_p99_ms"] = _pct(latencies, 0.99)
    return figures


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def _submit(stack: BenchStack) -> tuple[float, int]:
    """One submit: (latency ms, reply code)."""
    assert stack.http is not None
    started = time.perf_counter()
    async with stack.http.post(f"{stack.web_url}/mj/submit/imagine", json=BODY) as response:
        reply = await response.json(content_type=None)
    return (time.perf_counter() - started) * 1000, int(reply.get("code", response.status))


async def _latencies(stack: BenchStack) -> dict[str, float]:
    for _ in range(20):  # warm-up: connections, scripts loaded
        await _submit(stack)
    alone = [(await _submit(stack))[0] for _ in range(SEQUENTIAL)]
    loaded: list[float] = []
    refused = 0
    deadline = time.monotonic() + LOAD_SECONDS

    async def submitter() -> None:
        nonlocal refused
        while time.monotonic() < deadline:
            ms, code = await _submit(stack)
            loaded.append(ms)
            refused += code not in (1, 22)

    await asyncio.gather(*(submitter() for _ in range(CONCURRENCY)))
    return {
        "submit_p50_ms": statistics.median(alone),
        "submit_p99_ms": _pct(alone, 0.99),
        "submit_rps": len(loaded) / LOAD_SECONDS,
        "submit_loaded_p50_ms": statistics.median(loaded),
        "submit_loaded_p99_ms": _pct(loaded, 0.99),
        "submit_refused": float(refused),
    }


async def _one(policy: str) -> dict[str, float]:
    appendfsync, durability = POLICIES[policy]
    # queues deep enough for the latency loads, so no submit is refused with 23
    shape = Shape(appendfsync=appendfsync, durability=durability, queue_size=100_000)
    root = Path(tempfile.mkdtemp(prefix=f"mjb-bench-durability-{policy}-"))
    stack = BenchStack(root, shape=shape)
    await stack.start()
    try:
        figures = await _latencies(stack)
        # the pipeline run starts from empty queues
        await stack.close()
        stack = BenchStack(Path(tempfile.mkdtemp(prefix=f"mjb-bench-durability-{policy}-")), shape=shape)
        await stack.start()
        outcome = await _throughput(stack)
        figures["tasks_per_s"] = outcome.tasks_per_s
        figures["tasks_unfinished"] = float(outcome.unfinished + outcome.failed)
    finally:
        await stack.close()
    return figures


async def _all() -> dict[str, Any]:
    figures: dict[str, Any] = _round_trips()
    runs: dict[str, list[dict[str, float]]] = {policy: [] for policy in POLICIES}
    for _ in range(ROUNDS):
        for policy in POLICIES:
            runs[policy].append(await _one(policy))
    means = {
        policy: {key: statistics.mean(run[key] for run in done) for key in done[0]}
        for policy, done in runs.items()
    }
    for policy, mean in means.items():
        for key, value in mean.items():
            figures[f"{policy}_{key}"] = value
        figures[f"{policy}_runs_tasks_per_s"] = ", ".join(f"{run['tasks_per_s']:.1f}" for run in runs[policy])
    base = means["everysec"]
    for policy in ("always", "everysec_waitaof"):
        for key in ("submit_p50_ms", "submit_p99_ms", "submit_rps", "submit_loaded_p99_ms", "tasks_per_s"):
            figures[f"ratio_{policy}_over_everysec_{key}"] = means[policy][key] / base[key]
    return figures


def run() -> dict[str, Any]:
    return uvloop.run(_all())


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
