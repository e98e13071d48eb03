"""The Redis client every process uses: redis-py's asyncio client, configured once.

What is set and why:

- **A deadline per round trip.** A command, or a whole pipeline, whose reply has not arrived within
  `command_timeout` seconds fails with redis-py's `TimeoutError` (its connection is dropped, so no
  late reply is ever read as another command's): a Redis that stops answering fails the caller
  instead of hanging it. Blocking commands (BLPOP, XREADGROUP BLOCK) must block for less; callers
  that wait longer loop on short blocks (see `broker.bridge_calls`). redis-py's own
  ``socket_timeout`` would give the same bound per socket read instead: on Python 3.11 that is a
  timer for every command of a pipeline and a task for every write, a third of the client's CPU on
  the hot paths (`bench/pipeline_bench.py`, the A/B against the tree before: see README). So the
  bound is one `asyncio.timeout` around each round trip, set by overriding the client's public
  ``execute_command`` and ``pipeline`` (and the pipeline's ``execute``), nothing else.
- **Health checks.** A connection idle for `health_check_interval` seconds is PINGed before it is
  used again, and redis-py checks at checkout that no stale reply waits on a pooled connection.
- **No automatic resends.** redis-py can retry a command whose connection failed, but the server may
  have run it before the connection failed, and not every command is safe to run twice (an INCR,
  an RPUSH of an id). redis-py's `Retry` applies to every command of the client, so it stays off
  (no retries): resending is an explicit choice of each call site, made for idempotent scripts and
  pipelines only, through ``resend=True`` of `broker.lua.execute` and `broker.batching` (admission,
  task writes, releases, the hook outbox: README, "Redis", says why each is safe). Other callers
  that know a command is safe to repeat (reads, consumer loops) retry on their own rhythm.
- **Bounded pool.** At most `max_connections` connections per process; past that a command fails
  with redis-py's "Too many connections" rather than opening more.
- **Durable acknowledgements.** A pipeline sent with ``durable=True`` (`broker.lua.execute`) ends
  with ``WAITAOF 1 0 timeout`` (``redis.durability: local``) and, with ``replicated``, ``WAIT 1
  timeout`` too, in the same round trip on the same connection: its reply arrives once the server
  has fsynced the writes to its AOF and, with ``replicated``, a replica has received them; a server
  that cannot promise it fails the call with `NotDurable`. The writes a reply acknowledges to a
  client (admission, the bridge's claim before an interaction is sent) go this way. Both wait for
  the connection's own writes, and the AOF and the replication stream are prefixes of the server's
  history, so they also cover whatever that connection read before writing. A server with
  ``appendfsync always`` (the embedded one) has fsynced before it replies: the local wait is free;
  with ``everysec`` it waits for the next fsync (up to 1/hz s).
- **Commands packed by hiredis.** redis-py reads replies with hiredis when it is installed, and its
  sync client packs commands with hiredis too, but its asyncio connections pack in Python, at
  several times the CPU per command (a tenth of the web's CPU per submit). The connection class the
  URL chose gets hiredis's `pack_command` through the public ``pack_command`` hook; arguments
  hiredis does not take are left to redis-py, which raises its usual `DataError`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.config import RedisSettings, Settings

if TYPE_CHECKING:
    from broker.redis_cluster import BoundedCluster

__all__ = [
    "BoundedPipeline",
    "BoundedRedis",
    "NotDurable",
    "RedisRefused",
    "apply_settings",
    "check_or_exit",
    "connect",
    "hiredis_packed",
    "open_redis",
    "preflight",
]

log = logging.getLogger(__name__)

_DEFAULTS = RedisSettings()


class NotDurable(RedisError):  # type: ignore[misc]
    """The server did not confirm that a pipeline's writes are durable (`WAITAOF`, `WAIT`): they may have
    been applied, but may not survive a crash of the server's host."""


class RedisRefused(Exception):
    """Redis cannot be used by this process as configured (wrong password, no AOF); the message
    says what to do, and the process should stop rather than retry."""


#: (numlocal, replicas) for each `redis.durability`: a durable pipeline ends with ``WAITAOF numlocal
#: 0`` and, with replicas, ``WAIT replicas`` (``replica`` is the earlier name of ``replicated``)
_DURABILITY: dict[str, tuple[int, int] | None] = {
    "none": None,
    "local": (1, 0),
    "replicated": (1, 1),
    "replica": (1, 1),
}


