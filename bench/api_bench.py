"""The web process against a bare litestar + redis-py app doing the same Redis work.

Both are served by granian (1 worker) against one embedded Valkey and loaded by the same generator
(wrk when available: installed with apt-get when missing and possible; else a Python generator with
a fixed number of keep-alive connections). Figures: submit and fetch throughput ratios, and the
median latency of the first submits vs the 10,000th into a deep queue (queue_size 1,000,000).
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
import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker.redis_server import EmbeddedRedis, free_port  # noqa: E402

SECRET = "bench-secret-0123456789"
BODY = '{"prompt":"a cat in a hat, watercolor --v 6","state":"bench"}'
CONNECTIONS = 32
SECONDS = 8


def _wrk() -> str | None:
    found = shutil.which("wrk")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=300, check=False
        )
        found = shutil.which("wrk")
    return found


def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@contextlib.contextmanager
def _serve(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/mj/task/0/fetch")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _load_wrk(wrk: str, url: str, *, post: bool) -> float:
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
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


async def _load_python(url: str, *, post: bool) -> float:
    count = 0
    deadline = time.monotonic() + SECONDS
    headers = {"mj-api-secret": SECRET, "content-type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS), headers=headers) as client:

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < deadline:
                if post:
                    await client.post(url, content=BODY)
                else:
                    await client.get(url)
                count += 1

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return count / SECONDS


def _load(wrk: str | None, url: str, *, post: bool) -> float:
    if wrk:
        return _load_wrk(wrk, url, post=post)
    return asyncio.run(_load_python(url, post=post))


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


def run() -> dict[str, Any]:
    wrk = _wrk()
    data_dir = tempfile.mkdtemp(prefix="mjb-bench-")
    server = EmbeddedRedis(port=free_port(), data_dir=data_dir)
    server.start()
    client = redis.Redis.from_url(server.url)
    config = Path(data_dir) / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "redis": {"url": server.url},
                "api_keys": [{"name": "bench", "secret": SECRET}],
                "accounts": [
                    {
                        "id": "a1",
                        "guild_id": "1",
                        "channel_id": "2",
                        "token": "bench-token",
                        "queue_size": 1_000_000,
                    }
                ],
            }
        )
    )
    web_port, bare_port = free_port(), free_port()
    web_args = [sys.executable, "-m", "broker.api", "--port", str(web_port)]
    bare_args = [
        sys.executable, "-c",
        "from granian import Granian; from granian.constants import Interfaces; "
        f"Granian('bench.bare_app:create_app', factory=True, interface=Interfaces.ASGI, port={bare_port},"
        " log_access=False).serve()",
    ]  # fmt: skip
    figures: dict[str, Any] = {"generator": "wrk" if wrk else f"python httpx x{CONNECTIONS}"}
    try:
        with (
            _serve(web_args, {"MJBROKER_CONFIG": str(config)}, web_port) as web,
            _serve(bare_args, {"BARE_REDIS_URL": server.url}, bare_port) as bare,
        ):
            submit_web = _load(wrk, f"{web}/mj/submit/imagine", post=True)
            submit_bare = _load(wrk, f"{bare}/mj/submit/imagine", post=True)
            task_id = httpx.post(f"{web}/mj/submit/imagine", content=BODY, headers={"mj-api-secret": SECRET,
                                 "content-type": "application/json"}).json()["result"]  # fmt: skip
            bare_id = httpx.post(f"{bare}/mj/submit/imagine", json={"prompt": "x"}).json()["result"]
            fetch_web = _load(wrk, f"{web}/mj/task/{task_id}/fetch", post=False)
            fetch_bare = _load(wrk, f"{bare}/mj/task/{bare_id}/fetch", post=False)
            client.flushall()
            first, ten_thousandth = _deep_queue(web)
        figures.update(
            {
                "submit_rps_web": round(submit_web),
                "submit_rps_bare": round(submit_bare),
                "submit_ratio (target >= 0.8)": submit_web / submit_bare,
                "fetch_rps_web": round(fetch_web),
                "fetch_rps_bare": round(fetch_bare),
                "fetch_ratio (target >= 0.9)": fetch_web / fetch_bare,
                "submit_ms_first_100": first,
                "submit_ms_around_10000th": ten_thousandth,
                "deep_queue_latency_ratio (target <= 1.2)": ten_thousandth / first,
            }
        )
    finally:
        client.close()
        server.stop()
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
