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
pipeline was written leaves no caller able to tell what ran: the callers that said their pipeline
may be resent (``resend=True``: idempotent, see `broker.lua`) get it sent once more, merged again,
and the others get the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import AuthenticationError, DataError
from redis.exceptions import ConnectionError as RedisConnectionError

from broker.lua import Fill, Script, execute

__all__ = ["PipelineBatcher", "Unbatched"]

#: a caller's fill, its future, whether its pipeline may be resent, and whether its writes must be
#: durable before it gets its replies
_Pending = tuple[Fill, "asyncio.Future[list[Any]]", bool, bool]


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

    async def execute(self, fill: Fill, *, resend: bool = False, durable: bool = False) -> list[Any]:
        """The replies to what `fill` queues, sent with whatever else is queued this iteration.

        ``resend=True`` only for an idempotent pipeline: it is sent once more when the connection
        fails (`broker.lua.execute`), and `fill` may then be called twice. With `durable`, the
        merged pipeline ends with a WAITAOF: one wait covers every durable caller of the batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((fill, future, resend, durable))
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
            for _, future, *_ in batch:
                future.cancel()
            raise

    async def _send_merged(self, batch: list[_Pending], *, again: bool = True) -> None:
        """Send `batch` as one pipeline; with `again`, resend what may be resent if the connection fails."""
        spans: list[tuple[int, int]] = []
        # (the idempotent callers' second merged send resends too when the client resends for a
        # while, as a cluster client does through a failover: see broker.lua)
        resends_later = getattr(self.redis, "resend_window", 0.0) > 0
        resend_all = (again or resends_later) and all(p[2] for p in batch)
        durable = any(p[3] for p in batch)

        def fill_all(pipe: Pipeline) -> None:
            spans.clear()  # a resend fills again
            for fill, *_ in batch:
                start = len(pipe)
                try:
                    fill(pipe)
                except Exception as exc:
                    raise _NotSent from exc
                spans.append((start, len(pipe)))

        try:
            replies = await execute(
                self.redis, fill_all, self.scripts, raise_on_error=False, resend=resend_all, durable=durable
            )
        except (_NotSent, DataError):
            # Find the caller at fault: each is sent alone, as if it had never been merged.
            await asyncio.gather(*(self._send_alone(pending) for pending in batch))
            return
        except Exception as exc:  # the connection failed: nobody can tell what ran
            lost = isinstance(exc, RedisConnectionError) and not isinstance(exc, AuthenticationError)
            # (with resend_all, `execute` has sent it once more already)
            retry = [p for p in batch if p[2]] if again and lost and not resend_all else []
            for _, future, resend, _ in batch:
                if not future.done() and not (resend and retry):
                    future.set_exception(exc)
            if retry:  # the idempotent callers' pipelines, once more (see broker.lua)
                await self._send_merged(retry, again=False)
            return
        for (start, end), (_, future, *_) in zip(spans, batch, strict=True):
            if not future.done():
                _settle(future, replies[start:end])

    async def _send_alone(self, pending: _Pending) -> None:
        fill, future, resend, durable = pending
        try:
            replies = await execute(
                self.redis, fill, self.scripts, raise_on_error=False, resend=resend, durable=durable
            )
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

    async def execute(self, fill: Fill, *, resend: bool = False, durable: bool = False) -> list[Any]:
        return await execute(self.redis, fill, self.scripts, resend=resend, durable=durable)
