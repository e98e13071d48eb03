"""The yardstick of api_bench: bare litestar + msgspec on granian, doing the broker's Redis work.

Same client: the product tree's own (`broker.redis_client.connect`; before the renovation the same
role was `broker.redis_server.connect`), so a client's cost is not counted against the broker alone.
Same commands in the same round trips as the web process (`bench/api_bench.py` counts them for both
in every run):

- submit: the account status (one HGET, trusted for 1 s, as the web does); the record: the
  compare-and-set script (EVALSHA) and an XADD on a changes stream, in one pipeline; then the
  admission script (EVALSHA, leaving its receipt for a resend as the broker's does). The record
  is a task JSON of the same fields midjourney-proxy clients read, so as many bytes are stored and
  fetched as by the broker; the Lua scripts are the broker's, copied, loaded once at start-up;
- fetch: one HGET of the record, its bytes returned as they are.

What it leaves out is what the yardstick is for: the broker's account choice, validation, auth,
its task model and its store's batching of concurrent pipelines.

Run as a script (``python bench/bare_app.py --port N``) with the product tree first on
``PYTHONPATH``: it is not imported through the ``bench`` package, whose name another tree's
checkout also holds.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import msgspec
from granian import Granian
from granian.constants import Interfaces
from litestar import Litestar, Response, get, post

import broker

# Look in the tree rather than try the import: the .venv's editable install of the current tree
# would answer for a module this tree lacks.
if (Path(broker.__path__[0]) / "redis_client.py").exists():
    from broker.redis_client import connect
else:  # a tree from before the renovation: the client was made in broker.redis_server
    from broker.redis_server import connect  # type: ignore[attr-defined,no-redef]

# broker.store's compare-and-set: KEYS[1] record; ARGV: expected revision, new revision, json, ttl ms.
_CAS = """
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '-1') ~= ARGV[1] then
  if cur == ARGV[2] and redis.call('HGET', KEYS[1], 'd') == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# broker.queues' admission: KEYS waiting, running, ready, seq, receipt; ARGV task id, core, queue,
# now ms, call id, receipt ms.
_ADMIT = """
local receipt = redis.call('GET', KEYS[5])
if receipt then
  local call, code, position, load = string.match(receipt, '^(%S+) (%d+) (%d+) (%d+)$')
  if call == ARGV[5] then return {tonumber(code), tonumber(position), tonumber(load)} end
end
local running = redis.call('ZCARD', KEYS[2])
local waiting = redis.call('ZCARD', KEYS[1])
local outcome
if running < tonumber(ARGV[2]) and waiting == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[1])
  outcome = {1, 0, running + 1}
elseif waiting < tonumber(ARGV[3]) then
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[1], seq, ARGV[1])
  outcome = {22, waiting + 1, running + waiting + 1}
else
  outcome = {23, 0, running + waiting}
end
redis.call('SET', KEYS[5], ARGV[5] .. ' ' .. table.concat(outcome, ' '), 'PX', ARGV[6])
return outcome
"""

CORE_SIZE = 3
QUEUE_SIZE = 1_000_000
RETENTION_MS = 30 * 86_400_000
CHANGES_MAXLEN = 200_000
STATUS_TTL = 1.0
RECEIPT_MS = 60_000
_QUEUE_KEYS = ["bare:{a1}:waiting", "bare:{a1}:running", "bare:{a1}:ready", "bare:{a1}:seq"]


class Body(msgspec.Struct):
    prompt: str
    state: str | None = None
    notifyHook: str | None = None


class Properties(msgspec.Struct):
    botType: str = "MID_JOURNEY"


class Record(msgspec.Struct, kw_only=True):
    """midjourney-proxy's task JSON, every field the broker stores for a new imagine."""

    id: str
    action: str = "IMAGINE"
    status: str = "NOT_START"
    prompt: str
    promptEn: str
    description: str
    state: str | None
    submitTime: int
    startTime: int | None = None
    finishTime: int | None = None
    imageUrl: str | None = None
    progress: str | None = None
    failReason: str | None = None
    properties: Properties = msgspec.field(default_factory=Properties)
    buttons: list[str] = msgspec.field(default_factory=list)
    botType: str = "MID_JOURNEY"
    customId: str | None = None
    seed: str | None = None
    parentId: str | None = None
    mode: str | None = None
    instanceId: str | None = None
    apiKeyName: str | None = "bench"
    revision: int = 1


class Reply(msgspec.Struct):
    code: int
    description: str
    result: str | None
    properties: dict[str, object]


_encode = msgspec.json.Encoder().encode


def create_app() -> Litestar:
    redis = connect(os.environ["BARE_REDIS_URL"])
    sha: dict[str, str] = {}
    status: list[float | bytes | None] = [0.0, None]  # trusted until, state
    calls = [0]  # admission call ids (the broker's are a process prefix and a count)

    async def startup() -> None:
        sha["cas"] = await redis.script_load(_CAS)
        sha["admit"] = await redis.script_load(_ADMIT)

    async def shutdown() -> None:
        await redis.aclose()

    @post("/mj/submit/imagine", status_code=200)
    async def imagine(data: Body) -> Reply:
        now_s = time.time()
        if now_s >= status[0]:  # type: ignore[operator]
            status[:] = [now_s + STATUS_TTL, await redis.hget("bare:{a1}:status", "state")]
        now = int(now_s * 1000)
        while True:
            task_id = f"{now}{random.randrange(1000):03d}"
            record = Record(
                id=task_id, prompt=data.prompt, promptEn=data.prompt, description=f"/imagine {data.prompt}",
                state=data.state, submitTime=now,
            )  # fmt: skip
            async with redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(
                    sha["cas"], 1, f"bare:task:{{{task_id}}}", "-1", 1, _encode(record), RETENTION_MS
                )
                pipe.xadd("bare:changes", {"id": task_id, "rev": 1}, maxlen=CHANGES_MAXLEN, approximate=True)
                written, _ = await pipe.execute()
            if written:
                break
        calls[0] += 1
        receipt = f"bare:{{a1}}:admitted:{task_id}"
        args = [task_id, CORE_SIZE, QUEUE_SIZE, now, f"b.{calls[0]}", RECEIPT_MS]
        code, position, _load = await redis.evalsha(sha["admit"], 5, *_QUEUE_KEYS, receipt, *args)
        return Reply(int(code), "Submit success", task_id, {"numberOfQueues": int(position)})

    @get("/mj/task/{task_id:str}/fetch")
    async def fetch(task_id: str) -> Response[bytes]:
        raw = await redis.hget(f"bare:task:{{{task_id}}}", "d")
        return Response(raw or b"", media_type="application/json")

    return Litestar(
        [imagine, fetch], on_startup=[startup], on_shutdown=[shutdown], logging_config=None, debug=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    module = sys.modules[connect.__module__]
    print(f"bare app: client {connect.__module__}.connect from {module.__file__}", flush=True)
    Granian(
        "bare_app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        port=args.port,
        workers=1,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