class BoundedRedis(aioredis.Redis):  # type: ignore[misc]  # redis is untyped here (see pyproject)
    """redis-py's client, each command bounded by `command_timeout` seconds (see the module)."""

    command_timeout: float = _DEFAULTS.command_timeout_seconds
    #: (numlocal, replicas) a durable pipeline waits for, or None (see the module)
    durability: tuple[int, int] | None = _DURABILITY[_DEFAULTS.durability]

    def queue_wait_durable(self, pipe: Pipeline) -> int:
        """End `pipe` with the waits of this client's durability; how many commands were added."""
        return queue_durable_waits(pipe, self.durability, self.command_timeout)

    def check_durable(self, replies: list[Any]) -> None:
        """Raise `NotDurable` unless `replies` (of the waits `queue_wait_durable` added) meet this
        client's durability."""
        check_durable_waits(replies, self.durability, self.command_timeout)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            async with asyncio.timeout(self.command_timeout):
                return await super().execute_command(*args, **options)
        except TimeoutError:
            raise RedisTimeoutError(f"no reply to {args[0]} within {self.command_timeout:g}s") from None

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> BoundedPipeline:
        pipe = BoundedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.command_timeout = self.command_timeout
        return pipe


class BoundedPipeline(Pipeline):  # type: ignore[misc]
    """redis-py's pipeline, the whole round trip bounded by `command_timeout` seconds."""

    command_timeout: float = _DEFAULTS.command_timeout_seconds

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            async with asyncio.timeout(self.command_timeout):
                replies: list[Any] = await super().execute(raise_on_error)
                return replies
        except TimeoutError:
            raise RedisTimeoutError(f"no reply to a pipeline within {self.command_timeout:g}s") from None


def queue_durable_waits(pipe: Any, durability: tuple[int, int] | None, timeout: float, **route: Any) -> int:
    """Queue on `pipe` the waits of `durability` (see the module); `route` goes with each command
    (a cluster pipeline's ``target_nodes``). Returns how many commands were queued."""
    if durability is None:
        return 0
    numlocal, replicas = durability
    # The server gives up a little before the client would drop the connection.
    wait_ms = max(int(timeout * 900), 1)
    pipe.execute_command("WAITAOF", numlocal, 0, wait_ms, **route)
    if not replicas:
        return 1
    pipe.execute_command("WAIT", replicas, wait_ms, **route)
    return 2


def check_durable_waits(replies: list[Any], durability: tuple[int, int] | None, timeout: float) -> None:
    """Raise `NotDurable` unless `replies` (of `queue_durable_waits`) meet `durability`."""
    assert durability is not None
    numlocal, replicas = durability
    for reply in replies:
        if isinstance(reply, Exception):
            raise NotDurable(f"durable wait failed: {reply}") from reply
    fsynced = int(replies[0][0])
    acknowledged = int(replies[1]) if replicas else 0
    if fsynced < numlocal or acknowledged < replicas:
        raise NotDurable(
            f"writes not confirmed durable within {timeout:g}s "
            f"(fsynced locally: {fsynced}, replicas that have them: {acknowledged} of {replicas} wanted)"
        )


class _HiredisPacking:
    """`pack_command` by hiredis; mixed into whichever connection class the URL chose."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # as redis-py does: a command name with a space ("CONFIG GET") is several arguments
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        if not any(isinstance(arg, bool) for arg in args):  # hiredis would send True as 1
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]  # says what is wrong
        return packed


def hiredis_packed(connection_class: type) -> type:
    """`connection_class` (a redis-py asyncio connection class) with commands packed by hiredis."""
    return type(connection_class.__name__, (_HiredisPacking, connection_class), {})


def apply_settings(client: BoundedRedis, settings: RedisSettings) -> BoundedRedis:
    """Give `client` the deadline and durability of `settings`; returns it."""
    client.command_timeout = settings.command_timeout_seconds
    client.durability = _DURABILITY[settings.durability]
    return client


def connect(url: str, settings: RedisSettings = _DEFAULTS) -> BoundedRedis:
    """An asyncio client for `url` (bytes replies); one per process, shared by its tasks."""
    pool = aioredis.ConnectionPool.from_url(
        url,
        decode_responses=False,
        max_connections=settings.max_connections,
        socket_connect_timeout=settings.connect_timeout_seconds,
        health_check_interval=settings.health_check_seconds,
        retry=Retry(NoBackoff(), 0),
    )
    pool.connection_class = hiredis_packed(pool.connection_class)
    return apply_settings(BoundedRedis.from_pool(pool), settings)


def open_redis(settings: Settings) -> BoundedRedis | BoundedCluster:
    """The client of this process for `redis.mode`: what every process's ``main`` opens."""
    if settings.redis.mode == "single":
        return connect(settings.redis_url, settings.redis)
    if settings.redis.mode == "cluster":
        from broker.redis_cluster import connect_cluster

        return connect_cluster(settings.redis.urls, settings.redis, _DURABILITY[settings.redis.durability])
    if settings.redis.mode == "sentinel":
        from broker.redis_sentinel import connect_sentinel  # it builds on this module

        return connect_sentinel(settings.redis)
    raise NotImplementedError(f"redis.mode {settings.redis.mode}")


