"""`/health` and `/ready` of a real web process: no api key needed, 503 with the reason until a
worker and a bridge hold the stack up, and when Redis is gone."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from api_support import API_SECRET, WebProcess, write_config
from workers_support import STAND_IN_WORKER

from broker import heartbeat, keys
from broker.redis_server import free_port


async def test_health_answers_without_an_api_key(web: WebProcess) -> None:
    async with httpx.AsyncClient(base_url=web.url, timeout=10) as anonymous:
        response = await anonymous.get("/health")
        assert (response.status_code, response.text) == (200, "ok")
        assert (await anonymous.get("/mj/account/list")).status_code == 401  # the rest still needs one


async def test_ready_says_what_is_missing_until_a_worker_and_a_bridge_are_there(
    web: WebProcess, redis: aioredis.Redis
) -> None:
    async with httpx.AsyncClient(base_url=web.url, timeout=10) as anonymous:
        # the stand-in worker's heartbeat is there (conftest); no bridge holds a1
        response = await anonymous.get("/ready")
        assert response.status_code == 503, response.text
        assert response.json() == {
            "ready": False,
            "reason": "no account is held by a live bridge",
            "redis": True,
            "worker": True,
            "accounts_held": [],
        }
        await redis.set(keys.account_lease("a1"), "bridge-1", px=15_000)
        response = await anonymous.get("/ready")
        assert response.status_code == 200, response.text
        assert response.json()["ready"] is True and response.json()["accounts_held"] == ["a1"]
        assert API_SECRET not in response.text and "bridge-1" not in response.text
        await heartbeat.leave(redis, STAND_IN_WORKER)
        response = await anonymous.get("/ready")
        assert response.status_code == 503
        assert response.json()["reason"] == "no worker running"


async def test_ready_is_503_while_redis_is_unreachable() -> None:
    directory = Path(tempfile.mkdtemp(prefix="mjb-web-"))
    web = WebProcess(write_config(directory, f"redis://127.0.0.1:{free_port()}/0"))
    await asyncio.to_thread(web.start)
    try:
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as anonymous:
            assert (await anonymous.get("/health")).status_code == 200
            response = await anonymous.get("/ready")
            assert response.status_code == 503, response.text
            assert response.json()["reason"].startswith("Redis unreachable")
            assert response.json()["redis"] is False
    finally:
        await asyncio.to_thread(web.stop)
        shutil.rmtree(directory, ignore_errors=True)
