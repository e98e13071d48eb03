"""Under this suite's conftest and pytest settings, a test that was cancelled is reported as a failure.

The cases run in a pytest of their own (a subprocess, so that its event loops stay apart from this
session's), with tests/conftest.py copied in as it is and the project's asyncio settings.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ASYNCIO_OPTIONS = ("asyncio_mode", "asyncio_default_fixture_loop_scope", "asyncio_default_test_loop_scope")

CASES = """
import asyncio
import contextlib

import pytest
from hypothesis import given, settings, strategies as st


async def test_swallows_its_own_cancellation():
    asyncio.get_running_loop().call_soon(asyncio.current_task().cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(5)
        raise AssertionError("never reached: the cancellation leaves the block here")


async def test_ends_in_cancelled_error():
    asyncio.current_task().cancel()
    await asyncio.sleep(0)


@settings(max_examples=2, database=None)
@given(st.integers())
async def test_example_swallows_its_own_cancellation(n):
    asyncio.get_running_loop().call_soon(asyncio.current_task().cancel)
    try:
        await asyncio.sleep(5)
    except BaseException:
        pass


async def test_awaits_a_cancelled_task_on_purpose():
    child = asyncio.create_task(asyncio.sleep(5))
    await asyncio.sleep(0)
    child.cancel()
    with pytest.raises(asyncio.CancelledError):
        await child


async def test_cancels_itself_on_purpose_and_takes_it_back():
    asyncio.get_running_loop().call_soon(asyncio.current_task().cancel)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(5)
    asyncio.current_task().uncancel()


async def test_is_not_cancelled():
    await asyncio.sleep(0)
"""


def test_a_cancelled_test_fails_and_a_cancellation_awaited_on_purpose_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the support modules tests/conftest.py imports
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_cases=CASES)
    project = tomllib.loads((TESTS.parent / "pyproject.toml").read_text(encoding="utf-8"))
    ini = project["tool"]["pytest"]["ini_options"]
    options = [arg for name in ASYNCIO_OPTIONS for arg in ("-o", f"{name}={ini[name]}")]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *options)
    outcomes = {
        line.split(" ", 1)[1].split(" ")[0].split("::")[-1]: line.split(" ", 1)[0]
        for line in result.outlines
        if line.startswith(("PASSED ", "FAILED "))
    }
    assert outcomes == {
        "test_swallows_its_own_cancellation": "FAILED",
        "test_ends_in_cancelled_error": "FAILED",
        "test_example_swallows_its_own_cancellation": "FAILED",
        "test_awaits_a_cancelled_task_on_purpose": "PASSED",
        "test_cancels_itself_on_purpose_and_takes_it_back": "PASSED",
        "test_is_not_cancelled": "PASSED",
    }, result.stdout.str()
