"""`/mj/admin/usage` and `/mj/usage` against a real web process reading a ledger the test wrote."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from api_support import API_SECRET, running_web

from broker.ledger import Ledger
from broker.models import SpeedMode, Task, TaskAction, TaskStatus
from broker.redis_server import EmbeddedRedis

ADMIN = {"mj-api-secret": "admin-usage-Kq7Zp2"}
OTHER = {"mj-api-secret": "other-usage-Vb3Lm8"}
KEYS = [
    {"name": "tests", "secret": API_SECRET},
    {"name": "other", "secret": OTHER["mj-api-secret"]},
    {"name": "ops", "secret": ADMIN["mj-api-secret"], "role": "admin"},
]
DAY = 86_400_000


def _task(task_id: str, finish: int, key: str, **changes: Any) -> Task:
    base = Task(
        id=task_id,
        action=TaskAction.IMAGINE,
        status=TaskStatus.SUCCESS,
        instance_id="a1",
        api_key_name=key,
        submit_time=finish - 500,
        finish_time=finish,
    )
    return msgspec.structs.replace(base, **changes)


def _write_ledger(path: Path, now: int) -> list[Task]:
    tasks = [
        _task("u1", now - 1000, "tests", mode=SpeedMode.FAST),
        _task("u2", now - 2000, "tests", action=TaskAction.UPSCALE),
        _task("u3", now - 3000, "other", status=TaskStatus.FAILURE, fail_reason="banned"),
        _task("u4", now - 3 * DAY, "other", mode=SpeedMode.RELAX),
        _task("u5", now - 40 * DAY, "tests"),  # outside the default 30 days
    ]
    ledger = Ledger(path)
    ledger.append(tasks)
    ledger.close()
    return tasks


def _by(rows: list[dict[str, Any]]) -> dict[str | None, tuple[int, int]]:
    return {r["key"]: (r["tasks"], r["images"]) for r in rows}


async def test_usage_sums_equal_the_ledger_rows_and_a_client_sees_only_its_own(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    _write_ledger(tmp_path / "ledger.db", now)
    tasks_settings = {"ledger_path": str(tmp_path / "ledger.db")}
    with running_web(redis_server, api_keys=KEYS, tasks=tasks_settings) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            every = (await http.get("/mj/admin/usage", headers=ADMIN)).json()
            assert (every["total"]["tasks"], every["total"]["images"]) == (4, 9)
            assert _by(every["byApiKey"]) == {"tests": (2, 5), "other": (2, 4)}
            assert _by(every["byStatus"]) == {"SUCCESS": (3, 9), "FAILURE": (1, 0)}
            assert _by(every["byMode"]) == {"FAST": (1, 4), "RELAX": (1, 4), None: (2, 1)}
            assert _by(every["byAction"]) == {"IMAGINE": (3, 8), "UPSCALE": (1, 1)}
            assert len(every["byDay"]) == 30 and sum(d["tasks"] for d in every["byDay"]) == 4
            assert every["timezone"] == "UTC" and every["apiKey"] is None

            own = (await http.get("/mj/usage", headers={"mj-api-secret": API_SECRET})).json()
            assert own["apiKey"] == "tests" and own["total"]["tasks"] == 2
            assert _by(own["byApiKey"]) == {"tests": (2, 5)}
            other = (await http.get("/mj-relax/mj/usage", headers=OTHER)).json()
            assert other["apiKey"] == "other" and _by(other["byApiKey"]) == {"other": (2, 4)}
            # a client cannot read the others' figures
            refused = await http.get("/mj/admin/usage", headers={"mj-api-secret": API_SECRET})
            assert refused.status_code == 403
            one = (await http.get("/mj/admin/usage", params={"apiKey": "other"}, headers=ADMIN)).json()
            assert one["total"]["tasks"] == 2 and one["apiKey"] == "other"

            # ranges: epoch ms (end excluded) and days (last day included)
            ranged = await http.get(
                "/mj/admin/usage", params={"since": str(now - 2500), "until": str(now - 1000)}, headers=ADMIN
            )
            assert ranged.json()["total"]["tasks"] == 1  # u2 only: u1 finished at the end
            long_ago = time.strftime("%Y-%m-%d", time.gmtime((now - 40 * DAY) / 1000))
            old = (
                await http.get("/mj/admin/usage", params={"from": long_ago, "to": long_ago}, headers=ADMIN)
            ).json()
            assert old["total"]["tasks"] == 1 and _by(old["byDay"]) == {long_ago: (1, 4)}

            for params in ({"from": "yesterday"}, {"to": "2026-02-30"}, {"since": "-5"}, {"until": "x"}):
                bad = await http.get("/mj/admin/usage", params=params, headers=ADMIN)
                assert bad.status_code == 400 and bad.json()["code"] == 4, (params, bad.text)
            empty = await http.get("/mj/usage", params={"since": "5", "until": "5"}, headers=OTHER)
            assert empty.status_code == 200 and empty.json()["total"]["tasks"] == 0
