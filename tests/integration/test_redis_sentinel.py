"""``redis.mode: sentinel`` against a real primary, two replicas and three sentinels (all Valkey).

What is checked: the client finds the primary through the sentinels; ``replicated`` acknowledges a
write only once a replica has it, and fails with `NotDurable` within the command timeout when no
replica is there (the web's 503 for it: `tests/e2e/test_e2e_sentinel.py`); preflight refuses wrong
credentials and an unknown service, in words that hold no secret; and the client follows the
primary: a connection that reaches a demoted primary (``READONLY``) or a killed one is dropped, and
a later command reaches the new primary.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from bridge_support import bridge_settings, running_bridge, submit, wait_online, wait_status, wait_until
from mjsim_support import start_mjsim
from redis.exceptions import ConnectionError as RedisConnectionError
from sentinel_support import SentinelDeployment

from broker import keys
from broker.config import RedisSettings
from broker.models import Task, TaskAction, TaskStatus
from broker.queues import AccountQueues
from broker.redis_client import BoundedRedis, NotDurable, RedisRefused, connect, preflight
from broker.redis_sentinel import connect_sentinel, sentinel_addresses
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore

SENTINEL_PASSWORD = "sentinel-Hq2Lx9Vb"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    running = SentinelDeployment(tmp_path_factory.mktemp("sentinel"), sentinel_password=SENTINEL_PASSWORD)
    running.start()
    yield running
    running.stop()


def _settings(deployment: SentinelDeployment, **extra: Any) -> RedisSettings:
    return msgspec.convert(deployment.redis_section(**extra), RedisSettings)


@pytest.fixture
async def client(deployment: SentinelDeployment) -> AsyncIterator[BoundedRedis]:
    sentinel_client = connect_sentinel(_settings(deployment))
    await sentinel_client.flushall()
    yield sentinel_client
    await sentinel_client.aclose()


def _task(task_id: str) -> Task:
    return Task(id=task_id, action=TaskAction.IMAGINE, prompt="p", instance_id="a1")


def _hold_replicas(deployment: SentinelDeployment, seconds: float) -> list[threading.Thread]:
    """Every replica stops reading (its replication stream too) for `seconds` (DEBUG SLEEP)."""

    def sleep(port: int) -> None:
        replica = next(n for n in deployment.data if n.port == port)
        direct = deployment.data_client(replica)
        direct.execute_command("DEBUG", "SLEEP", seconds)
        direct.close()

    primary = deployment.primary()
    threads = [threading.Thread(target=sleep, args=(n.port,)) for n in deployment.data if n is not primary]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # the DEBUG SLEEPs have reached the replicas
    return threads


def _replica_acked(deployment: SentinelDeployment) -> int:
    """The highest replication offset a replica has acknowledged, minus the primary's own."""
    direct = deployment.data_client(deployment.primary())
    try:
        info = direct.info("replication")
    finally:
        direct.close()
    acked = [int(v["offset"]) for k, v in info.items() if k.startswith("slave")]
    return max(acked) - int(info["master_repl_offset"])


async def test_the_client_writes_to_the_primary_the_sentinels_name(
    deployment: SentinelDeployment, client: BoundedRedis
) -> None:
    await client.set("where", "here")
    direct = deployment.data_client(deployment.primary())
    try:
        assert direct.get("where") == b"here"
        assert direct.info("replication")["role"] == "master"
    finally:
        direct.close()


async def test_replicated_acknowledges_a_write_only_once_a_replica_has_it(
    deployment: SentinelDeployment, client: BoundedRedis
) -> None:
    store = TaskStore(client, retention_seconds=60)
    threads = _hold_replicas(deployment, 1.0)
    started = time.monotonic()
    await store.create(_task("r1"), durable=True)
    waited = time.monotonic() - started
    for thread in threads:
        thread.join()
    assert waited > 0.5  # it waited for a replica to wake up and acknowledge
    holders = []
    for node in deployment.data:
        if node is deployment.primary():
            continue
        direct = deployment.data_client(node)
        holders.append(direct.exists(keys.task_record("r1")))
        direct.close()
    assert any(holders)


