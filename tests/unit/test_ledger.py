"""The SQLite ledger: one row per finished task, replaced when the task is appended again."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import msgspec

from broker.ledger import Ledger
from broker.models import Task, TaskAction, TaskStatus, decode_task


def _task(task_id: str, **changes: object) -> Task:
    base = Task(
        id=task_id,
        action=TaskAction.IMAGINE,
        prompt="a cat",
        status=TaskStatus.SUCCESS,
        instance_id="a1",
        api_key_name="team-a",
        submit_time=1,
        start_time=2,
        finish_time=3,
    )
    return msgspec.structs.replace(base, **changes)


def test_append_twice_keeps_one_row_with_the_later_content(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        ledger.append([_task("1"), _task("2", status=TaskStatus.FAILURE, fail_reason="[Banned] no")])
        ledger.append([_task("1", seed="12345")])  # a seed learned after the end
        row = ledger.get("1")
        assert row is not None
        assert row["status"] == "SUCCESS" and row["account_id"] == "a1" and row["finish_time"] == 3
        assert decode_task(row["task_json"].encode()).seed == "12345"
        assert ledger.usage("account_id") == {"a1": {"SUCCESS": 1, "FAILURE": 1}}
        assert ledger.usage("api_key_name") == {"team-a": {"SUCCESS": 1, "FAILURE": 1}}
    finally:
        ledger.close()


def test_reopening_keeps_the_rows(tmp_path: Path) -> None:
    first = Ledger(tmp_path / "ledger.db")
    first.append([_task("7")])
    first.close()
    reopened = Ledger(tmp_path / "ledger.db")
    try:
        row = reopened.get("7")
        assert row is not None and row["prompt"] == "a cat"
    finally:
        reopened.close()


def test_opening_a_new_file_from_many_connections_at_once_succeeds(tmp_path: Path) -> None:
    # Two worker processes started together open the same new file; SQLite answered one of them
    # "database is locked" at once (the switch to WAL, the schema) and that worker died at start.
    failures: list[str] = []
    for round_ in range(5):
        path = tmp_path / f"round{round_}" / "ledger.db"
        start = threading.Barrier(8)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                Ledger(path).close()
            except sqlite3.Error as exc:
                failures.append(repr(exc))

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not failures, f"{len(failures)} of 40 opens failed: {failures[:3]}"
