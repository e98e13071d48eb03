"""Checks of a Redis Cluster as a whole: at a process's start (`cluster_preflight`, from
`broker.redis_client.preflight`) and for `/ready` (`cluster_problem`)."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio.cluster import ClusterNode
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.config import RedisSettings
from broker.redis_client import RedisRefused
from broker.redis_cluster import BoundedCluster, ClusterUnavailable

__all__ = ["cluster_preflight", "cluster_problem"]

log = logging.getLogger(__name__)


async def cluster_preflight(client: BoundedCluster, settings: RedisSettings) -> None:
    """`broker.redis_client.preflight` for a cluster: raise `RedisRefused` when it will never take
    this process (a password refused, seeds that are no cluster, a primary without the AOF that
    `redis.durability` needs); log a warning and go on when it is down or failing over now."""
    try:
        await client.initialize()
    except ClusterUnavailable as exc:
        if "Cluster mode is not enabled" in str(exc):
            raise RedisRefused(
                "redis.mode is cluster but redis.urls name a server without cluster mode"
            ) from None
        log.warning("Redis Cluster not reachable at start (%s); going on", type(exc.__cause__).__name__)
        return
    except AuthenticationError:
        raise RedisRefused("the cluster refused this process's password: check redis.password") from None
    primaries = client.get_primaries()
    for node in primaries:
        try:
            info = await client.execute_command("CLUSTER INFO", target_nodes=node)
            if client.durability is not None:
                numlocal = client.durability[0]
                await client.execute_command("WAITAOF", numlocal, 0, 100, target_nodes=node)
        except ResponseError as exc:
            if "appendonly" in str(exc):
                raise RedisRefused(
                    f"redis.durability is {settings.durability!r} but the cluster node {node.name} has "
                    "appendonly off: turn AOF on (appendonly yes, appendfsync always) on every node or "
                    "set redis.durability: none"
                ) from None
            if "unknown command" in str(exc).lower():
                raise RedisRefused(
                    f"redis.durability is {settings.durability!r} but the cluster node {node.name} has no "
                    "WAITAOF (Redis/Valkey 7.2+ has it): upgrade it or set redis.durability: none"
                ) from None
            raise
        except (RedisConnectionError, OSError) as exc:
            log.warning(
                "cluster node %s not reachable at start (%s); going on", node.name, type(exc).__name__
            )
            continue
        state = info.get("cluster_state") if isinstance(info, dict) else None
        if state not in ("ok", b"ok"):
            log.warning("cluster node %s reports cluster_state %s; going on", node.name, state)


async def cluster_problem(client: BoundedCluster) -> str | None:
    """Why the cluster cannot serve every slot now (for `/ready`), or None when it can: each
    primary of the client's slot map is asked for its ``cluster_state``."""
    await client.initialize()
    primaries = client.get_primaries()

    async def state(node: ClusterNode) -> str:
        try:
            info = await client.execute_command("CLUSTER INFO", target_nodes=node)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            return f"primary {node.name} unreachable ({type(exc).__name__})"
        found = info.get("cluster_state") if isinstance(info, dict) else None
        return "" if found == "ok" else f"cluster_state {found} on {node.name}"

    problems = [p for p in await asyncio.gather(*(state(node) for node in primaries)) if p]
    if any("unreachable" in p for p in problems):
        await client.aclose()  # read the slot map again next time: a replica may have taken over
    return "; ".join(problems) or None
