"""A cap on concurrent hook requests per receiver, with a short queue in front of it.

A busy receiver (its cap reached) usually frees a slot within milliseconds, so a delivery first
waits for one, handed over in arrival order. Only `queue` deliveries may wait per receiver, and
only for `wait_seconds`: a receiver that hangs holds at most `limit + queue` of the worker's
delivery slots, and the deliveries that could not get a slot go back to the outbox for later.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ReceiverSlots"]


class ReceiverSlots:
    """Per-receiver slots (a receiver is a ``host:port``).

    :param limit: requests in flight per receiver.
    :param queue: deliveries that may wait for a slot of one receiver.
    :param wait_seconds: how long a delivery waits for a slot before giving up on it.
    """

    def __init__(self, limit: int, *, queue: int, wait_seconds: float = 1.0) -> None:
        self.limit = max(limit, 1)
        self.queue = max(queue, 0)
        self.wait_seconds = wait_seconds
        self._busy: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def in_flight(self, receiver: str) -> int:
        return self._busy.get(receiver, 0)

    async def acquire(self, receiver: str) -> bool:
        """Take a slot of `receiver`; False when none came free in time (or too many wait)."""
        busy = self._busy.get(receiver, 0)
        if busy < self.limit:
            self._busy[receiver] = busy + 1
            return True
        queue = self._waiting.setdefault(receiver, deque())
        if len(queue) >= self.queue:
            return False
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(handed)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await asyncio.shield(handed)
            return True
        except TimeoutError:
            return handed.done()  # handed over just as the wait ran out: the slot is ours
        except asyncio.CancelledError:
            if handed.done():
                self.release(receiver)  # pass on the slot that came too late
            raise
        finally:
            if not handed.done():
                handed.cancel()
                queue.remove(handed)
            if not queue:
                self._waiting.pop(receiver, None)

    def release(self, receiver: str) -> None:
        """Give a slot back: to the longest waiter if any, else to the pool."""
        queue = self._waiting.get(receiver)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; the count stays
                return
        busy = self._busy.get(receiver, 0) - 1
        if busy > 0:
            self._busy[receiver] = busy
        else:
            self._busy.pop(receiver, None)
