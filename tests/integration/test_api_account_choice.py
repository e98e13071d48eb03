"""Daily limits and work hours through the real web process: code 3 naming each account and why,
and what /mj/account/* shows of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis
from api_support import TOKEN_A1, TOKEN_A2, WebProcess, account, running_web

from broker import keys
from broker.redis_server import EmbeddedRedis


def _noon_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now, so no midnight falls within the test."""
    offset = 12 - now.hour  # -11..12 hours from UTC
    # Etc/GMT names carry the opposite sign: Etc/GMT-3 is UTC+3
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture(scope="module")
def limited_web(redis_server: EmbeddedRedis) -> Iterator[WebProcess]:
    """a1 takes 2 tasks a day; a2 works from midnight to 6 (it is noon where the operator is)."""
    with running_web(
        redis_server,
        api_keys=[],
        timezone=_noon_zone(datetime.now(UTC)),
        accounts={
            "choice": "round_robin",
            "list": [
                account("a1", 1, TOKEN_A1, daily_limit=2, weight=3),
                account("a2", 2, TOKEN_A2, work_hours="00:00-06:00"),
            ],
        },
    ) as process:
        yield process


@pytest.fixture
async def client(limited_web: WebProcess, redis: aioredis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited_web.url, timeout=30) as c:
        yield c


async def _imagine(client: httpx.AsyncClient, prompt: str) -> dict[str, object]:
    response = await client.post("/mj/submit/imagine", json={"prompt": prompt})
    assert response.status_code == 200, response.text
    reply: dict[str, object] = response.json()
    return reply


async def test_a_reached_daily_limit_and_closed_work_hours_answer_code_3_with_the_reasons(
    client: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    before = (await client.get("/mj/account/a1/fetch")).json()
    assert (before["dailyLimit"], before["dailyCount"], before["openNow"], before["closedReason"]) == (
        2,
        0,
        True,
        None,
    )
    for i in range(2):
        reply = await _imagine(client, f"a fox {i}")
        assert reply["code"] == 1 and reply["properties"] == {"discordInstanceId": "1200000000000000001"}
    refused = await _imagine(client, "a fox 3")
    assert refused["code"] == 3
    assert refused["description"] == (
        "no usable account for MID_JOURNEY: a1 reached its daily limit (2), "
        "a2 is outside its work hours (00:00-06:00)"
    )
    # the refused task left nothing behind: a1 still holds its two
    assert await redis.zcard(keys.account_running("a1")) == 2
    assert await redis.zcard(keys.account_running("a2")) == 0

    # what the operator sees
    views = {v["id"]: v for v in (await client.get("/mj/account/list")).json()}
    a1, a2 = views["a1"], views["a2"]
    assert (a1["dailyLimit"], a1["dailyCount"], a1["weight"], a1["workHours"]) == (2, 2, 3, "")
    assert (a1["openNow"], a1["closedReason"]) == (False, "a1 reached its daily limit (2)")
    assert (a2["dailyLimit"], a2["dailyCount"], a2["weight"], a2["workHours"]) == (0, None, 1, "00:00-06:00")
    assert (a2["openNow"], a2["closedReason"]) == (False, "a2 is outside its work hours (00:00-06:00)")
    # the existing fields stay
    assert a1["properties"]["weight"] == 3 and a1["running"] == 2
