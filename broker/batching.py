"""Send the pipelines that tasks of one process queue in the same loop iteration as one.

The workers apply events of different jobs concurrently; the bridge claims several tasks at once;
web handles requests concurrently. Each of those reads and writes of the task store is a small
pipeline (a record read, index lookups, or compare-and-set + announcement + index entries), and
each pipeline is a network write and a round trip. Pipelines queued before the event loop gets
back to I/O are merged here, in order, into one: no waiting is added (the flush runs at the end of
the current iteration), only round trips are saved. `bench/batching_bench.py` measures what that
is worth against one pipeline per caller on the same client.

Each caller gets the replies of its own commands and only its own failures: a command that fails
fails the caller that queued it; a caller whose commands cannot be sent at all (its `fill` raised,
or an argument redis-py cannot encode) is found by sending the callers of that batch one by one,
which is safe because nothing of the merged pipeline went out. A connection that fails after the
pipeline was written fails every caller of it, since none can tell what ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import DataError

from broker.lua import Fill, Script, execute

__all__ = ["PipelineBatcher", "Unbatched"]

#: a caller's fill, its future, and whether its writes must be durable before it gets its replies
_Pending = tuple[Fill, "asyncio.Future[list[Any]]", bool]


class _NotSent(Exception):
    """The merged pipeline could not be built or encoded: nothing of it reached Redis."""


class PipelineBatcher:
    """Merges concurrent pipelines of one client.

    :param redis: the client.
    :param scripts: the scripts the merged pipelines may hold (see `broker.lua.execute`).
    """

    def __init__(self, redis: aioredis.Redis, scripts: Sequence[Script]) -> None:
        self.redis = redis
        self.scripts = scripts
        self._pending: list[_Pending] = []
        #: flushes in flight (the loop holds tasks only weakly)
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, fill: Fill, *, durable: bool = False) -> list[Any]:
        """The replies to what `fill` queues, sent with whatever else is queued this iteration.

        With `durable`, the merged pipeline ends with a WAITAOF (`broker.lua.execute`): one wait
        covers every durable caller of the batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((fill, future, durable))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                await self._send_alone(batch[0])
            else:
                await self._send_merged(batch)
        except asyncio.CancelledError:
            for _, future, _ in batch:
                future.cancel()
            raise

    async def _send_merged(self, batch: list[_Pending]) -> None:
        spans: list[tuple[int, int]] = []

        def fill_all(pipe: Pipeline) -> None:
            for fill, _, _ in batch:
                start = len(pipe)
                try:
                    fill(pipe)
                except Exception as exc:
                    raise _NotSent from exc
                spans.append((start, len(pipe)))

        try:
            durable = any(wants for _, _, wants in batch)
            replies = await execute(self.redis, fill_all, self.scripts, raise_on_error=False, durable=durable)
        except (_NotSent, DataError):
            # Find the caller at fault: each is sent alone, as if it had never been merged.
            await asyncio.gather(*(self._send_alone(pending) for pending in batch))
            return
        except Exception as exc:  # the connection failed: every caller gets the error
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (start, end), (_, future, _) in zip(spans, batch, strict=True):
            if not future.done():
                _settle(future, replies[start:end])

    async def _send_alone(self, pending: _Pending) -> None:
        fill, future, durable = pending
        try:
            replies = await execute(self.redis, fill, self.scripts, raise_on_error=False, durable=durable)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            _settle(future, replies)


def _settle(future: asyncio.Future[list[Any]], replies: list[Any]) -> None:
    """A failed command fails only the caller that queued it, as if it had been sent alone."""
    error = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(replies)


class Unbatched:
    """`PipelineBatcher`'s interface without the merging: each caller's pipeline is sent alone.

    The yardstick `bench/batching_bench.py` weighs the batcher against (`TaskStore(batch=False)`).
    A failed command fails its caller, as with the batcher.
    """

    def __init__(self, redis: aioredis.Redis, scripts: Sequence[Script]) -> None:
        self.redis = redis
        self.scripts = scripts

    async def execute(self, fill: Fill, *, durable: bool = False) -> list[Any]:
        return await execute(self.redis, fill, self.scripts, durable=durable)
