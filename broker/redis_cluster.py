"""The Redis Cluster client: redis-py's asyncio `RedisCluster`, held to `BoundedRedis`'s contract.

`broker.redis_client.open_redis` returns one for ``redis.mode: cluster``; every process uses it
exactly as it uses the single-node `BoundedRedis` (same commands, `broker.lua` scripts, pipelines).
What differs, and why:

- **A deadline per round trip**, as for one node: one `asyncio.timeout` around each command and
  each pipeline (all its nodes, its redirections and waits included), `command_timeout` seconds.
- **What is retried.** A reply of MOVED, ASK, TRYAGAIN or CLUSTERDOWN means the node did not run
  the command (the slot lives elsewhere now, is migrating, or the cluster is failing over): those
  commands are sent again, to the node the refreshed slot map names, until the cluster takes them
  or half the command timeout has passed; then they fail with `ClusterUnavailable`. A connection
  that fails (`ConnectionError`, a timeout) is never sent again by the client, as with one node:
  the node may have run the command. Only the idempotent call sites resend (``resend=True`` of
  `broker.lua`). redis-py's own policy retries every command whose type is in
  ``ERRORS_ALLOW_RETRY`` (connection errors and timeouts included) `cluster_error_retry_attempts`
  times; that public class attribute is narrowed here to the errors that mean "did not run"
  (CLUSTERDOWN and a slot the client's map does not cover). Setting the attempts to 0 instead is
  not possible: `ClusterPipeline.execute` loops over ``range(attempts)`` and would send nothing.
  Pipelines go through redis-py with ``allow_redirections=False`` and ``raise_on_error=False``:
  with redirections on, redis-py resends a redirected command on another connection, which a
  durable wait queued on the first node's connection would not cover; and with ``raise_on_error``
  its retry loop resends every command whose reply was falsy (a 0, an empty list), which ran.
  A connection that fails makes the client read the slot map again at its next command
  (redis-py's `aclose`, as redis-py itself does for single commands), so a failed-over shard is
  found as soon as the cluster has promoted its replica.
- **Durable acknowledgements per node.** A durable pipeline (`broker.lua.execute(...,
  durable=True)`) is routed here: each keyed command is sent to its slot's primary explicitly, and
  each primary the pipeline writes to gets ``WAITAOF`` (and ``WAIT`` for ``replicated``) at the end
  of its part, on the same connection (`broker.redis_client.queue_durable_waits`). The pipeline's
  one extra reply holds every node's waits; `check_durable` requires them all.
- **Scripts** are loaded on every primary (redis-py sends SCRIPT LOAD to all of them); a replica
  promoted since answers NOSCRIPT, and `broker.lua` loads them again and resends just those calls.
- **Bounded connections per node** (`max_connections`) and redis-py's connect retries off.
- **Two guards for redis-py 5.3**: the configured seeds stay among its startup nodes (it drops one
  at each lost connection, and could be left with none after a failover), and the slot map is
  read within the command timeout (a pipeline's ``__aenter__`` would read it with none, holding
  the client's lock while a node does not answer).
- **Commands packed by hiredis**, through the public ``get_connection_kwargs()`` of the client
  (the connection class nodes are built with), as for one node.
- Every error that means "the cluster cannot take it now" (no node reachable to read the slot
  map, a slot not covered, CLUSTERDOWN past the retries, redirections without end) is raised as
  `ClusterUnavailable`, a redis-py `ConnectionError`: every process already treats that as Redis
  being unavailable (the web answers 503 with code 9, loops wait and retry).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterDownError,
    ClusterError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.config import RedisSettings
from broker.redis_client import check_durable_waits, hiredis_packed, queue_durable_waits

__all__ = [
    "BoundedCluster",
    "BoundedClusterPipeline",
    "ClusterUnavailable",
    "connect_cluster",
]

log = logging.getLogger(__name__)

#: replies that mean the node did not run the command (MOVED is a kind of ASK in redis-py)
_NOT_RUN = (AskError, TryAgainError, ClusterDownError)
#: what redis-py may retry on its own: only what did not run (see the module)
_RETRY = (ClusterDownError, SlotNotCoveredError)
#: redis-py's attempts for those (each after re-reading the slot map and 0.25 s): a failover's
#: CLUSTERDOWN lasts about a second with a cluster-node-timeout of a few seconds
_ATTEMPTS = 12


class ClusterUnavailable(RedisConnectionError):  # type: ignore[misc]
    """The cluster cannot take commands now (no node reachable, a slot without a primary, a
    failover not finished within the retries); what was refused did not run."""


class BoundedCluster(RedisCluster):  # type: ignore[misc]  # redis is untyped here (see pyproject)
    """redis-py's cluster client, each command bounded by `command_timeout` (see the module)."""

    ERRORS_ALLOW_RETRY = _RETRY
    command_timeout: float = RedisSettings().command_timeout_seconds
    durability: tuple[int, int] | None = None
    #: seconds an idempotent pipeline is sent again after a lost connection (`broker.lua`): a
    #: shard failing over is unreachable until its replica is promoted
    resend_window: float = RedisSettings().command_timeout_seconds

    #: (host, port) of the configured seeds (`connect_cluster`)
    seeds: tuple[tuple[str, int], ...] = ()

    async def initialize(self) -> BoundedCluster:
        # redis-py 5.3 drops a node from its startup nodes at each lost connection to it, and
        # reads the slot map from those alone: after a failover's burst of lost connections it
        # may have none left and never reach the cluster again. The seeds are always among them.
        startup = self.nodes_manager.startup_nodes
        for host, port in self.seeds:
            if f"{host}:{port}" not in startup:
                node = ClusterNode(host, port, **self.get_connection_kwargs())
                startup[node.name] = node
        try:
            async with asyncio.timeout(self.command_timeout):
                await super().initialize()
        except TimeoutError:
            raise ClusterUnavailable(f"the slot map was not read within {self.command_timeout:g}s") from None
        except RedisClusterException as exc:
            if isinstance(exc.__cause__, AuthenticationError):
                raise exc.__cause__ from None
            raise ClusterUnavailable(f"cannot read the cluster's slot map: {exc}") from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self.command_timeout):
                return await super().execute_command(*args, **kwargs)
        except TimeoutError:
            raise RedisTimeoutError(f"no reply to {args[0]} within {self.command_timeout:g}s") from None
        except (ClusterError, SlotNotCoveredError) as exc:
            raise ClusterUnavailable(
                f"{args[0]}: the cluster did not take it ({type(exc).__name__})"
            ) from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> BoundedClusterPipeline:
        if transaction or shard_hint:
            raise RedisClusterException("a cluster pipeline has no MULTI: use a script on one slot")
        return BoundedClusterPipeline(self)

    def queue_wait_durable(self, pipe: BoundedClusterPipeline) -> int:
        """Make `pipe` end with this client's durable waits on each node it writes to; it then
        returns one more reply (every node's waits), which `check_durable` reads."""
        if self.durability is None:
            return 0
        pipe.durable = True
        return 1

    def check_durable(self, replies: list[Any]) -> None:
        """Raise `NotDurable` unless every node's waits (the one reply of `queue_wait_durable`)
        meet this client's durability."""
        (per_node,) = replies
        for waits in per_node:
            check_durable_waits(waits, self.durability, self.command_timeout)


