"""A test whose task was cancelled fails, even when something swallowed the cancellation.

pytest already fails a test whose coroutine ends in `asyncio.CancelledError`; but a cancellation
caught on the way (a ``contextlib.suppress(asyncio.CancelledError)`` or ``except BaseException`` in
a helper) ends the test early and silently, and the test passes with its remaining checks skipped.
asyncio counts the cancellation requests a task has not taken back (`asyncio.Task.cancelling`):
after a test's coroutine returns, that count must be 0.

A test that cancels its own task on purpose and catches the cancellation (``with
pytest.raises(asyncio.CancelledError)``) says so as asyncio wants anyone who swallows a cancellation
to: ``asyncio.current_task().uncancel()``. Awaiting a cancelled *other* task under
``pytest.raises(asyncio.CancelledError)`` needs nothing: the test's own task was never cancelled.

`tests/conftest.py` applies `fail_cancelled_tests` to the collected items through
``pytest_collection_modifyitems`` and pytest-asyncio's public `pytest_asyncio.is_async_test`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
from pytest_asyncio import is_async_test

__all__ = ["fail_cancelled_tests"]

Test = Callable[..., Coroutine[Any, Any, object]]


def fail_cancelled_tests(items: Sequence[pytest.Item]) -> None:
    """Wrap every pytest-asyncio test's coroutine function in `_checked`."""
    for item in items:
        if not is_async_test(item):
            continue
        # A Hypothesis test runs its coroutine function once per example: wrap that one.
        hypothesis = getattr(item.obj, "hypothesis", None)
        owner: Any = hypothesis if getattr(item.obj, "is_hypothesis_test", False) and hypothesis else item
        name = "inner_test" if owner is hypothesis else "obj"
        setattr(owner, name, _checked(getattr(owner, name), item.nodeid))


def _checked(test: Test, nodeid: str) -> Test:
    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> object:
        try:
            result = await test(*args, **kwargs)
        except asyncio.CancelledError as exc:
            exc.add_note(f"{nodeid}: the test ended in CancelledError: something cancelled it")
            raise
        task = asyncio.current_task()
        pending = task.cancelling() if task is not None else 0
        if pending:
            pytest.fail(
                f"{nodeid}: the test's task was cancelled ({pending} cancellation(s) not taken back) "
                "and something swallowed the CancelledError, so the test ended early; a test that "
                "cancels itself on purpose calls asyncio.current_task().uncancel() after catching it",
                pytrace=False,
            )
        return result

    return checked
