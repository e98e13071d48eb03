"""The web process against a bare litestar + msgspec app doing the same Redis work on the same client.

Both are served by granian (1 worker) against one embedded Valkey and loaded in turn by the same
generator (wrk when available: installed with apt-get when missing and possible; else a Python
generator with a fixed number of keep-alive connections), `SECONDS` each, `CONNECTIONS` connections.
The bare app (`bench/bare_app.py`) runs on the product tree's own Redis client.

Figures:
- submit and fetch req/s of each app and their ratio web/bare (targets: submit >= 0.8, fetch >= 0.9);
- ``*_redis_per_req_*``: what each app sent Redis per request during its load, measured on the
  server (``INFO commandstats`` deltas, commands run inside scripts included, so both apps' lines
  must match), with the server's read events per request (``total_reads_processed``: how many
  round trips reached it, at most; a pipeline is one) and the bytes it received per request. This
  makes the yardstick's fairness visible in every run;
- ``non_2xx``: failed responses of each load (a load with any is reported, not hidden);
- the median latency of the first 100 submits against the 10,000th into one deep queue
  (queue_size 1,000,000; target ratio <= 1.2).

With a baseline tree (``make bench BASELINE=<ref>``) the web and the bare app run from each tree in
turn, after before after before (`ROUNDS` each, a fresh pair of processes and a flushed Redis per
round); each side's bare app runs on that side's client. The figures add each side's mean req/s,
its ratio to its own bare app, and the ratios after/before of the web's req/s (target >= 0.75).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis
import yaml

from bench.stack import ROOT, SECRET, Child, ProductTree
from broker import keys
from broker.redis_server import EmbeddedRedis, free_port

BODY = '{"prompt":"a cat in a hat, watercolor --v 6","state":"bench"}'
CONNECTIONS = 32
SECONDS = 8
ROUNDS = 2
#: server-side commands that are the bench's own, not the apps'
_OWN = {"info", "flushall", "ping", "client|setinfo", "client", "hello"}


class Load(msgspec.Struct, kw_only=True):
    """One app under one load: throughput, and what Redis saw per request."""

    rps: float
    requests: int
    non_2xx: int
    commands: dict[str, float]
    reads: float
    bytes_in: float

    def redis_line(self) -> str:
        shown = ", ".join(f"{name} {n:.2f}" for name, n in sorted(self.commands.items()) if n >= 0.005)
        return f"{shown} | {self.reads:.2f} reads, {self.bytes_in:.0f} B in"


def _wrk() -> str | None:
    found = shutil.which("wrk")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=300, check=False
        )
        found = shutil.which("wrk")
    return found


def _server_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far, and the server's read events and input bytes."""
    counts = {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in client.info("commandstats").items()
    }
    stats = client.info("stats")
    counts["#reads"] = int(stats["total_reads_processed"])
    counts["#bytes"] = int(stats["total_net_input_bytes"])
    return counts


