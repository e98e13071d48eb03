"""Concurrent pipelines of one client share a round trip; each caller still gets its own replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio.client import Pipeline
from redis.exceptions import DataError, ResponseError

from broker.batching import PipelineBatcher
from broker.lua import Script
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis

_ECHO = Script("return ARGV[1]")


async def test_concurrent_pipelines_are_sent_together_with_their_own_replies(
    redis_server: EmbeddedRedis,
) -> None:
    client = connect(redis_server.url)
    batcher = PipelineBatcher(client, [_ECHO])
    pipelines = 0
    make_pipeline = client.pipeline

    def counted(*args: Any, **kwargs: Any) -> Pipeline:  # each pipeline is one round trip
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(*args, **kwargs)

    client.pipeline = counted
    try:

        def writer(n: int) -> Callable[[Pipeline], None]:
            def fill(pipe: Pipeline) -> None:
                pipe.set(f"t:batch:{n}", n)
                _ECHO.queue(pipe, [], [f"echo {n}"])
                pipe.incr("t:batch:count")

            return fill

        replies = await asyncio.gather(*(batcher.execute(writer(n)) for n in range(20)))
        assert [r[:2] for r in replies] == [[True, f"echo {n}".encode()] for n in range(20)]
        assert sorted(r[2] for r in replies) == list(range(1, 21))  # one INCR each, none repeated
        assert pipelines == 1
    finally:
        await client.delete("t:batch:count", *[f"t:batch:{n}" for n in range(20)])
        await client.aclose()


async def test_a_failed_command_fails_only_the_caller_that_sent_it(redis_server: EmbeddedRedis) -> None:
    client = connect(redis_server.url)
    batcher = PipelineBatcher(client, [])
    try:
        await client.set("t:batch:string", "x")
        bad = batcher.execute(lambda pipe: pipe.hset("t:batch:string", "f", "v"))  # WRONGTYPE
        good = batcher.execute(lambda pipe: pipe.set("t:batch:ok", "1"))
        results = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(results[0], ResponseError) and "WRONGTYPE" in str(results[0])
        assert results[1] == [True]
        assert await client.get("t:batch:ok") == b"1"
        with pytest.raises(ResponseError):
            await batcher.execute(lambda pipe: pipe.hset("t:batch:string", "f", "v"))
    finally:
        await client.delete("t:batch:string", "t:batch:ok")
        await client.aclose()


async def test_a_caller_whose_commands_cannot_be_sent_fails_alone(redis_server: EmbeddedRedis) -> None:
    client = connect(redis_server.url)
    batcher = PipelineBatcher(client, [])

    def broken_fill(pipe: Pipeline) -> None:
        pipe.set("t:batch:half", "1")
        raise ValueError("the caller's own bug")

    try:
        results = await asyncio.gather(
            batcher.execute(lambda pipe: pipe.set("t:batch:first", "1")),
            batcher.execute(lambda pipe: pipe.set("t:batch:none", None)),  # redis-py cannot encode it
            batcher.execute(broken_fill),
            batcher.execute(lambda pipe: pipe.incr("t:batch:counted")),
            return_exceptions=True,
        )
        assert results[0] == [True]
        assert isinstance(results[1], DataError)
        assert isinstance(results[2], ValueError)
        assert results[3] == [1]
        assert await client.get("t:batch:counted") == b"1"  # sent once, not once per attempt
        assert await client.get("t:batch:half") is None  # a fill that raised sends nothing
    finally:
        await client.delete("t:batch:first", "t:batch:counted", "t:batch:half")
        await client.aclose()
