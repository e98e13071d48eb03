"""The durable SQLite ledger of finished tasks (history, usage per account and per api key).

Appends are idempotent (upsert by task id) because the workers deliver at least once.
sqlite-utils is synchronous: async callers run it in a thread (`asyncio.to_thread`).
A file written by an older version gains the columns added since (`mode`, `images`) when it is
opened, filled from each row's stored task, so usage figures cover the whole history.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from broker.models import Task, TaskAction, TaskStatus, decode_task, encode_task

__all__ = ["Ledger", "images_of"]

_TABLE = "tasks"
_SCHEMA: dict[str, type] = {
    "id": str,
    "action": str,
    "status": str,
    "account_id": str,
    "api_key_name": str,
    "bot_type": str,
    "submit_time": int,
    "start_time": int,
    "finish_time": int,
    "prompt": str,
    "fail_reason": str,
    "image_url": str,
    "task_json": str,
    #: the speed mode asked for (FAST, RELAX, TURBO), or NULL when none was
    "mode": str,
    #: images the task produced (`images_of`): a grid counts 4, an upscale 1, a failure 0
    "images": int,
}
#: what usage figures read (`broker.usage`), finish time first: the columns of a covering index
_USAGE_COLUMNS = ("finish_time", "api_key_name", "action", "mode", "status", "account_id", "images")
#: images of a successful task by action; an action not listed counts 1 when it has an image
_IMAGES: dict[str, int] = {
    TaskAction.IMAGINE: 4,
    TaskAction.VARIATION: 4,
    TaskAction.REROLL: 4,
    TaskAction.ZOOM: 4,
    TaskAction.PAN: 4,
    TaskAction.BLEND: 4,
    TaskAction.UPSCALE: 1,
    TaskAction.SWAP_FACE: 1,
    TaskAction.DESCRIBE: 0,
    TaskAction.SHORTEN: 0,
}
# Every column is replaced, so INSERT OR REPLACE is the upsert by id.
_UPSERT = f"INSERT OR REPLACE INTO {_TABLE} ({', '.join(_SCHEMA)}) VALUES ({', '.join('?' * len(_SCHEMA))})"


def images_of(task: Task) -> int:
    """How many images a finished task produced (what Midjourney spent GPU time on and sent)."""
    if task.status != TaskStatus.SUCCESS:
        return 0
    return _IMAGES.get(task.action, 1 if task.image_url else 0)


class Ledger:
    """One SQLite file in WAL mode; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite_utils.Database(sqlite3.connect(str(self.path), check_same_thread=False))
        self._table = self._db.table(_TABLE)
        # Processes opening a new file together (two workers started at once, a web) race on the
        # switch to WAL and the schema, where SQLite answers "database is locked" at once instead of
        # waiting: one at a time, under a lock file beside the ledger.
        with (self.path.parent / f"{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._set_up()

    def _set_up(self) -> None:
        self._db.enable_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        if _TABLE not in self._db.table_names():
            self._table.create(_SCHEMA, pk="id")
            self._table.create_index(["account_id", "finish_time"])
            self._table.create_index(["api_key_name", "finish_time"])
        else:
            self._migrate()
        # the latest tasks read by finish time
        self._table.create_index(["finish_time"], if_not_exists=True)
        # usage (`broker.usage`) reads only these columns over a finish-time range: with all of them
        # in one index its queries never touch the rows (whose task JSON makes them large), about
        # 20 times faster on 30,000 tasks
        self._table.create_index(list(_USAGE_COLUMNS), index_name="idx_tasks_usage", if_not_exists=True)

    def _migrate(self) -> None:
        """Add the columns a file from an older version lacks, filled from each row's task."""
        missing = [name for name in _SCHEMA if name not in self._table.columns_dict]
        if not missing:
            return
        for name in missing:
            try:
                self._table.add_column(name, _SCHEMA[name])
            except sqlite3.OperationalError as exc:  # another process (web, worker) added it first
                if "duplicate column" not in str(exc):
                    raise
        rows = self._db.execute(f"select id, task_json from {_TABLE}").fetchall()
        filled = []
        for task_id, raw in rows:
            task = decode_task(raw)
            filled.append((str(task.mode) if task.mode else None, images_of(task), task_id))
        with self._db.conn:
            self._db.conn.executemany(f"update {_TABLE} set mode = ?, images = ? where id = ?", filled)

    def append(self, tasks: list[Task]) -> None:
        rows = [
            (
                t.id,
                str(t.action),
                str(t.status),
                t.instance_id,
                t.api_key_name,
                str(t.bot_type),
                t.submit_time,
                t.start_time,
                t.finish_time,
                t.prompt,
                t.fail_reason,
                t.image_url,
                encode_task(t).decode(),
                str(t.mode) if t.mode else None,
                images_of(t),
            )
            for t in tasks
        ]
        # One prepared statement rather than sqlite-utils' upsert_all, which inspects the table's
        # schema on every call (the workers append a batch per read of the changes stream).
        with self._lock, self._db.conn:
            self._db.conn.executemany(_UPSERT, rows)

    def get(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            rows = list(self._table.rows_where("id = ?", [task_id]))
        return rows[0] if rows else None

    def usage(self, column: str) -> dict[str, dict[str, int]]:
        """Count of finished tasks per `account_id` or `api_key_name`, by status."""
        if column not in ("account_id", "api_key_name"):
            raise ValueError(f"cannot group the ledger by {column!r}")
        sql = f"select {column} as k, status, count(*) as n from {_TABLE} group by {column}, status"
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for key, status, count in self._db.execute(sql).fetchall():
                out.setdefault(str(key), {})[str(status)] = int(count)
        return out

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only `sql` (the usage figures and the status page build theirs)."""
        with self._lock:
            return list(self._db.execute(sql, list(params)).fetchall())

    def latest(self, limit: int) -> list[Task]:
        """The `limit` tasks that finished last, newest first."""
        sql = f"select task_json from {_TABLE} order by finish_time desc limit ?"
        return [decode_task(raw) for (raw,) in self.query(sql, [limit])]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def page(
        self, *, where: dict[str, str], since_ms: int | None, until_ms: int | None, offset: int, limit: int
    ) -> tuple[int, list[str]]:
        """One page of finished tasks, newest submit first: (how many match in all, their task JSON).

        :param where: column -> value that must be equal (`status`, `action`, `account_id`,
            `api_key_name`).
        :param since_ms, until_ms: the submit time's bounds (epoch ms, both included), when given.
        """
        clauses: list[str] = []
        args: list[str | int] = []
        for column, value in where.items():
            if column not in ("status", "action", "account_id", "api_key_name"):
                raise ValueError(f"cannot filter the ledger by {column!r}")
            clauses.append(f"{column} = ?")
            args.append(value)
        if since_ms is not None:
            clauses.append("submit_time >= ?")
            args.append(since_ms)
        if until_ms is not None:
            clauses.append("submit_time <= ?")
            args.append(until_ms)
        sql_where = f" where {' and '.join(clauses)}" if clauses else ""
        with self._lock:
            total = self._db.execute(f"select count(*) from {_TABLE}{sql_where}", args).fetchone()[0]
            order = "order by submit_time desc, id desc limit ? offset ?"
            rows = self._db.execute(
                f"select task_json from {_TABLE}{sql_where} {order}", [*args, limit, offset]
            ).fetchall()
        return int(total), [str(row[0]) for row in rows]