async def preflight(client: BoundedRedis | BoundedCluster, settings: RedisSettings) -> None:
    """Check once at start that Redis takes this process: raise `RedisRefused` when it will not.

    A server that refuses the password (another checkout's embedded Valkey on the same port) or
    cannot keep `redis.durability` (``local`` on a server without ``appendonly``) would fail every
    command; better one clear line at start. A server that does not answer yet is left to the
    process's usual handling of an unavailable Redis.

    With ``replicated``, a primary without a connected replica gets a warning, not a refusal: it is
    also what a running deployment goes through while a replica restarts or resyncs after a
    failover, and the durable calls already refuse to acknowledge anything then (`NotDurable`:
    the web answers 503, a bridge does not send); a process that refused to start would turn that
    passing state into a crash loop under its supervisor, and be unable to serve once the replica
    is back.
    """
    if settings.mode == "cluster":
        from broker.cluster_checks import cluster_preflight

        return await cluster_preflight(client, settings)
    where = _where(settings)
    try:
        if settings.mode == "sentinel":
            from broker.redis_sentinel import check_sentinels

            await check_sentinels(client, settings)
        await client.ping()
        if client.durability is not None:
            await _check_durability(client, settings, where)
    except AuthenticationError:
        if settings.mode == "sentinel":
            hint = "check redis.password (the primary's and replicas' password)"
        elif not settings.url:
            hint = (
                f"the server on port {settings.embedded_port} was started by another checkout (another "
                f"redis.data_dir); this process read its password from {settings.data_dir}/password"
            )
        else:
            hint = "check the password in redis.url"
        raise RedisRefused(f"{where} refused this process's password: {hint}") from None
    except (RedisError, OSError) as exc:
        log.warning("Redis not reachable at start (%s); going on", type(exc).__name__)


def _where(settings: RedisSettings) -> str:
    if settings.mode == "sentinel":
        return f"the primary {settings.sentinel_service!r} of the sentinels in redis.urls"
    return "the embedded Valkey" if not settings.url else "redis.url"


async def _check_durability(client: BoundedRedis, settings: RedisSettings, where: str) -> None:
    """Refuse a server that cannot fsync before acknowledging; warn when ``replicated`` has no replica."""
    assert client.durability is not None
    numlocal, replicas = client.durability
    if replicas:
        info = await client.info("replication")
        if int(info.get("connected_slaves", 0)) < replicas:
            log.warning(
                "redis.durability is %r but %s has no connected replica: every acknowledged write "
                "(a submit's admission, a bridge's claim) fails with NotDurable until one connects",
                settings.durability,
                where,
            )
    # the local wait alone: a WAIT for a replica that is not there would hold the start for the
    # whole command timeout, and says nothing the INFO above did not
    async with client.pipeline(transaction=False) as pipe:
        queue_durable_waits(pipe, (numlocal, 0), client.command_timeout)
        (reply,) = await pipe.execute(raise_on_error=False)
    if isinstance(reply, ResponseError) and "appendonly" in str(reply):
        raise RedisRefused(
            f"redis.durability is {settings.durability!r} but {where} has appendonly off: turn "
            "AOF on (appendonly yes, appendfsync always) or set redis.durability: none"
        )
    if isinstance(reply, ResponseError) and "unknown command" in str(reply).lower():
        raise RedisRefused(
            f"redis.durability is {settings.durability!r} but {where} has no WAITAOF "
            "(Redis/Valkey 7.2+ has it): upgrade it or set redis.durability: none"
        )


def check_or_exit(settings: Settings) -> None:
    """`preflight` for a process's ``main``, before its own loop starts: a refusal ends the process
    with one line on stderr (exit status 1) rather than a retry loop or a traceback."""

    async def check() -> None:
        client = open_redis(settings)
        try:
            await preflight(client, settings.redis)
        finally:
            await client.aclose()

    try:
        asyncio.run(check())
    except RedisRefused as exc:
        raise SystemExit(f"Redis refused: {exc}") from None