def _load_wrk(wrk: str, url: str, *, post: bool) -> tuple[float, int, int]:
    script = Path(tempfile.mkdtemp()) / "load.lua"
    lines = [f'wrk.headers["mj-api-secret"] = "{SECRET}"']
    if post:
        lines += [
            'wrk.method = "POST"',
            f"wrk.body = '{BODY}'",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert rps and total, out
    return float(rps.group(1)), int(total.group(1)), int(non2xx.group(1)) if non2xx else 0


async def _load_python(url: str, *, post: bool) -> tuple[float, int, int]:
    count = failed = 0
    deadline = time.monotonic() + SECONDS
    headers = {"mj-api-secret": SECRET, "content-type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS), headers=headers) as client:

        async def worker() -> None:
            nonlocal count, failed
            while time.monotonic() < deadline:
                reply = await (client.post(url, content=BODY) if post else client.get(url))
                count += 1
                failed += reply.status_code >= 300

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return count / SECONDS, count, failed


def _measure(wrk: str | None, client: redis.Redis, url: str, *, post: bool) -> Load:
    before = _server_counts(client)
    if wrk:
        rps, requests, non_2xx = _load_wrk(wrk, url, post=post)
    else:
        rps, requests, non_2xx = asyncio.run(_load_python(url, post=post))
    after = _server_counts(client)
    per = max(requests, 1)
    commands = {
        name: (calls - before.get(name, 0)) / per
        for name, calls in after.items()
        if not name.startswith("#") and name not in _OWN and calls > before.get(name, 0)
    }
    return Load(
        rps=rps,
        requests=requests,
        non_2xx=non_2xx,
        commands=commands,
        reads=(after["#reads"] - before["#reads"]) / per,
        bytes_in=(after["#bytes"] - before["#bytes"]) / per,
    )


def _wait_http(url: str, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer:\n{child.tail()}")


@contextlib.contextmanager
def _apps(product: ProductTree, redis_url: str, scratch: Path) -> Iterator[tuple[str, str, str]]:
    """The web process and the bare app of `product`: (web URL, bare URL, proof of their tree)."""
    config = scratch / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "redis": {"url": redis_url},
                "api_keys": [{"name": "bench", "secret": SECRET}],
                "accounts": [
                    {"id": "a1", "guild_id": "1", "channel_id": "2", "token": "bench-token",
                     "queue_size": 1_000_000}
                ],
            }
        )
    )  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("MJBROKER_")}
    base.update({"MJBROKER_CONFIG": str(config), "BARE_REDIS_URL": redis_url})
    web_port, bare_port = free_port(), free_port()
    children = {
        "web": Child("web", [sys.executable, "-m", "broker.api", "--port", str(web_port)],
                     cwd=product.path, env=product.env(base, "web"), log_dir=scratch),
        "bare": Child("bare", [sys.executable, str(ROOT / "bench" / "bare_app.py"), "--port", str(bare_port)],
                      cwd=product.path, env=product.env(base, "bare"), log_dir=scratch),
    }  # fmt: skip
    try:
        for child in children.values():
            child.start()
        web, bare = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{bare_port}"
        _wait_http(f"{web}/mj/task/0/fetch", children["web"])
        _wait_http(f"{bare}/mj/task/0/fetch", children["bare"])
        client = next((line for line in children["bare"].tail().splitlines() if "client" in line), "")
        yield web, bare, f"{product.check(children)}; {client.strip()}"
    finally:
        for child in children.values():
            child.stop()


def _flush(client: redis.Redis) -> None:
    """Flush Redis, and stand in for a worker: the web refuses submits while none lives (code 9),
    and this bench runs the web alone (a heartbeat of an hour; a tree without heartbeats ignores it)."""
    client.flushall()
    client.zadd(keys.WORKERS, {"bench-stand-in": time.time() * 1000 + 3_600_000})


def _round(product: ProductTree, wrk: str | None, server: EmbeddedRedis) -> tuple[dict[str, Load], str]:
    """Submit and fetch loads on the web and the bare app of `product`, on a flushed Redis."""
    client = redis.Redis.from_url(server.url)
    scratch = Path(tempfile.mkdtemp(prefix=f"mjb-bench-api-{product.label}-"))
    headers = {"mj-api-secret": SECRET, "content-type": "application/json"}
    try:
        _flush(client)
        with _apps(product, server.url, scratch) as (web, bare, proof):
            loads = {
                "submit_web": _measure(wrk, client, f"{web}/mj/submit/imagine", post=True),
                "submit_bare": _measure(wrk, client, f"{bare}/mj/submit/imagine", post=True),
            }
            web_id = httpx.post(f"{web}/mj/submit/imagine", content=BODY, headers=headers).json()["result"]
            bare_id = httpx.post(f"{bare}/mj/submit/imagine", content=BODY, headers=headers).json()["result"]
            loads["fetch_web"] = _measure(wrk, client, f"{web}/mj/task/{web_id}/fetch", post=False)
            loads["fetch_bare"] = _measure(wrk, client, f"{bare}/mj/task/{bare_id}/fetch", post=False)
    finally:
        client.close()
    return loads, proof


def _deep_queue(url: str, count: int = 10_050) -> tuple[float, float]:
    """Median latency (ms) of submits 1-100 and of submits 9,951-10,050 into one deep queue."""
    latencies = []
    with httpx.Client(headers={"mj-api-secret": SECRET, "content-type": "application/json"}) as client:
        for _ in range(count):
            started = time.perf_counter()
            reply = client.post(f"{url}/mj/submit/imagine", content=BODY).json()
            latencies.append((time.perf_counter() - started) * 1000)
            assert reply["code"] in (1, 22), reply
    return statistics.median(latencies[:100]), statistics.median(latencies[9_950:10_050])


