"""Pure parts of the logs and metrics: JSON lines, redaction, the reconnect line, event times."""

from __future__ import annotations

import json
import logging
import sys

from broker.api.observe import submit_action
from broker.logs import JsonFormatter, RedactSecrets
from discord_bridge.library_logs import ReconnectLine
from workers.latency import EventTimes

SECRET = "tok-Zq8WvN3kLp0sYt"


def record(msg: str, *args: object, exc: BaseException | None = None, name: str = "x") -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_a_json_line_is_one_object_with_the_secret_redacted_in_message_and_traceback() -> None:
    rec = record("login with %s failed", SECRET, exc=raised(ValueError(f"bad token {SECRET}")))
    assert RedactSecrets([SECRET]).filter(rec)
    line = JsonFormatter().format(rec)
    assert "\n" not in line and SECRET not in line
    data = json.loads(line)
    assert data["message"] == "login with *** failed" and data["level"] == "ERROR"
    assert "ValueError: bad token ***" in data["exc"]
    assert data["time"].endswith("Z")


def test_a_gateway_reconnect_is_one_warning_line_without_traceback() -> None:
    rec = record(
        "Attempting a reconnect in %.2fs", 1.5, exc=raised(OSError("connection reset")), name="discord.client"
    )
    assert ReconnectLine().filter(rec)
    assert (rec.levelname, rec.exc_info) == ("WARNING", None)
    assert rec.getMessage() == "Attempting a reconnect in 1.50s (OSError: connection reset)"
    other = record("something else", exc=raised(OSError("x")))
    assert ReconnectLine().filter(other) and other.exc_info is not None and sys.exc_info()[0] is None


def test_submit_routes_are_labelled_by_action() -> None:
    assert submit_action("POST", "/mj/submit/imagine") == "IMAGINE"
    assert submit_action("POST", "/mj-relax/mj/submit/action") == "ACTION"
    assert submit_action("POST", "/mj/insight-face/swap") == "SWAP_FACE"
    assert submit_action("GET", "/mj/submit/imagine") is None
    assert submit_action("POST", "/mj/task/1/cancel") is None


def test_event_times_are_taken_by_the_revision_that_carries_them_and_bounded() -> None:
    times = EventTimes(max_tasks=2)
    times.note("t1", 10, 1000)
    times.note("t1", 20, 1500)
    times.note("t1", 30, 1700)
    assert times.take("t1", 20) == [1000, 1500]  # a delivery of revision 20 carries 10's change too
    assert times.take("t1", 20) == []
    times.note("t2", 1, 1)
    times.note("t3", 1, 2)  # a third task: the oldest (t1) is dropped
    assert times.take("t1", 99) == [] and times.take("t3", 1) == [2]
