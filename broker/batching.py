"""Send the pipelines that tasks of one process queue in the same loop iteration as one.

The workers apply events of different jobs concurrently; the bridge claims several tasks at once;
web handles requests concurrently. Each of those reads and writes of the task store is a small
pipeline (a record read, index lookups, or compare-and-set + announcement + index entries), and
each pipeline is a network write and a round trip. Pipelines queued before the event loop gets
back to I/O are merged here, in order, into one: no waiting is added (the flush runs at the end of
the current iteration), only round trips are saved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from broker.lua import Script, execute

__all__ = ["PipelineBatcher"]

Fill = Callable[[Pipeline], None]


class PipelineBatcher:
    """Merges concurrent pipelines of one client.

    :param redis: the client.
    :param scripts: the scripts the merged pipelines may hold (see `broker.lua.execute`); every
        command in them must be safe to send twice.
    """

    def __init__(self, redis: aioredis.Redis, scripts: Sequence[Script]) -> None:
        self.redis = redis
        self.scripts = scripts
        self._pending: list[tuple[Fill, asyncio.Future[list[Any]]]] = []
        #: flushes in flight (the loop holds tasks only weakly)
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, fill: Fill) -> list[Any]:
        """The replies to what `fill` queues, sent with whatever else is queued this iteration."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((fill, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        # errors were handed to the callers; nothing is left to report here
        if not task.cancelled():
            task.exception()

    async def _send(self, batch: list[tuple[Fill, asyncio.Future[list[Any]]]]) -> None:
        spans: list[tuple[int, int]] = []

        def fill_all(pipe: Pipeline) -> None:
            spans.clear()  # execute() may fill again after a NOSCRIPT
            for fill, _ in batch:
                start = len(pipe)
                fill(pipe)
                spans.append((start, len(pipe)))

        try:
            replies = await execute(self.redis, fill_all, self.scripts, raise_on_error=False)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every caller gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (start, end), (_, future) in zip(spans, batch, strict=True):
            if future.done():
                continue
            mine = replies[start:end]
            # a failed command fails only the caller that queued it, as if it had been sent alone
            error = next((reply for reply in mine if isinstance(reply, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)
