"""Run the web process as a real granian subprocess on a free port, against the session Redis."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from broker.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]

TOKEN_A1 = "tok-a1-Zq8WvN3kLp0sYt"
TOKEN_A2 = "tok-a2-Hm4RcX7bJd2uEe"
API_SECRET = "sekret-Q9fT2mVx7LpA"
#: the session web's admin key (`web`): the schema test sends it to reach every /mj/ route
ADMIN_API_SECRET = "admin-sekret-Pw6Rt1Gk"
HOOK_SECRET = "hooksecret-Wn5Kd8Rb1Ys"


def account(account_id: str, n: int, token: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": account_id,
        "guild_id": f"110000000000000000{n}",
        "channel_id": f"120000000000000000{n}",
        "token": token,
        **extra,
    }


def write_config(directory: Path, redis_url: str, **overrides: Any) -> Path:
    """A config file for the web process; `overrides` replace top-level sections."""
    document: dict[str, Any] = {
        "redis": {"url": redis_url},
        "hooks": {"secret": HOOK_SECRET},
        "banned_words": ["forbidden", "bad word"],
        "api_keys": [{"name": "tests", "secret": API_SECRET}],
        "accounts": [account("a1", 1, TOKEN_A1, core_size=3, queue_size=10)],
    }
    document.update(overrides)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class WebProcess:
    """`python -m broker.api` on a free port; its output goes to a log file the tests can read."""

    def __init__(self, config: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env or {}
        self.port = free_port()
        self.workers = workers
        self.log_path = config.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "MJBROKER_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1", **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker.api", "--port", str(self.port), "--workers", str(self.workers)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"web process exited: {self.log()[-2000:]}")
            # the socket is bound before the app's startup hook: wait for a real answer
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.url}/schema/openapi.json", timeout=2)
                return
            time.sleep(0.05)
        raise RuntimeError(f"web process did not listen within {timeout}s: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_web(
    redis_server: EmbeddedRedis, *, env: dict[str, str] | None = None, **overrides: Any
) -> Iterator[WebProcess]:
    directory = Path(tempfile.mkdtemp(prefix="mjb-web-"))
    web = WebProcess(write_config(directory, redis_server.url, **overrides), env=env)
    try:
        web.start()  # inside: a start that times out still stops the process it launched
        yield web
    finally:
        web.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def web(redis_server: EmbeddedRedis) -> Iterator[WebProcess]:
    """The web process with the default test config (api key required, account a1 core 3 / queue 10),
    plus an admin key."""
    keys = [
        {"name": "tests", "secret": API_SECRET},
        {"name": "ops", "secret": ADMIN_API_SECRET, "role": "admin"},
    ]
    with running_web(redis_server, api_keys=keys) as process:
        yield process


AUTH = {"mj-api-secret": API_SECRET}


@pytest.fixture
async def client(web: WebProcess, redis: aioredis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client of the session's web process, on a freshly flushed Redis."""
    async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=30) as c:
        yield c
