"""The client of ``redis.mode: sentinel``: a primary with replicas, found through Redis Sentinel.

redis-py's `Sentinel` asks the sentinels for the primary's address whenever its pool opens a
connection, so the client is `broker.redis_client.BoundedRedis` on that pool, with the contract of
`broker.redis_client.connect` kept whole: one deadline per round trip, health checks, no automatic
resends (``Retry(NoBackoff(), 0)``), at most `max_connections` connections, commands packed by
hiredis (mixed into redis-py's ``SentinelManagedConnection`` through the public ``pack_command``),
and the durable waits of `redis.durability`.

Config:

- ``redis.urls`` are the sentinels (``redis://host:26379``, port 26379 when none is given). A
  password (and user name) in a URL is the *sentinels'* own (their ``requirepass``): Sentinel
  keeps its password apart from the servers', and a sentinel without one refuses an AUTH, so the
  servers' password is never sent to it. Every URL must carry the same one (redis-py sends one set
  of credentials to all sentinels). ``${ENV}`` works inside a URL, as everywhere in the config.
- ``redis.password`` is the servers' password (primary and replicas), ``redis.sentinel_service``
  the primary's name at the sentinels (``sentinel monitor <name> ...``). Data is always in db 0.

Following a failover (what redis-py's ``SentinelConnectionPool`` does, and what the tests check):
each new connection asks the sentinels for the primary (the first that answers with a primary
not marked down), and when that address changed the pool closes its idle connections. A
connection to the old primary that fails (killed host) is dropped by the failing command and
that command's caller gets redis-py's ``ConnectionError``, as with one server: nothing is resent
behind the caller's back. A connection that reaches a primary since demoted gets ``READONLY`` for
a write; redis-py's ``SentinelManagedConnection`` then drops it and raises ``ConnectionError``
too. (Sentinel also closes the clients of a primary it demotes, so that is rare.) The caller's
next command opens a connection to whatever the sentinels name primary then. Until they have
promoted a replica (``down-after-milliseconds`` plus an election: seconds) commands fail with
``ConnectionError`` (``MasterNotFoundError`` once the old primary is marked down), which the web
answers with 503 and the workers and bridges wait out as any Redis outage.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

from broker.config import RedisSettings
from broker.redis_client import BoundedRedis, RedisRefused, apply_settings, hiredis_packed

__all__ = ["SentinelRedis", "check_sentinels", "connect_sentinel", "sentinel_addresses"]

log = logging.getLogger(__name__)

DEFAULT_SENTINEL_PORT = 26379


class SentinelRedis(BoundedRedis):
    """`BoundedRedis` on a Sentinel-managed pool; closing it closes its sentinel connections too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def sentinel_addresses(urls: tuple[str, ...]) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """The (host, port) of each sentinel URL, and the credentials they share (username, password).

    Raises `ValueError` naming the problem (never a password) for a URL that is not
    ``redis://host[:port]``, or sentinels with different credentials.
    """
    if not urls:
        raise ValueError("redis.mode is sentinel but redis.urls lists no sentinel")
    addresses: list[tuple[str, int]] = []
    credentials: set[tuple[str, str]] = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            # no TLS yet: say so rather than connect in the clear to a server expecting TLS
            raise ValueError(
                f"redis.urls: a sentinel URL must be redis://host:port (got scheme {parts.scheme!r})"
            )
        addresses.append((parts.hostname, parts.port or DEFAULT_SENTINEL_PORT))
        credentials.add((unquote(parts.username or ""), unquote(parts.password or "")))
    if len(credentials) > 1:
        raise ValueError("redis.urls: every sentinel URL must carry the same user name and password")
    ((username, password),) = credentials
    auth = {"password": password} if password else {}
    if username:
        auth["username"] = username
    return addresses, auth


def connect_sentinel(settings: RedisSettings) -> BoundedRedis:
    """A client of the primary named `settings.sentinel_service` at the sentinels of `settings.urls`
    (bytes replies); one per process, shared by its tasks. Nothing connects until the first command.

    Raises `RedisRefused` for sentinel URLs it cannot use (see `sentinel_addresses`)."""
    try:
        addresses, sentinel_auth = sentinel_addresses(settings.urls)
    except ValueError as exc:
        raise RedisRefused(str(exc)) from None
    no_resend = Retry(NoBackoff(), 0)
    sentinel = Sentinel(
        addresses,
        sentinel_kwargs={
            **sentinel_auth,
            "socket_connect_timeout": settings.connect_timeout_seconds,
            # A sentinel query runs only when a connection opens; a per-read bound there lets a
            # hung sentinel give way to the next one within the command's own deadline.
            "socket_timeout": settings.connect_timeout_seconds,
            "retry": no_resend,
        },
    )
    server: dict[str, Any] = {"password": settings.password} if settings.password else {}
    client: BoundedRedis = sentinel.master_for(
        settings.sentinel_service,
        redis_class=SentinelRedis,
        connection_class=hiredis_packed(SentinelManagedConnection),
        db=0,
        decode_responses=False,
        max_connections=settings.max_connections,
        socket_connect_timeout=settings.connect_timeout_seconds,
        health_check_interval=settings.health_check_seconds,
        retry=no_resend,
        **server,
    )
    return apply_settings(client, settings)


async def check_sentinels(client: BoundedRedis, settings: RedisSettings) -> None:
    """Raise `RedisRefused` when a sentinel refuses its password, or no sentinel that answers knows
    `settings.sentinel_service`; sentinels that do not answer are left to the usual handling (a
    warning at start, `ConnectionError` per command)."""
    sentinels = client.connection_pool.sentinel_manager.sentinels
    known: set[str] = set()
    answered = 0
    for sentinel, (host, port) in zip(sentinels, sentinel_addresses(settings.urls)[0], strict=True):
        try:
            masters = await sentinel.sentinel_masters()
        except AuthenticationError:
            raise RedisRefused(
                f"the sentinel at {host}:{port} refused this process's credentials: check the password "
                "in its redis.urls entry (the sentinels' own requirepass, not the servers')"
            ) from None
        except (ConnectionError, TimeoutError, ResponseError, OSError) as exc:
            log.warning("sentinel %s:%d not reachable at start (%s)", host, port, type(exc).__name__)
            continue
        answered += 1
        known.update(str(name) for name in masters)
    if answered and settings.sentinel_service not in known:
        names = ", ".join(sorted(known)) or "none"
        raise RedisRefused(
            f"no sentinel of redis.urls watches a primary named {settings.sentinel_service!r} "
            f"(redis.sentinel_service); they watch: {names}"
        )
