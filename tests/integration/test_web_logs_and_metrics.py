"""What a real web process logs (access lines, JSON, no tracebacks) and what its `/metrics` shows."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import msgspec
import redis.asyncio as aioredis
from api_support import API_SECRET, AUTH, HOOK_SECRET, TOKEN_A1, WebProcess, running_web
from prometheus_client.parser import text_string_to_metric_families

from broker import keys
from broker.metrics import SNAPSHOT_TTL_FACTOR, Metrics, MetricsPublisher, Snapshot, snapshot_of
from broker.redis_server import EmbeddedRedis


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """`/metrics` parsed by prometheus_client's own parser: family name -> samples."""
    return {
        f.name: [(s.name, dict(s.labels), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


async def wait_log(web: WebProcess, needle: str, within: float = 10) -> str:
    async with asyncio.timeout(within):
        while needle not in web.log():  # noqa: ASYNC110 - polls a log file, bounded by the timeout
            await asyncio.sleep(0.05)
    return web.log()


async def test_access_log_is_on_by_default_and_a_bad_request_logs_no_traceback(
    web: WebProcess, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/mj/submit/imagine", content=b'{"prompt": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert (await client.get("/mj/task/nope/fetch")).status_code == 404
    text = await wait_log(web, "GET /mj/task/nope/fetch 404")
    assert "POST /mj/submit/imagine 400" in text
    assert "Traceback" not in text
    assert f"web ready on 127.0.0.1:{web.port}" in text


async def test_access_log_can_be_turned_off(redis_server: EmbeddedRedis) -> None:
    with running_web(redis_server, server={"access_log": False}) as web:
        async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=30) as client:
            assert (await client.get("/mj/task/gone/fetch")).status_code == 404
            assert (await client.get("/health")).status_code == 200
        await wait_log(web, "web ready on")
        web.stop()  # the app writes what it buffered as it stops
        assert "/mj/task/gone/fetch" not in web.log() and "GET /health" not in web.log()


async def test_json_logs_parse_and_redact_secrets_and_stop_without_a_traceback(
    redis_server: EmbeddedRedis,
) -> None:
    with running_web(redis_server, env={"LOG_FORMAT": "json"}) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as client:
            # a wrong key quoted in a path: the access line must not show a configured secret
            await client.get(f"/mj/task/{API_SECRET}/fetch", headers=AUTH)
            await client.get(f"/mj/task/{TOKEN_A1}/fetch", headers=AUTH)
        await wait_log(web, "/mj/task/***/fetch")
        web.stop()
        lines = [line for line in web.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    messages = [r["message"] for r in records]
    assert any(m.startswith("web ready on") for m in messages), messages
    assert any(r["logger"] == "broker.access" for r in records)
    text = "\n".join(lines)
    for secret in (API_SECRET, TOKEN_A1, HOOK_SECRET):
        assert secret not in text
    assert "Traceback" not in text and not any("exc" in r for r in records)


async def test_metrics_need_no_key_and_join_every_process_snapshot(
    web: WebProcess, client: httpx.AsyncClient, redis: aioredis.Redis
) -> None:
    # Another process's snapshot, as a worker publishes it (`broker.metrics.MetricsPublisher`).
    other = Metrics(process_collector=False)
    other.hook_deliveries.labels("ok").inc(3)
    other.event_to_hook_seconds.observe(0.2)
    now = int(time.time() * 1000)
    live = snapshot_of(other.registry, role="worker", process="worker:test", until_ms=now + 60_000)
    dead = snapshot_of(other.registry, role="worker", process="worker:dead", until_ms=now - 1)
    await redis.hset(keys.METRICS, mapping={"worker:test": msgspec.json.encode(live)})
    await redis.hset(keys.METRICS, mapping={"worker:dead": msgspec.json.encode(dead)})
    await redis.zadd(keys.account_waiting("a1"), {"t1": 1, "t2": 2})
    await redis.hset(keys.account_status("a1"), mapping={"state": "ONLINE"})
    async with httpx.AsyncClient(base_url=web.url, timeout=10) as anonymous:
        before = families((await anonymous.get("/metrics")).text)
        # a submit the web counts (code 4: the prompt is missing)
        assert (await client.post("/mj/submit/imagine", json={"prompt": " "})).json()["code"] == 4
        response = await anonymous.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    parsed = families(response.text)
    assert (
        "mjbroker_hook_deliveries_total",
        {"result": "ok", "role": "worker", "process": "worker:test"},
        3.0,
    ) in (parsed["mjbroker_hook_deliveries"])
    assert not any(s[1].get("process") == "worker:dead" for s in parsed["mjbroker_hook_deliveries"])
    assert await redis.hget(keys.METRICS, "worker:dead") is None  # an expired snapshot is cleared

    def imagine_4(found: dict[str, list[tuple[str, dict[str, str], float]]]) -> float:
        samples = found.get("mjbroker_tasks_submitted", [])
        return sum(
            s[2] for s in samples if (s[1]["action"], s[1]["code"], s[1]["role"]) == ("IMAGINE", "4", "web")
        )

    assert imagine_4(parsed) == imagine_4(before) + 1
    assert ("mjbroker_queue_depth", {"account": "a1"}, 2.0) in parsed["mjbroker_queue_depth"]
    assert ("mjbroker_running_tasks", {"account": "a1"}, 0.0) in parsed["mjbroker_running_tasks"]
    status = {s[1]["state"]: s[2] for s in parsed["mjbroker_account_status"]}
    assert status["ONLINE"] == 1.0 and status["DISABLED"] == 0.0
    counts = [
        s[2]
        for s in parsed["mjbroker_event_to_hook_seconds"]
        if s[0].endswith("_count") and s[1]["process"] == "worker:test"
    ]
    assert counts == [1.0]
    for secret in (API_SECRET, TOKEN_A1, HOOK_SECRET):
        assert secret not in response.text
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/metrics" not in schema["paths"]


def test_a_snapshot_round_trips_through_its_wire_format() -> None:
    metrics = Metrics(process_collector=False)
    metrics.finished.labels("IMAGINE", "SUCCESS").inc()
    snap = snapshot_of(metrics.registry, role="bridge", process="b", until_ms=5)
    again = msgspec.json.decode(msgspec.json.encode(snap), type=Snapshot)
    assert again == snap
    [finished] = [f for f in again.families if f.name == "mjbroker_tasks_finished"]
    assert [(s.labels, s.value) for s in finished.samples] == [
        ({"action": "IMAGINE", "status": "SUCCESS"}, 1.0)
    ]


async def test_a_publisher_writes_its_snapshot_and_clears_those_of_dead_processes(
    redis: aioredis.Redis,
) -> None:
    dead = snapshot_of(Metrics(process_collector=False).registry, role="bridge", process="gone", until_ms=1)
    await redis.hset(keys.METRICS, "gone", msgspec.json.encode(dead))
    metrics = Metrics(process_collector=False)
    metrics.interactions_sent.labels("a1").inc(2)
    publisher = MetricsPublisher(redis, metrics, role="bridge", process="b1", every=5, clock=lambda: 1000)
    await publisher.publish()
    assert await redis.hkeys(keys.METRICS) == [b"b1"]
    snap = msgspec.json.decode(await redis.hget(keys.METRICS, "b1"), type=Snapshot)
    assert snap.until_ms == 1000 + 5 * SNAPSHOT_TTL_FACTOR * 1000
    [sent] = [f for f in snap.families if f.name == "mjbroker_interactions_sent"]
    assert [(s.labels, s.value) for s in sent.samples] == [({"account": "a1"}, 2.0)]
