"""The process-wide Redis client (`broker.redis_server.connect`): hiredis packing, lean pool."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from broker.lua import Script, execute
from broker.redis_server import EmbeddedRedis, connect, free_port, send_commands, send_pipeline


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
    finally:
        await client.delete("t:h")
        await client.aclose()


async def test_a_restarted_server_is_reconnected_to(tmp_path: Path) -> None:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path)  # its own: a restart forgets scripts
    server.start()
    client: aioredis.Redis = connect(server.url)
    try:
        await client.set("t:k", "before")
        server.stop()
        server.start()
        # pipelines (safe to send twice) are retried once on a fresh connection
        assert await send_commands(client, [("GET", "t:k")]) == [b"before"]
        for _ in range(3):  # the first command may still meet the old socket
            try:
                assert await client.get("t:k") == b"before"  # persisted by the AOF
                break
            except RedisConnectionError:
                continue
        else:
            pytest.fail("the client never reconnected")
    finally:
        await client.aclose()
        server.stop()


async def test_pipelined_scripts_load_once_and_survive_a_flushed_script_cache(
    redis_server: EmbeddedRedis,
) -> None:
    echo = Script("return ARGV[1]")
    client = connect(redis_server.url)
    try:
        await client.script_flush()

        def fill(pipe: Any) -> None:
            echo.queue(pipe, [], ["hi"])
            pipe.incr("t:sent")

        assert await execute(client, fill, [echo]) == [b"hi", 1]  # loaded first: sent once
        await client.script_flush()  # as a restarted server would have
        assert await execute(client, fill, [echo]) == [b"hi", 3]  # NOSCRIPT: loaded, sent again
    finally:
        await client.delete("t:sent")
        await client.aclose()


async def test_lean_pipelines_give_redis_py_replies_errors_in_place(redis_server: EmbeddedRedis) -> None:
    client = connect(redis_server.url)
    try:

        def fill(pipe: Any) -> None:
            pipe.set("t:s", "v")  # redis-py turns OK into True
            pipe.hget("t:s", "f")  # WRONGTYPE
            pipe.zadd("t:z", {"a": 1.5})
            pipe.zrange("t:z", 0, -1, withscores=True)  # a callback with options
            pipe.xadd("t:x", {"f": "1"})
            pipe.xrange("t:x")

        async with client.pipeline(transaction=False) as lean:
            fill(lean)
            got = await send_pipeline(lean, raise_on_error=False)
        await client.delete("t:s", "t:z", "t:x")
        async with client.pipeline(transaction=False) as plain:
            fill(plain)
            want = await plain.execute(raise_on_error=False)
        assert got[0] is True and isinstance(got[1], ResponseError)
        assert got[2:4] == want[2:4] == [1, [(b"a", 1.5)]]
        assert [fields for _, fields in got[5]] == [{b"f": b"1"}]
        async with client.pipeline(transaction=False) as failing:
            failing.hget("t:s", "f")
            with pytest.raises(ResponseError):
                await send_pipeline(failing)
        # raw commands, no pipeline object: the same replies
        assert await send_commands(client, [("SET", "t:c", 1), ("GET", "t:c")]) == [True, b"1"]
        with pytest.raises(ResponseError):
            await send_commands(client, [("HGET", "t:s", "f")])
    finally:
        await client.delete("t:s", "t:z", "t:x", "t:c")
        await client.aclose()


async def test_a_lean_pipeline_nobody_holds_survives_garbage_collection(redis_server: EmbeddedRedis) -> None:
    """asyncio's protocol holds its stream reader weakly: a waiting sender must stay reachable."""
    client = connect(redis_server.url)
    done = asyncio.Event()

    async def blocked_read() -> None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.blpop(["t:later"], timeout=5)
            await send_pipeline(pipe)
        done.set()

    try:
        asyncio.get_running_loop().create_task(blocked_read())  # as a fire-and-forget flush does
        await asyncio.sleep(0.1)
        gc.collect()
        await client.rpush("t:later", "x")
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        await client.delete("t:later")
        await client.aclose()
