"""The cluster client (`broker.redis_cluster`) against a real Valkey Cluster (`tests/cluster_support.py`):
a slot map gone stale in a failover (MOVED) and a slot being migrated (ASK) are followed, every
script runs once, and the durable waits go to the node that ran the writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cluster_support import ValkeyCluster

from broker import lua
from broker.config import RedisSettings
from broker.redis_client import RedisRefused, preflight
from broker.redis_cluster import BoundedCluster, BoundedClusterPipeline, connect_cluster
from broker.redis_server import EmbeddedRedis

_INCR = lua.Script("return redis.call('INCR', KEYS[1])")


@pytest.fixture
async def cluster_client(valkey_cluster: ValkeyCluster) -> AsyncIterator[BoundedCluster]:
    await asyncio.to_thread(valkey_cluster.start)  # empties it
    settings = RedisSettings(
        mode="cluster",
        urls=tuple(valkey_cluster.urls),
        password=valkey_cluster.password,
        durability="replicated",
        command_timeout_seconds=5,
    )
    client = connect_cluster(settings.urls, settings, (1, 1))
    yield client
    await client.aclose()


def _incr_all(keys: list[str]) -> lua.Fill:
    def fill(pipe: BoundedClusterPipeline) -> None:
        for key in keys:
            _INCR.queue(pipe, [key], [])

    return fill


async def test_a_durable_pipeline_follows_a_failover_it_did_not_see(
    cluster_client: BoundedCluster, valkey_cluster: ValkeyCluster
) -> None:
    keys = [f"moved:{i}" for i in range(12)]  # over every shard
    assert await lua.execute(cluster_client, _incr_all(keys), [_INCR], durable=True) == [1] * 12
    before = {k: cluster_client.get_node_from_key(k).port for k in keys}
    promoted = await asyncio.to_thread(valkey_cluster.promote_replica, 0)
    moved = [
        k for k in keys if before[k] != promoted.port and cluster_client.keyslot(k) in _slots_of(promoted)
    ]
    assert moved, "some keys live on the shard that failed over"
    # The client still names the old primary for those slots: it answers MOVED, the commands did not
    # run, and they are sent to the new primary, each once, with the durable waits there.
    assert await lua.execute(cluster_client, _incr_all(keys), [_INCR], durable=True) == [2] * 12
    assert all(cluster_client.get_node_from_key(k).port == promoted.port for k in moved)


async def test_a_pipeline_follows_ask_to_a_slot_being_migrated(
    cluster_client: BoundedCluster, valkey_cluster: ValkeyCluster
) -> None:
    await cluster_client.initialize()
    key = "ask:{migrating}"
    slot = cluster_client.keyslot(key)
    source = valkey_cluster.node_at(cluster_client.get_node_from_key(key).port)
    target = next(n for n in valkey_cluster.live_primaries() if n.port != source.port)
    source_id, target_id = valkey_cluster.node_id(source), valkey_cluster.node_id(target)
    with target.client() as conn:
        conn.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    with source.client() as conn:
        conn.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    try:
        # the key is not on the source: it answers ASK, and the script runs on the target behind ASKING
        assert await lua.execute(cluster_client, _incr_all([key]), [_INCR], durable=True) == [1]
        assert await lua.execute(cluster_client, _incr_all([key]), [_INCR]) == [2]
    finally:
        for node in valkey_cluster.live_primaries():
            with node.client() as conn:
                conn.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    valkey_cluster.wait_ok()
    assert await cluster_client.get(key) == b"2"


def _slots_of(node: object) -> set[int]:
    with node.client() as conn:  # type: ignore[attr-defined]
        shards = conn.execute_command("CLUSTER SLOTS")
    out: set[int] = set()
    for start, end, primary, *_ in shards:
        if int(primary[1]) == node.port:  # type: ignore[attr-defined]
            out.update(range(int(start), int(end) + 1))
    return out


def _settings(cluster: ValkeyCluster, **changes: object) -> RedisSettings:
    base: dict[str, object] = {
        "mode": "cluster",
        "urls": tuple(cluster.urls),
        "password": cluster.password,
        "durability": "replicated",
        "command_timeout_seconds": 5,
    }
    return RedisSettings(**{**base, **changes})  # type: ignore[arg-type]


async def _preflight(settings: RedisSettings) -> None:
    client = open_redis_for(settings)
    try:
        await preflight(client, settings)
    finally:
        await client.aclose()


def open_redis_for(settings: RedisSettings) -> BoundedCluster:
    return connect_cluster(settings.urls, settings, (1, 1) if settings.durability != "none" else None)


async def test_preflight_takes_a_healthy_cluster(valkey_cluster: ValkeyCluster) -> None:
    await _preflight(_settings(valkey_cluster))


async def test_preflight_refuses_a_wrong_password(valkey_cluster: ValkeyCluster) -> None:
    with pytest.raises(RedisRefused, match="refused this process's password") as caught:
        await _preflight(_settings(valkey_cluster, password="not-the-password"))
    assert valkey_cluster.password not in str(caught.value)


async def test_preflight_refuses_a_primary_without_aof(valkey_cluster: ValkeyCluster) -> None:
    primary = valkey_cluster.live_primaries()[0]
    with primary.client() as conn:
        conn.config_set("appendonly", "no")
    try:
        with pytest.raises(RedisRefused, match=f"{primary.name} has appendonly off"):
            await _preflight(_settings(valkey_cluster))
        await _preflight(_settings(valkey_cluster, durability="none"))  # nothing to wait for
    finally:
        with primary.client() as conn:
            conn.config_set("appendonly", "yes")


async def test_preflight_refuses_a_server_that_is_no_cluster(
    valkey_cluster: ValkeyCluster, redis_server: EmbeddedRedis
) -> None:
    seed = (f"redis://127.0.0.1:{redis_server.port}",)
    with pytest.raises(RedisRefused, match="without cluster mode"):
        await _preflight(_settings(valkey_cluster, urls=seed, password=redis_server.password))
