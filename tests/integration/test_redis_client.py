"""The process-wide Redis client (`broker.redis_client.connect`) and scripts (`broker.lua`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.config import RedisSettings
from broker.lua import Script, execute
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis, free_port


async def test_every_argument_type_round_trips(redis_server: EmbeddedRedis) -> None:
    client = connect(redis_server.url)
    try:
        big = b"\r\n" * 70_000  # over redis-py's chunking cutoff, with protocol bytes inside
        await client.hset("t:h", mapping={"s": "é ü", "b": b"\x00\r\n", "i": 7, "f": 1.5, "big": big})
        got = await client.hgetall("t:h")
        assert got == {b"s": "é ü".encode(), b"b": b"\x00\r\n", b"i": b"7", b"f": b"1.5", b"big": big}
        assert await client.config_get("appendonly") == {"appendonly": "yes"}  # a two-word command
        assert await client.blpop(["t:empty"], timeout=0.01) is None  # a float timeout
        with pytest.raises(DataError):
            await client.set("t:none", None)  # type: ignore[arg-type]
        with pytest.raises(DataError):  # as redis-py says: a bool is not a Redis value
            await client.set("t:bool", True)
        await client.zadd("t:z", {"m": 1e20})
        assert await client.zscore("t:z", "m") == 1e20
    finally:
        await client.delete("t:h", "t:z")
        await client.aclose()


async def test_a_restarted_server_is_reconnected_to_on_the_first_command(tmp_path: Path) -> None:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path)
    server.start()
    client: aioredis.Redis = connect(server.url)
    try:
        await client.set("t:k", "before")
        # in threads, so that this loop sees the old connection close, as a live process would
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        # the pooled connection is found closed at checkout and replaced before the command is sent
        assert await client.get("t:k") == b"before"  # persisted by the AOF
    finally:
        await client.aclose()
        server.stop()


async def test_a_server_started_from_a_long_aof_answers_as_soon_as_start_returns(tmp_path: Path) -> None:
    # A server replaying its AOF accepts connections but answers every command with LOADING
    # (BusyLoadingError): start() used to return then, and the chaos test's first read after a
    # restart of Redis failed on it.
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path)
    server.start()
    client: aioredis.Redis = connect(server.url)
    try:
        # enough writes that replaying them takes far longer than a connect
        fill = "for i = 1, 300000 do redis.call('SET', 'k' .. i, i) end return 1"
        await client.eval(fill, 0)
        await client.aclose()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        client = connect(server.url)
        assert await client.dbsize() == 300_000
    finally:
        await client.aclose()
        server.stop()


class _ReplyDropper:
    """A TCP proxy in front of Redis that, when armed, closes the client's connection as soon as the
    server's next reply arrives, without passing it on: a command that ran but whose reply was lost."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._serving: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._serving:
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._serving.add(me)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            while data := await src.read(65536):
                if replies and self.armed:
                    self.armed = False
                    writer.transport.abort()
                    return
                dst.write(data)
                await dst.drain()

        with contextlib.suppress(OSError, ConnectionError):
            await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
        up_writer.close()
        writer.close()


async def test_a_command_whose_reply_is_lost_is_not_sent_again(redis_server: EmbeddedRedis) -> None:
    proxy = _ReplyDropper(redis_server.port)
    await proxy.start()
    client = connect(f"redis://:{redis_server.password}@127.0.0.1:{proxy.port}/0")
    direct = connect(redis_server.url)
    try:
        await direct.delete("t:incr")
        assert await client.incr("t:incr") == 1
        proxy.armed = True
        with pytest.raises(RedisConnectionError):
            await client.incr("t:incr")
        assert await direct.get("t:incr") == b"2"  # it ran once; the client did not resend it
        assert await client.incr("t:incr") == 3  # and the client recovers with a new connection
    finally:
        await direct.delete("t:incr")
        await direct.aclose()
        await client.aclose()
        await proxy.close()


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_stops_answering_fails_commands_and_pipelines_within_the_timeout(
    redis_server: EmbeddedRedis,
) -> None:
    async with _silent_server() as port:
        client = connect(f"redis://127.0.0.1:{port}/0", RedisSettings(command_timeout_seconds=0.3))
        try:
            for attempt in (client.get("t:k"), _pipelined(client), execute(client, _echo_fill, [_ECHO])):
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError):
                    await attempt
                assert time.monotonic() - started < 3.0
        finally:
            await client.aclose()
    # a slow reply on a live server: the connection that timed out is dropped, and the next
    # command gets its own reply, not the late one
    client = connect(redis_server.url, RedisSettings(command_timeout_seconds=0.2))
    try:
        await client.set("t:after", "mine")
        with pytest.raises(RedisTimeoutError):
            await client.blpop(["t:never"], timeout=0.5)  # the reply (nil) comes after the deadline
        assert await client.get("t:after") == b"mine"
    finally:
        await client.delete("t:after")
        await client.aclose()


_ECHO = Script("return ARGV[1]")


def _echo_fill(pipe: Any) -> None:
    _ECHO.queue(pipe, [], ["x"])


async def _pipelined(client: aioredis.Redis) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        pipe.get("t:k")
        pipe.get("t:j")
        return await pipe.execute()  # type: ignore[no-any-return]


async def test_pipelined_scripts_load_once_and_only_the_forgotten_script_is_sent_again(
    redis_server: EmbeddedRedis,
) -> None:
    echo = Script("return ARGV[1]")
    client = connect(redis_server.url)
    try:
        await client.delete("t:sent")
        await client.script_flush()

        def fill(pipe: Any) -> None:
            pipe.incr("t:sent")
            echo.queue(pipe, [], ["hi"])

        assert await execute(client, fill, [echo]) == [1, b"hi"]  # loaded first: sent once
        await client.script_flush()  # as a restarted server would have
        # NOSCRIPT: the script did not run and is sent again; the INCR beside it ran once only
        assert await execute(client, fill, [echo]) == [2, b"hi"]
        assert await client.get("t:sent") == b"2"
    finally:
        await client.delete("t:sent")
        await client.aclose()
