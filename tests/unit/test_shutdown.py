"""`broker.shutdown.cancel_and_wait`: tasks end, their errors are logged, the caller's cancel stays."""

from __future__ import annotations

import asyncio

import pytest

from broker.shutdown import cancel_and_wait


async def _slow_to_end(ended: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)
    finally:
        await ended.wait()  # it takes a while to clean up after its cancellation


async def test_a_caller_cancelled_while_it_waits_is_cancelled() -> None:
    ended = asyncio.Event()
    child = asyncio.create_task(_slow_to_end(ended))
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(child))
    await asyncio.sleep(0)  # the caller waits for the child now
    caller.cancel()
    # `with suppress(CancelledError): await child` used to end the caller normally here.
    with pytest.raises(asyncio.CancelledError):
        await caller
    ended.set()
    await asyncio.wait({child})
    assert child.cancelled()


async def test_every_task_ends_and_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    tasks = [asyncio.create_task(asyncio.sleep(3600)), asyncio.create_task(fails_on_cancel())]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks, None)
    assert tasks[0].cancelled() and isinstance(tasks[1].exception(), RuntimeError)
    assert "cleanup failed" in caplog.text


async def _swallows_a_cancellation_as_wait_for_does(operation: asyncio.Future[None]) -> None:
    # Python 3.11's wait_for: cancelled in the iteration in which `operation` completes, it returns
    # the result instead of raising (redis-py sends each command through it). The loop goes on.
    await asyncio.wait_for(operation, 60)
    await asyncio.sleep(3600)


async def test_a_task_that_lost_its_cancellation_in_wait_for_is_cancelled_again() -> None:
    operation: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_swallows_a_cancellation_as_wait_for_does(operation))
    await asyncio.sleep(0)  # it waits inside wait_for
    operation.set_result(None)  # the operation completes...
    async with asyncio.timeout(5):  # ...as the cancellation arrives: the first one is lost
        await cancel_and_wait(task, recancel_after=0.1)
    assert task.cancelled()
