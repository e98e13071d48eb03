"""/mj/task/*, /mj/account/*, auth, CORS, OpenAPI and restarts over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from api_support import API_SECRET, AUTH, TOKEN_A1, WebProcess

from broker import keys
from broker.account_status import AccountState
from broker.models import TaskStatus
from broker.queues import AccountQueues
from broker.store import TaskStore
from discord_bridge.health import AccountHealth


async def _imagine(client: httpx.AsyncClient, prompt: str = "a cat") -> str:
    reply = (await client.post("/mj/submit/imagine", json={"prompt": prompt})).json()
    assert reply["code"] in (1, 22), reply
    task_id: str = reply["result"]
    return task_id


async def test_fetch_serves_the_stored_json_and_404_code_4_when_unknown(
    client: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    task_id = await _imagine(client)
    response = await client.get(f"/mj/task/{task_id}/fetch")
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == await redis.hget(keys.task_record(task_id), "d")
    body = response.json()
    assert body["id"] == task_id and body["status"] == "NOT_START" and isinstance(body["submitTime"], int)
    unknown = await client.get("/mj/task/1234567890123456/fetch")
    assert unknown.status_code == 404
    assert (
        unknown.json()["code"] == 4 and unknown.json()["description"] == "task '1234567890123456' not found"
    )


async def test_list_by_condition_returns_a_bare_array(client: httpx.AsyncClient) -> None:
    ids = [await _imagine(client, f"p{i}") for i in range(3)]
    for path in ("/mj/task/list-by-condition", "/mj/task/list-by-ids"):
        response = await client.post(path, json={"ids": [ids[0], "nope", ids[2], ids[0]]})
        assert response.status_code == 200
        assert sorted(t["id"] for t in response.json()) == sorted([ids[0], ids[2]])
    for body in ({"ids": None}, {"ids": []}, {}):
        response = await client.post("/mj/task/list-by-condition", json=body)
        assert (response.status_code, response.json()) == (200, [])


async def test_list_and_queue(
    client: httpx.AsyncClient, redis: aioredis.Redis, queues: AccountQueues
) -> None:
    ids = [await _imagine(client, f"p{i}") for i in range(5)]
    store = TaskStore(redis, retention_seconds=3600)
    await store.transition(ids[0], TaskStatus.CANCEL)
    await queues.release("a1", ids[0], core_size=3)
    queue = (await client.get("/mj/task/queue")).json()
    assert [t["id"] for t in queue] == ids[1:]
    listed = (await client.get("/mj/task/list")).json()
    assert [t["id"] for t in listed] == sorted(ids, key=lambda i: int(i), reverse=True)


async def test_accounts_never_show_the_token(client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    store = TaskStore(redis, retention_seconds=3600)
    health = AccountHealth(redis, store, AccountQueues(redis), "a1", bridge_id="bridge-1")
    await health.set(AccountState.ONLINE)  # as the bridge holding a1 reports it
    await _imagine(client)
    listed = await client.get("/mj/account/list")
    assert TOKEN_A1 not in listed.text and "token" not in listed.text.lower()
    (acct,) = listed.json()
    assert {
        k: acct[k] for k in ("id", "channelId", "enable", "coreSize", "queueSize", "status", "running")
    } == {
        "id": "a1",
        "channelId": "1200000000000000001",
        "enable": True,
        "coreSize": 3,
        "queueSize": 10,
        "status": "ONLINE",
        "running": 1,
    }
    for key in ("a1", "1200000000000000001"):
        assert (await client.get(f"/mj/account/{key}/fetch")).json()["id"] == "a1"
    missing = await client.get("/mj/account/zz/fetch")
    assert (missing.status_code, missing.json()["code"]) == (404, 4)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"mj-api-secret": "wrong"}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"mj-api-secret": API_SECRET}, 200),
        ({"Authorization": f"Bearer {API_SECRET}"}, 200),
        ({"Authorization": API_SECRET}, 200),
    ],
)
async def test_api_secret_checks(web: WebProcess, headers: dict[str, str], status: int) -> None:
    async with httpx.AsyncClient(base_url=web.url) as anon:
        response = await anon.get("/mj/task/list", headers=headers)
    assert response.status_code == status
    if status == 401:
        body = response.json()
        assert body["code"] == 4 and body["description"]


async def test_cors_preflight_passes_without_a_key(web: WebProcess) -> None:
    async with httpx.AsyncClient(base_url=web.url) as anon:
        response = await anon.options(
            "/mj/submit/imagine",
            headers={
                "Origin": "https://chat.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "mj-api-secret, content-type",
            },
        )
    assert response.status_code in (200, 204)
    assert "mj-api-secret" in response.headers["access-control-allow-headers"]


async def test_openapi_schema_has_the_request_types(web: WebProcess) -> None:
    async with httpx.AsyncClient(base_url=web.url) as anon:
        schema = (await anon.get("/schema/openapi.json")).json()
    imagine = schema["paths"]["/mj/submit/imagine"]["post"]
    ref = imagine["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    props = schema["components"]["schemas"][ref]["properties"]
    assert {"prompt", "base64Array", "notifyHook", "state", "botType", "accountFilter"} <= set(props)
    assert "/mj-relax/mj/submit/imagine" in schema["paths"]


async def test_restart_of_the_web_process_loses_no_task(client: httpx.AsyncClient, web: WebProcess) -> None:
    ids = [await _imagine(client, f"p{i}") for i in range(4)]
    web.restart()
    async with httpx.AsyncClient(base_url=web.url, headers=AUTH) as fresh:
        response = await fresh.post("/mj/task/list-by-condition", json={"ids": ids})
        assert sorted(t["id"] for t in response.json()) == sorted(ids)
        queued: dict[str, Any] = (await fresh.post("/mj/submit/imagine", json={"prompt": "after"})).json()
    assert queued["code"] == 22 and queued["properties"]["numberOfQueues"] == 2