def _side_figures(label: str, rounds: list[dict[str, Load]]) -> dict[str, Any]:
    """Mean req/s of each app over the rounds, and the mean of each round's ratio web/bare."""
    figures: dict[str, Any] = {}
    for kind in ("submit", "fetch"):
        figures[f"{label}_{kind}_rps_web"] = round(statistics.mean(r[f"{kind}_web"].rps for r in rounds))
        figures[f"{label}_{kind}_rps_bare"] = round(statistics.mean(r[f"{kind}_bare"].rps for r in rounds))
        figures[f"{label}_{kind}_ratio_to_bare"] = statistics.mean(
            r[f"{kind}_web"].rps / r[f"{kind}_bare"].rps for r in rounds
        )
    return figures


def run(baseline: ProductTree | None = None) -> dict[str, Any]:
    wrk = _wrk()
    current = ProductTree.current()
    server = EmbeddedRedis(port=free_port(), data_dir=tempfile.mkdtemp(prefix="mjb-bench-redis-"))
    server.start()
    figures: dict[str, Any] = {"generator": f"wrk x{CONNECTIONS}" if wrk else f"python httpx x{CONNECTIONS}"}
    order = [current] if baseline is None else [current, baseline] * ROUNDS
    rounds: dict[str, list[dict[str, Load]]] = {}
    try:
        for product in order:
            loads, proof = _round(product, wrk, server)
            rounds.setdefault(product.label, []).append(loads)
            figures[f"{product.label}_tree"] = f"{product.ref}: {proof}"
            n = len(rounds[product.label])
            for key, load in loads.items():
                figures[f"{product.label}_run{n}_{key}"] = (
                    f"{load.rps:.0f} req/s, {load.requests} requests, {load.non_2xx} non-2xx"
                )
        after = rounds["after"]
        for kind in ("submit", "fetch"):
            for app in ("web", "bare"):
                figures[f"{kind}_redis_per_req_{app}"] = after[0][f"{kind}_{app}"].redis_line()
        side = _side_figures("after", after)
        figures.update(
            {
                "submit_rps_web": side["after_submit_rps_web"],
                "submit_rps_bare": side["after_submit_rps_bare"],
                "submit_ratio (target >= 0.8)": side["after_submit_ratio_to_bare"],
                "fetch_rps_web": side["after_fetch_rps_web"],
                "fetch_rps_bare": side["after_fetch_rps_bare"],
                "fetch_ratio (target >= 0.9)": side["after_fetch_ratio_to_bare"],
            }
        )
        if baseline is not None:
            before = _side_figures("before", rounds["before"])
            for kind in ("submit", "fetch"):
                for app in ("web", "bare"):
                    load = rounds["before"][0][f"{kind}_{app}"]
                    figures[f"before_{kind}_redis_per_req_{app}"] = load.redis_line()
            figures.update({f"ab_{k}": v for k, v in {**side, **before}.items()})
            for kind in ("submit", "fetch"):
                web = side[f"after_{kind}_rps_web"] / before[f"before_{kind}_rps_web"]
                figures[f"ab_{kind}_rps_web_after_over_before (target >= 0.75)"] = web
                figures[f"ab_{kind}_rps_web_after_over_before_by_round"] = ", ".join(
                    f"{a[f'{kind}_web'].rps / b[f'{kind}_web'].rps:.3f}"
                    for a, b in zip(rounds["after"], rounds["before"], strict=True)
                )
                figures[f"ab_{kind}_rps_bare_after_over_before"] = (
                    side[f"after_{kind}_rps_bare"] / before[f"before_{kind}_rps_bare"]
                )
        client = redis.Redis.from_url(server.url)
        _flush(client)
        client.close()
        scratch = Path(tempfile.mkdtemp(prefix="mjb-bench-api-deep-"))
        with _apps(current, server.url, scratch) as (web, _bare, _proof):
            first, ten_thousandth = _deep_queue(web)
        figures["submit_ms_first_100"] = first
        figures["submit_ms_around_10000th"] = ten_thousandth
        figures["deep_queue_latency_ratio (target <= 1.2)"] = ten_thousandth / first
    finally:
        server.stop()
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
