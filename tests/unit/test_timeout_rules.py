"""Why a task fails when it runs out of time (`workers.sweeper.overdue_reason`), and when its clock
starts: at the send, never during a rate-limit wait."""

from __future__ import annotations

import msgspec
import pytest

from broker.account_status import AccountState, limited_until
from broker.config import Account
from broker.models import Task, TaskAction, TaskProperties, TaskStatus
from discord_bridge.rest import _retry_after
from workers.sweeper import overdue_reason

ACCOUNT = Account(id="a1", guild_id="g", channel_id="c", token="t", timeout_minutes=1)
MINUTE = 60_000
T0 = 1_000_000_000


def task(status: TaskStatus, **props: object) -> Task:
    start = None if status == TaskStatus.NOT_START else T0
    return Task(
        id="t1",
        action=TaskAction.IMAGINE,
        status=status,
        submit_time=T0,
        start_time=start,
        properties=TaskProperties(nonce="n1", **props),  # type: ignore[arg-type]
    )


def reason(t: Task, *, now: int, limited: int = 0) -> str | None:
    return overdue_reason(t, account=ACCOUNT, slot_ms=T0, account_limited_until=limited, now=now)


def test_a_task_in_time_has_no_reason() -> None:
    for status in (TaskStatus.NOT_START, TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS):
        assert reason(task(status), now=T0 + MINUTE - 1) is None


def test_a_sent_task_the_bot_never_answered_says_so() -> None:
    assert reason(task(TaskStatus.SUBMITTED), now=T0 + MINUTE) == (
        "the bot never acknowledged the job: no message from it within 1 minute of sending"
    )


def test_a_job_that_started_but_did_not_finish_times_out_with_its_progress() -> None:
    started = msgspec.structs.replace(task(TaskStatus.IN_PROGRESS, progress_message_id="m1"), progress="46%")
    assert reason(started, now=T0 + MINUTE) == "Task timed out after 1 minute (at 46%)"
    acked = task(TaskStatus.SUBMITTED, progress_message_id="m1")
    assert reason(acked, now=T0 + MINUTE) == "Task timed out after 1 minute"


def test_a_parked_task_counts_its_timeout_from_the_end_of_the_rate_limit() -> None:
    parked = task(TaskStatus.SUBMITTED, rate_limited_until=T0 + 5 * MINUTE)
    assert reason(parked, now=T0 + 5 * MINUTE + MINUTE - 1) is None  # six minutes after its claim
    assert reason(parked, now=T0 + 6 * MINUTE) == (
        "rate limited by Discord for 300 s, then not sent within 1 minute: account a1 is not taking "
        "work (see /mj/account/a1/fetch)"
    )


def test_a_task_not_sent_yet_waits_out_its_accounts_rate_limit_for_free() -> None:
    waiting = task(TaskStatus.NOT_START)
    assert reason(waiting, now=T0 + 2 * MINUTE, limited=T0 + 2 * MINUTE) is None
    assert reason(waiting, now=T0 + MINUTE) is not None  # no rate limit: the old rule holds
    assert reason(waiting, now=T0 + 3 * MINUTE, limited=T0 + 2 * MINUTE) == (
        "Task was not sent to Discord within 1 minute: account a1 is not taking work "
        "(see /mj/account/a1/fetch)"
    )


def test_a_deleted_progress_message_names_the_timeout_and_does_not_hasten_it() -> None:
    # Midjourney deletes the progress message just before it posts the result: no early failure.
    deleted = task(TaskStatus.IN_PROGRESS, progress_message_id="m1", message_deleted_time=T0 + 1000)
    assert reason(deleted, now=T0 + MINUTE - 1) is None
    assert reason(deleted, now=T0 + MINUTE) == (
        "the job's message was deleted before the job finished (no result within 1 minute)"
    )


def test_limited_until_reads_only_a_rate_limited_status() -> None:
    limited = AccountState.RATE_LIMITED.value.encode()
    assert limited_until([limited, b"1234"]) == 1234
    assert limited_until([AccountState.PAUSED.value.encode(), b"1234"]) == 0
    assert limited_until([limited, b"0"]) == 0
    assert limited_until([limited, None]) == 0
    assert limited_until([None, None]) == 0
    assert limited_until([limited, b"soon"]) == 0


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"retry_after": 80.5}, {}, 80.5),  # in full: the old bridge cut it to 60 s
        (None, {"Retry-After": "3"}, 3.0),
        ({"retry_after": "inf"}, {}, 1.0),
        ({"retry_after": -2}, {}, 0.0),
        ({}, {}, 1.0),
    ],
)
def test_retry_after_is_honoured_in_full(body: object, headers: dict[str, str], expected: float) -> None:
    assert _retry_after(body, headers) == expected
