"""Per-receiver hook slots: a cap, a bounded queue in front of it, hand-over in arrival order."""

from __future__ import annotations

import asyncio

from workers.receiver_slots import ReceiverSlots


async def test_a_freed_slot_goes_to_the_longest_waiter() -> None:
    slots = ReceiverSlots(2, queue=2, wait_seconds=5)
    assert await slots.acquire("a:80") and await slots.acquire("a:80")
    order: list[str] = []

    async def wait(name: str) -> None:
        assert await slots.acquire("a:80")
        order.append(name)

    first = asyncio.create_task(wait("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    assert order == []
    slots.release("a:80")
    await first
    assert order == ["first"] and slots.in_flight("a:80") == 2  # handed over, not freed
    slots.release("a:80")
    await second
    assert order == ["first", "second"]


async def test_other_receivers_are_not_held_up() -> None:
    slots = ReceiverSlots(1, queue=1, wait_seconds=5)
    assert await slots.acquire("slow:80")
    async with asyncio.timeout(0.5):
        assert await slots.acquire("fast:80")


async def test_waiting_is_bounded_in_time_and_in_number() -> None:
    slots = ReceiverSlots(1, queue=1, wait_seconds=0.05)
    assert await slots.acquire("hung:80")
    waiter = asyncio.create_task(slots.acquire("hung:80"))
    await asyncio.sleep(0)
    assert await slots.acquire("hung:80") is False  # one already waits: no second waiter
    assert await waiter is False  # nobody freed a slot within the wait
    slots.release("hung:80")
    assert slots.in_flight("hung:80") == 0
    assert await slots.acquire("hung:80")


async def test_a_cancelled_waiter_passes_on_a_slot_it_got() -> None:
    slots = ReceiverSlots(1, queue=1, wait_seconds=5)
    assert await slots.acquire("r:80")
    cancelled = asyncio.create_task(slots.acquire("r:80"))
    await asyncio.sleep(0)
    slots.release("r:80")  # handed to the waiter...
    cancelled.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(cancelled, return_exceptions=True)
    assert slots.in_flight("r:80") == 0


async def test_without_a_queue_a_busy_receiver_is_refused_at_once() -> None:
    slots = ReceiverSlots(1, queue=0, wait_seconds=5)
    assert await slots.acquire("r:80")
    async with asyncio.timeout(0.5):
        assert await slots.acquire("r:80") is False
