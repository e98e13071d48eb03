"""The yardstick for api_bench: bare litestar + redis-py doing the same Redis work as mjbroker.

Submit: decode the body into a Struct, read the account status (1), write the record (2), admit with
a Lua script (3). Fetch: one HGET, bytes returned as they are.
"""

from __future__ import annotations

import os
import random
import time

import msgspec
import redis.asyncio as aioredis
from litestar import Litestar, Request, Response, get, post

_ADMIT = """
local running = redis.call('ZCARD', KEYS[2])
local waiting = redis.call('ZCARD', KEYS[1])
if running < tonumber(ARGV[2]) and waiting == 0 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return {1, 0}
end
if waiting < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return {22, waiting + 1}
end
return {23, 0}
"""


class Body(msgspec.Struct):
    prompt: str
    state: str | None = None


class Record(msgspec.Struct):
    id: str
    prompt: str
    status: str
    submitTime: int


class Reply(msgspec.Struct):
    code: int
    description: str
    result: str | None
    properties: dict[str, object]


_enc = msgspec.json.Encoder()


def create_app() -> Litestar:
    redis = aioredis.Redis.from_url(os.environ["BARE_REDIS_URL"])
    admit = redis.register_script(_ADMIT)

    @post("/mj/submit/imagine", status_code=200)
    async def imagine(data: Body) -> Reply:
        now = int(time.time() * 1000)
        task_id = f"{now}{random.randrange(1000):03d}"
        await redis.hget("bare:status:a1", "state")
        await redis.hset(
            f"bare:task:{task_id}",
            mapping={"v": 1, "d": _enc.encode(Record(task_id, data.prompt, "NOT_START", now))},
        )
        code, pos = await admit(keys=["bare:waiting", "bare:running"], args=[task_id, 3, now, 10**9])
        return Reply(int(code), "Submit success", task_id, {"numberOfQueues": int(pos)})

    @get("/mj/task/{task_id:str}/fetch")
    async def fetch(request: Request, task_id: str) -> Response[bytes]:  # type: ignore[type-arg]
        raw = await redis.hget(f"bare:task:{task_id}", "d")
        return Response(raw or b"", media_type="application/json")

    return Litestar([imagine, fetch], on_shutdown=[redis.aclose], logging_config=None)
