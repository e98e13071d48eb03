"""Shared fixtures: one real embedded Redis/Valkey per test session (flushed per test), a task
store on it, and a local hook receiver; and the rule that a cancelled test fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from cancellation_support import fail_cancelled_tests
from cluster_support import ValkeyCluster
from workers_support import STAND_IN_WORKER, HookReceiver

from broker import heartbeat
from broker.clock import now_ms
from broker.queues import AccountQueues
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis, free_port
from broker.store import TaskStore

pytest_plugins = ("pytester",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test whose task was cancelled fails, even when the CancelledError was swallowed."""
    fail_cancelled_tests(items)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    data_dir = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(port=free_port(), data_dir=data_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A Valkey Cluster (3 primaries, 3 replicas) for the session's cluster tests, started on first use."""
    cluster = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = connect(redis_server.url)
    await client.flushall()
    # The web refuses submits while no worker lives (`broker.heartbeat`); tests of the web alone run
    # no worker process, so a heartbeat stands in for one (the heartbeat's own tests remove it).
    await heartbeat.beat(client, STAND_IN_WORKER, now=now_ms(), ttl_ms=3_600_000)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: aioredis.Redis) -> TaskStore:
    return TaskStore(redis, retention_seconds=3600)


@pytest.fixture
def queues(redis: aioredis.Redis) -> AccountQueues:
    return AccountQueues(redis)


@pytest.fixture
async def receiver() -> AsyncIterator[HookReceiver]:
    server = HookReceiver()
    await server.start()
    yield server
    await server.stop()