async def test_local_durability_acknowledges_before_any_replica_has_the_write(
    deployment: SentinelDeployment,
) -> None:
    """The same write under ``local``: what the test above would see without the replica's WAIT."""
    local = connect_sentinel(_settings(deployment, durability="local"))
    try:
        store = TaskStore(local, retention_seconds=60)
        threads = _hold_replicas(deployment, 1.0)
        started = time.monotonic()
        await store.create(_task("l1"), durable=True)
        waited = time.monotonic() - started
        behind = _replica_acked(deployment)
        for thread in threads:
            thread.join()
    finally:
        await local.aclose()
    assert waited < 0.5
    assert behind < 0  # no replica had acknowledged it when the reply came


async def test_a_connection_to_a_demoted_primary_is_dropped_and_the_next_command_reaches_the_primary(
    deployment: SentinelDeployment, client: BoundedRedis
) -> None:
    queues = AccountQueues(client)
    await client.ping()  # one pooled connection, to the primary
    # That connection is made to reach a replica, as one opened while a sentinel still named a
    # primary since demoted would (redis-py's public connection API; the pool holds only it).
    pool = client.connection_pool
    conn = await pool.get_connection()
    replica = next(n for n in deployment.data if n is not deployment.primary())
    await conn.disconnect()
    await conn.connect_to(("127.0.0.1", replica.port))
    await pool.release(conn)
    with pytest.raises(RedisConnectionError, match="now a slave"):
        await client.set("k", "v")
    assert not conn.is_connected  # dropped, not handed out again
    await client.set("k", "v")
    assert await client.get("k") == b"v"
    # the same through a durable, resent-once admission pipeline: the resend reaches the primary
    conn = await pool.get_connection()
    await conn.disconnect()
    await conn.connect_to(("127.0.0.1", replica.port))
    await pool.release(conn)
    admitted = await queues.admit("a1", "t1", core_size=1, queue_size=1)
    assert admitted.code == 1
    direct = deployment.data_client(deployment.primary())
    try:
        assert direct.zscore(keys.account_running("a1"), "t1") is not None
    finally:
        direct.close()


async def test_preflight_accepts_the_deployment(deployment: SentinelDeployment, client: BoundedRedis) -> None:
    await preflight(client, _settings(deployment))


@pytest.mark.parametrize("wrong", ["server", "sentinel"])
async def test_preflight_refuses_a_wrong_password_without_saying_it(
    deployment: SentinelDeployment, wrong: str
) -> None:
    bad = "wrong-Zu8Pw3"
    if wrong == "server":
        settings = _settings(deployment, password=bad)
        expect = "refused this process's password: check redis.password"
    else:
        urls = [u.replace(SENTINEL_PASSWORD, bad) for u in deployment.urls]
        settings = _settings(deployment, urls=urls)
        expect = "refused this process's credentials: check the password in its redis.urls entry"
    client = connect_sentinel(settings)
    try:
        with pytest.raises(RedisRefused, match=expect) as refused:
            await preflight(client, settings)
    finally:
        await client.aclose()
    for secret in (bad, SENTINEL_PASSWORD, deployment.password):
        assert secret not in str(refused.value)


async def test_preflight_refuses_a_service_the_sentinels_do_not_watch(deployment: SentinelDeployment) -> None:
    settings = _settings(deployment, sentinel_service="nosuch")
    client = connect_sentinel(settings)
    try:
        with pytest.raises(RedisRefused, match=r"redis\.urls watches a primary named 'nosuch'"):
            await preflight(client, settings)
    finally:
        await client.aclose()


def test_sentinel_urls_are_checked_without_echoing_them() -> None:
    assert sentinel_addresses(("redis://:pw@h1:1", "redis://:pw@h2")) == (
        [("h1", 1), ("h2", 26379)],
        {"password": "pw"},
    )
    with pytest.raises(ValueError, match="same user name and password") as refused:
        sentinel_addresses(("redis://:pw1@h1:1", "redis://:pw2@h2:2"))
    assert "pw1" not in str(refused.value)
    with pytest.raises(ValueError, match="must be redis://host:port"):
        sentinel_addresses(("rediss://:pw@h1:1",))
    with pytest.raises(ValueError, match="lists no sentinel"):
        sentinel_addresses(())


