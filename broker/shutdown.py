"""Ending a process's own background tasks, even those that lost their cancellation on the way.

Two traps make a cancelled task carry on as if nothing happened:

- ``task.cancel()`` then ``with suppress(CancelledError): await task`` also swallows the
  CancelledError meant for the *caller* when the caller is cancelled while it waits. A bridge's
  lease-renewal loop, cancelled while it stopped the session of an account whose lease it had lost,
  went on renewing, and the bridge waited for it forever. `cancel_and_wait` waits with
  `asyncio.wait`, which never raises the tasks' outcomes: only the caller's own cancellation comes
  out of it.
- Python 3.11's `asyncio.wait_for` returns its operation's result instead of raising when the
  cancellation lands in the loop iteration in which the operation completes (fixed in 3.12,
  CPython gh-86296). redis-py 5 sends every command through it when a socket timeout is set, as
  ours is: a stream consumer cancelled as it wrote its next read went on reading, and a worker's
  stop waited for it forever. `cancel_and_wait` cancels a task again while it has not ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["RECANCEL_SECONDS", "cancel_and_wait"]

log = logging.getLogger(__name__)

#: how long a cancelled task has to end before it is cancelled again
RECANCEL_SECONDS = 2.0


async def cancel_and_wait(
    *tasks: asyncio.Future[Any] | None, recancel_after: float = RECANCEL_SECONDS
) -> None:
    """Cancel `tasks` (None entries are skipped) and wait until every one has ended.

    A task still running `recancel_after` seconds after its cancellation is cancelled again (and
    again). A task that ended with an error other than its cancellation is logged, not raised. If
    the caller is cancelled while it waits, it gets its CancelledError; the tasks stay cancelled.
    """
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    ended: set[asyncio.Future[Any]] = set()
    while pending:
        done, pending = await asyncio.wait(pending, timeout=recancel_after)
        ended |= done
        for task in pending:
            log.warning("%r still runs %.0f s after its cancellation: cancelled again", task, recancel_after)
            task.cancel()
    for task in ended:
        if not task.cancelled() and task.exception() is not None:
            log.error("%r ended with an error while it was stopped", task, exc_info=task.exception())
