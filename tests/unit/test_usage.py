"""Usage figures: sums over the ledger's rows, by day (the operator's days), action, mode, status, key."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from broker.ledger import Ledger, images_of
from broker.models import SpeedMode, Task, TaskAction, TaskStatus, encode_task
from broker.usage import MAX_DAYS, MAX_MS, day_bounds, day_start, usage

UTC = ZoneInfo("UTC")
DAY = 86_400_000
#: 2026-03-01 00:00 UTC
T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)


def _task(task_id: str, finish: int, **changes: object) -> Task:
    base = Task(
        id=task_id,
        action=TaskAction.IMAGINE,
        status=TaskStatus.SUCCESS,
        instance_id="a1",
        api_key_name="team-a",
        submit_time=finish - 1000,
        finish_time=finish,
        image_url="http://cdn.example/x.png",
    )
    return msgspec.structs.replace(base, **changes)


KNOWN = [
    _task("1", T0 + 1000, mode=SpeedMode.FAST),  # 4 images
    _task("2", T0 + 2000, action=TaskAction.UPSCALE),  # 1
    _task("3", T0 + DAY + 5, status=TaskStatus.FAILURE, fail_reason="banned"),  # 0
    _task("4", T0 + DAY + 6, api_key_name="team-b", instance_id="a2", mode=SpeedMode.RELAX),  # 4
    _task("5", T0 + 2 * DAY, action=TaskAction.DESCRIBE, api_key_name="team-b"),  # 0
    _task("6", T0 + 3 * DAY + 1, status=TaskStatus.CANCEL),  # outside the 3-day range below
]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    opened = Ledger(tmp_path / "ledger.db")
    opened.append(KNOWN)
    return opened


def _rows(figures: list[object]) -> dict[str | None, tuple[int, int]]:
    return {r.key: (r.tasks, r.images) for r in figures}  # type: ignore[attr-defined]


def test_images_count_a_grid_as_four_an_upscale_as_one_and_a_failure_as_none() -> None:
    assert [images_of(t) for t in KNOWN] == [4, 1, 0, 4, 0, 0]


def test_totals_and_every_grouping_add_up_to_the_rows_in_range(ledger: Ledger) -> None:
    got = usage(ledger, since=T0, until=T0 + 3 * DAY)
    assert (got.total.tasks, got.total.images) == (5, 9)
    assert _rows(got.by_day) == {"2026-03-01": (2, 5), "2026-03-02": (2, 4), "2026-03-03": (1, 0)}
    assert _rows(got.by_action) == {"IMAGINE": (3, 8), "UPSCALE": (1, 1), "DESCRIBE": (1, 0)}
    assert _rows(got.by_mode) == {None: (3, 1), "FAST": (1, 4), "RELAX": (1, 4)}
    assert _rows(got.by_status) == {"SUCCESS": (4, 9), "FAILURE": (1, 0)}
    assert _rows(got.by_api_key) == {"team-a": (3, 5), "team-b": (2, 4)}
    assert _rows(got.by_account) == {"a1": (4, 5), "a2": (1, 4)}
    for group in (got.by_day, got.by_action, got.by_mode, got.by_status, got.by_api_key, got.by_account):
        assert sum(r.tasks for r in group) == got.total.tasks
        assert sum(r.images for r in group) == got.total.images


def test_one_api_key_sees_only_its_rows(ledger: Ledger) -> None:
    got = usage(ledger, since=T0, until=T0 + 4 * DAY, api_key="team-b")
    assert (got.total.tasks, got.total.images) == (2, 4)
    assert _rows(got.by_api_key) == {"team-b": (2, 4)}


def test_the_range_includes_its_start_and_excludes_its_end(ledger: Ledger) -> None:
    got = usage(ledger, since=T0 + 2000, until=T0 + DAY + 6)
    assert got.total.tasks == 2  # task 2 (at the start) and 3; task 4 finished at the end
    assert [d.key for d in got.by_day] == ["2026-03-01", "2026-03-02"]


def test_an_empty_range_adds_up_to_zero_and_a_long_one_is_cut_to_its_last_days(ledger: Ledger) -> None:
    empty = usage(ledger, since=T0 + DAY, until=T0)
    assert (empty.total.tasks, empty.by_day) == (0, [])
    cut = usage(ledger, since=0, until=T0 + 3 * DAY)
    assert cut.since == T0 + 3 * DAY - MAX_DAYS * DAY and len(cut.by_day) == MAX_DAYS
    assert cut.total.tasks == 5
    # the ends of the calendar neither overflow nor go before the epoch
    assert usage(ledger, since=-5, until=2**62).until == MAX_MS
    assert day_start(date.max, UTC) == MAX_MS and day_start(date.min, ZoneInfo("Asia/Tokyo")) == 0


def test_days_are_the_operators_across_a_daylight_saving_change(ledger: Ledger) -> None:
    zone = ZoneInfo("America/New_York")  # 2026-03-08: 23 hours long
    start, end = day_start(date(2026, 3, 7), zone), day_start(date(2026, 3, 9), zone)
    days = day_bounds(start, end, zone)
    assert [(d, (hi - lo) // 3_600_000) for d, lo, hi in days] == [("2026-03-07", 24), ("2026-03-08", 23)]
    # 2026-03-01 00:00:01 UTC is still February 28 in New York
    got = usage(ledger, since=T0 - DAY, until=T0 + DAY, timezone="America/New_York")
    assert _rows(got.by_day)["2026-02-28"] == (2, 5)


def test_an_older_ledger_gains_mode_and_images_from_its_stored_tasks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema before `mode` and `images`
        db.execute(
            "create table tasks (id text primary key, action text, status text, account_id text, "
            "api_key_name text, bot_type text, submit_time integer, start_time integer, "
            "finish_time integer, prompt text, fail_reason text, image_url text, task_json text)"
        )
        for t in KNOWN[:2]:
            db.execute(
                "insert into tasks (id, action, status, finish_time, api_key_name, task_json) "
                "values (?, ?, ?, ?, ?, ?)",
                (t.id, str(t.action), str(t.status), t.finish_time, t.api_key_name, encode_task(t).decode()),
            )
    migrated = Ledger(path)
    try:
        got = usage(migrated, since=T0, until=T0 + DAY)
        assert (got.total.tasks, got.total.images) == (2, 5)
        assert _rows(got.by_mode) == {"FAST": (1, 4), None: (1, 1)}
    finally:
        migrated.close()


def test_the_figures_read_only_the_covering_index_and_the_chart_skips_the_groupings(ledger: Ledger) -> None:
    plan = ledger.query(
        "explain query plan select status, count(*), sum(images) from tasks indexed by idx_tasks_usage "
        "where finish_time >= ? and finish_time < ? and api_key_name = ? group by status",
        [T0, T0 + DAY, "team-a"],
    )
    assert any("COVERING INDEX idx_tasks_usage" in str(row) for row in plan), plan
    chart = usage(ledger, since=T0, until=T0 + 3 * DAY, groups=False)
    assert chart.total.tasks == 5 and [d.tasks for d in chart.by_day] == [2, 2, 1]
    assert chart.by_action == chart.by_status == chart.by_api_key == []