class _RawPipeline(ClusterPipeline):  # type: ignore[misc]
    """redis-py's pipeline with its retries narrowed to what did not run (see the module)."""

    ERRORS_ALLOW_RETRY = _RETRY


class BoundedClusterPipeline(ClusterPipeline):  # type: ignore[misc]
    """A non-transactional cluster pipeline: its commands are grouped per node and sent on one
    connection per node, in order; the whole round trip bounded by the client's timeout."""

    def __init__(self, client: BoundedCluster) -> None:
        super().__init__(client)
        self.cluster = client
        #: (args, options) of each command queued, in order
        self.queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        #: end with durable waits (`BoundedCluster.queue_wait_durable`)
        self.durable = False

    def execute_command(self, *args: Any, **kwargs: Any) -> BoundedClusterPipeline:
        self.queued.append((args, kwargs))
        return self

    def __len__(self) -> int:
        return len(self.queued)

    # redis-py blocks these in cluster pipelines (a script's keys might span slots, PING names no
    # node); ours name one slot (`broker.keys`) and PING goes to the default node.
    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> BoundedClusterPipeline:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def ping(self, **kwargs: Any) -> BoundedClusterPipeline:
        return self.execute_command("PING", **kwargs)

    async def __aenter__(self) -> BoundedClusterPipeline:
        # No slot map read here: `execute` reads it if needed, within its deadline (redis-py's
        # would read it without one, holding the client's lock while a node does not answer).
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.queued, self.durable = [], False

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """The replies of the queued commands in order (and, when durable, every node's waits)."""
        queued, durable = self.queued, self.durable
        self.queued, self.durable = [], False
        timeout = self.cluster.command_timeout
        try:
            async with asyncio.timeout(timeout):
                replies = await self._send(queued, durable, give_up_after=timeout / 2)
        except TimeoutError:
            await self.cluster.aclose()  # read the slot map again; drops what the pipeline held
            raise RedisTimeoutError(f"no reply to a pipeline within {timeout:g}s") from None
        except (ClusterError, SlotNotCoveredError) as exc:
            raise ClusterUnavailable(f"the cluster did not take a pipeline ({type(exc).__name__})") from exc
        except RedisConnectionError as exc:
            if not isinstance(exc, (ClusterUnavailable, AuthenticationError)):
                await self.cluster.aclose()  # a node is gone: read the slot map again next time
            raise
        # redis-py leaves a connection lost while reading among the replies: the node may have run
        # those commands, and one node's waits no longer cover them. As with one node, the whole
        # pipeline fails with the connection's error (an idempotent caller resends it).
        seen = [*replies[:-1], *(r for waits in replies[-1] for r in waits)] if durable else replies
        lost = next((r for r in seen if isinstance(r, (RedisConnectionError, RedisTimeoutError))), None)
        if lost is not None:
            await self.cluster.aclose()
            raise lost
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def _send(
        self, queued: list[tuple[tuple[Any, ...], dict[str, Any]]], durable: bool, give_up_after: float
    ) -> list[Any]:
        """Send `queued`; the commands a node refused (did not run) go again until `give_up_after`:
        after ASK to the node it names (behind ASKING), else to the slot map read again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        results: list[Any] = [None] * len(queued)
        waited: list[list[Any]] = []
        pending = list(range(len(queued)))
        asking: dict[int, ClusterNode] = {}
        pause = 0.05
        while pending:
            replies, waits = await self._round([(*queued[i], asking.get(i)) for i in pending], durable)
            waited += waits
            for i, reply in zip(pending, replies, strict=True):
                results[i] = reply
            pending = [i for i in pending if isinstance(results[i], _NOT_RUN)]
            if not pending:
                break
            if loop.time() + pause > deadline:
                for i in pending:
                    reason = type(results[i]).__name__
                    results[i] = ClusterUnavailable(
                        f"{queued[i][0][0]}: the cluster did not take it ({reason})"
                    )
                break
            asking = {}
            for i in pending:
                refusal = results[i]
                if isinstance(refusal, AskError) and not isinstance(refusal, MovedError):
                    node = self.cluster.get_node(host=refusal.host, port=refusal.port)
                    if node is not None:
                        asking[i] = node
            log.info(
                "cluster refused %d commands (%s); sending them again", len(pending), type(refusal).__name__
            )
            if len(asking) < len(pending):  # the slots moved or a failover is under way
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                await self.cluster.aclose()  # read the slot map again
        return [*results, waited] if durable else results

    async def _round(
        self, commands: list[tuple[tuple[Any, ...], dict[str, Any], ClusterNode | None]], durable: bool
    ) -> tuple[list[Any], list[list[Any]]]:
        """One send of `commands` through redis-py; a command with a node goes there behind ASKING.
        With `durable`, each keyed command goes to its slot's primary, explicitly, and each of
        those nodes ends with the waits."""
        if durable:  # the slot map is needed here (redis-py reads it in `execute` otherwise)
            await self.cluster.initialize()
        raw = _RawPipeline(self.cluster)
        nodes: dict[str, ClusterNode] = {}
        positions = []
        for args, options, asked in commands:
            if asked is not None:
                raw.execute_command("ASKING", target_nodes=asked)
                node: ClusterNode | None = asked
            else:
                node = await self._primary_of(args) if durable and "target_nodes" not in options else None
            positions.append(len(raw))
            if node is None:
                raw.execute_command(*args, **options)
            else:
                nodes.setdefault(node.name, node)
                raw.execute_command(*args, **{**options, "target_nodes": node})
        first_wait = len(raw)
        counts = [
            queue_durable_waits(raw, self.cluster.durability, self.cluster.command_timeout, target_nodes=node)
            for node in (nodes.values() if durable else ())
        ]
        try:
            replies: list[Any] = await raw.execute(raise_on_error=False, allow_redirections=False)
        except AttributeError:
            # redis-py 5.3 reads the client's default node after a pipeline in which a command
            # failed, and another task's `aclose` (its own, after a lost connection) has set it
            # to None meanwhile. The replies were read but are out of reach: the pipeline may
            # have run, as with a lost connection.
            if self.cluster.get_default_node() is not None:
                raise
            raise RedisConnectionError(
                "the cluster's slot map was being read again during a pipeline"
            ) from None
        waits, at = [], first_wait
        for count in counts:
            waits.append(replies[at : at + count])
            at += count
        return [replies[p] for p in positions], waits

    async def _primary_of(self, args: tuple[Any, ...]) -> ClusterNode | None:
        """The primary that holds the keys of command `args`, or None for a keyless command."""
        command = str(args[0]).upper()
        if command in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"):
            keys = args[3 : 3 + int(args[2])]
        else:
            keys = await self.cluster.commands_parser.get_keys(*args) or ()
        if not keys:
            return None
        node: ClusterNode | None = self.cluster.get_node_from_key(keys[0])
        return node


def connect_cluster(
    urls: tuple[str, ...], settings: RedisSettings, durability: tuple[int, int] | None
) -> BoundedCluster:
    """A cluster client seeded by `urls` (``redis://[:password@]host:port``); the password is
    `settings.password` or the first URL's. Nothing is connected before the first command."""
    if not urls:
        raise ValueError("redis.mode cluster needs redis.urls (seed nodes, redis://host:port)")
    seeds = [parse_url(url) for url in urls]
    password = settings.password or next((s["password"] for s in seeds if s.get("password")), None)
    client = BoundedCluster(
        startup_nodes=[ClusterNode(s.get("host", "127.0.0.1"), s.get("port", 6379)) for s in seeds],
        password=password,
        username=next((s["username"] for s in seeds if s.get("username")), None),
        ssl=any(url.startswith("rediss://") for url in urls),
        decode_responses=False,
        max_connections=settings.max_connections,
        socket_connect_timeout=settings.connect_timeout_seconds,
        health_check_interval=settings.health_check_seconds,
        retry=Retry(NoBackoff(), 0),
        connection_error_retry_attempts=0,
        cluster_error_retry_attempts=_ATTEMPTS,
    )
    kwargs = client.get_connection_kwargs()
    kwargs["connection_class"] = hiredis_packed(kwargs["connection_class"])
    client.seeds = tuple((s.get("host", "127.0.0.1"), int(s.get("port", 6379))) for s in seeds)
    client.command_timeout = client.resend_window = settings.command_timeout_seconds
    client.durability = durability
    return client
