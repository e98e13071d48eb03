"""One whole stack (every process real) shared by the action and error-path tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from e2e_support import Stack


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    # a0: plain; a1: remix on; a2: captcha victim; a3: ban victim; a4: gateway drops, rate limits
    running = Stack(root, accounts=5, core_size=3, queue_size=20, timeout_minutes=0.5,
                    account_overrides={1: {"remix": True, "niji_remix": True}})  # fmt: skip
    try:
        await running.start()
        await running.sim_control(
            "PATCH", f"/_sim/accounts/{running.sim_accounts[1]['token']}", {"remix": True}
        )
        yield running
    finally:
        await running.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The chaos tests' seed and counts on every run, passed or not (`record_property("chaos", ...)`,
    "host_crash", "sentinel", "processes" and "cluster_kill")."""
    for report in [*terminalreporter.getreports("passed"), *terminalreporter.getreports("failed")]:
        for name, value in report.user_properties:
            if name in ("chaos", "host_crash", "sentinel", "processes", "cluster_kill"):
                terminalreporter.write_sep("-", f"{name}: {report.nodeid}")
                terminalreporter.write_line(str(value))