# -- replicated without a replica (one server: the session's embedded Valkey) ---------------------


async def test_replicated_without_a_replica_fails_with_not_durable_within_the_command_timeout(
    redis_server: EmbeddedRedis, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = RedisSettings(url=redis_server.url, durability="replicated", command_timeout_seconds=1.0)
    client = connect(redis_server.url, settings)
    try:
        caplog.set_level(logging.WARNING, logger="broker.redis_client")
        started = time.monotonic()
        await preflight(client, settings)
        # a warning, at once: no WAIT for a replica that is not there holds the start
        assert time.monotonic() - started < 0.5
        assert "has no connected replica" in caplog.text
        store = TaskStore(client, retention_seconds=60)
        started = time.monotonic()
        with pytest.raises(NotDurable, match="replicas that have them: 0 of 1"):
            await store.create(_task("n1"), durable=True)
        assert time.monotonic() - started < 1.0
    finally:
        await client.aclose()


# -- a killed primary (a deployment of its own: it does not come back) ------------------------------


@pytest.fixture
def own_deployment(tmp_path: Path) -> Iterator[SentinelDeployment]:
    running = SentinelDeployment(tmp_path / "sentinel")
    running.start()
    yield running
    running.stop()


async def test_the_client_follows_the_new_primary_after_the_primary_is_killed(
    own_deployment: SentinelDeployment,
) -> None:
    client = connect_sentinel(_settings(own_deployment, command_timeout_seconds=2.0))
    errors: list[str] = []
    try:
        await client.set("before", "1")
        old = own_deployment.kill_primary()
        started = time.monotonic()
        async with asyncio.timeout(15):
            while True:
                try:
                    await client.set("after", "1")
                    break
                except RedisConnectionError as exc:  # the only kind of failure meanwhile
                    errors.append(type(exc).__name__)
                await asyncio.sleep(0.05)
        took = time.monotonic() - started
        new = own_deployment.primary()
        assert new is not old
        direct = own_deployment.data_client(new)
        try:
            assert direct.get("after") == b"1"
            assert direct.get("before") == b"1"  # replicated before the kill
        finally:
            direct.close()
        # durable writes work there too, once a replica follows the new primary
        own_deployment.wait_failover(old)
        await TaskStore(client, retention_seconds=60).create(_task("f1"), durable=True)
    finally:
        await client.aclose()
    assert errors, "no command failed while the primary was gone"
    print(f"sentinel failover: writes resumed {took:.1f}s after the kill; failures meanwhile {len(errors)}")


async def test_a_claim_not_confirmed_durable_is_sent_once_a_later_write_confirms_it(
    deployment: SentinelDeployment, client: BoundedRedis
) -> None:
    """A claim whose durable wait fails may still be written: it was left SUBMITTED and never sent,
    and the task failed at its timeout (3 to 20 of 200 in the cluster kill test). Once a later
    durable write of its shard confirms it, the bridge sends it, with the nonce it claimed."""
    sim = await start_mjsim(accounts=1, speed=0, job_seconds=0.2, progress_steps=1)
    bridge_redis = connect_sentinel(_settings(deployment, command_timeout_seconds=1.0))
    admitting = connect_sentinel(_settings(deployment, durability="local"))
    try:
        settings = bridge_settings(sim, "redis://127.0.0.1:1/0")
        async with running_bridge(settings, bridge_redis) as bridge:
            await wait_online(bridge, ["a0"])
            threads = _hold_replicas(deployment, 1.8)
            store = TaskStore(admitting, retention_seconds=60)
            task, code = await submit(store, "a0", prompt="a lantern by the sea")
            assert code == 1
            claimed = await wait_status(store, task.id, [TaskStatus.SUBMITTED], within=5)
            for thread in threads:
                thread.join()
            nonce = claimed.properties.nonce
            assert nonce

            async def sent() -> bool:
                return (await sim.counters())["interactions"]["by_nonce"].get(nonce) == 1

            await wait_until(sent, within=10, what="the claimed task sent once confirmed")
            counters = (await sim.counters())["interactions"]
            assert not counters["duplicate_keys"] and sum(counters["by_nonce"].values()) == 1
    finally:
        await admitting.aclose()
        await bridge_redis.aclose()
        await sim.close()
