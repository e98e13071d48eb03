"""The admin API on a real web process: config.yaml written back with its comments, applied at once.

Every change goes into the web's config.yaml (ruamel round trip) and the web takes it before it
answers; the file's comments must survive, bad input must be code 4 with the file unchanged byte
for byte, and tokens and secrets must never come back.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
import yaml
from api_support import API_SECRET, HOOK_SECRET, TOKEN_A1, WebProcess, account, running_web, write_config

from broker.api.sessions import COOKIE_NAME, cookie_value
from broker.ledger import Ledger
from broker.models import Task, TaskAction, TaskStatus
from broker.redis_server import EmbeddedRedis

ADMIN_SECRET = "admin-sekret-Hx3Lq9Vt"
KEYS = [{"name": "tests", "secret": API_SECRET}, {"name": "ops", "secret": ADMIN_SECRET, "role": "admin"}]
ADMIN = {"mj-api-secret": ADMIN_SECRET}
CLIENT = {"mj-api-secret": API_SECRET}
NEW_TOKEN = "tok-a2-Vq7Ns3Xe9Lm2Pd"


def add_comments(path: Path) -> list[str]:
    """Give the (PyYAML-written) file an operator's comments; returns them in order."""
    lines = ["# the operator's own header", "# second header line"]
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "-")):
            lines.append(f"# about {line.split(':')[0]}")
        lines.append(f"{line}  # note {len(lines)}" if line.endswith(":") else line)
    path.write_text("\n".join(lines) + "\n")
    return comments(path.read_text())


def comments(text: str) -> list[str]:
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


@pytest.fixture(scope="module")
def admin_web(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """One web process for the tests below, its config.yaml given an operator's comments and a
    ledger the tasks listing reads; each test leaves the file's settings as it found them."""
    ledger_path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    Ledger(ledger_path).append(LEDGER_TASKS)
    with running_web(redis_server, api_keys=KEYS, tasks={"ledger_path": str(ledger_path)}) as web:
        add_comments(web.config)
        yield web


async def _ok(http: httpx.AsyncClient, path: str, body: Any = None) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert data["code"] == 1, data
    return data


async def _refused(http: httpx.AsyncClient, path: str, body: Any, config: Path, words: str) -> None:
    """Code 4 whose description says `words`, and config.yaml byte for byte as it was."""
    before = _read(config)
    response = await http.post(path, json=body)
    assert response.status_code in (200, 400), response.text
    data = response.json()
    assert data["code"] == 4 and words in data["description"], data
    assert _read(config) == before


def _read(path: Path) -> bytes:
    return path.read_bytes()


async def test_account_round_trip_keeps_the_comments_and_applies_at_once(admin_web: WebProcess) -> None:
    web = admin_web
    before = comments(web.config.read_text())
    async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=10) as http:
        body = account("a2", 2, NEW_TOKEN, core_size=2, work_hours="09:00-17:00", daily_limit=5)
        created = await _ok(http, "/mj/admin/accounts", body)
        assert created["result"] == "a2" and created["properties"]["account"]["token"] == "***"
        # this web process took the file before it answered: the client routes know a2 at once
        client_view = await http.get("/mj/account/a2/fetch")
        assert client_view.status_code == 200 and client_view.json()["coreSize"] == 2
        fetched = (await http.get("/mj/admin/accounts/a2")).json()
        assert fetched["token"] == "***" and fetched["daily_limit"] == 5
        assert fetched["work_hours"] == "09:00-17:00" and fetched["live"]["running"] == 0
        await _ok(http, "/mj/admin/accounts/a2/update", {"work_hours": "10:00-18:00", "daily_limit": None})
        fetched = (await http.get("/mj/admin/accounts/a2")).json()
        assert fetched["work_hours"] == "10:00-18:00" and fetched["daily_limit"] == 0
        await _ok(http, "/mj/admin/accounts/a2/disable")
        assert (await http.get("/mj/account/a2/fetch")).json()["enable"] is False
        await _ok(http, "/mj/admin/accounts/a2/enable")
        assert (await http.get("/mj/admin/accounts/a2")).json()["enabled"] is True
        listed = await http.get("/mj/admin/accounts")
        assert [a["id"] for a in listed.json()] == ["a1", "a2"]
        await _ok(http, "/mj/admin/accounts/a2/delete")
        assert (await http.get("/mj/admin/accounts/a2")).status_code == 404
        gone = (await http.post("/mj/admin/accounts/a2/update", json={"core_size": 1})).json()
        assert gone["code"] == 4 and "not found" in gone["description"]
        for reply in (created, fetched, listed.json()):
            assert NEW_TOKEN not in str(reply) and TOKEN_A1 not in str(reply)
    text = web.config.read_text()
    assert comments(text) == before
    assert NEW_TOKEN not in web.log() and TOKEN_A1 not in web.log()


async def test_bad_writes_answer_code_4_and_leave_config_yaml_byte_for_byte(admin_web: WebProcess) -> None:
    web = admin_web
    config = web.config
    async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=10) as http:
        accounts = "/mj/admin/accounts"
        await _refused(http, accounts, account("a1", 1, NEW_TOKEN), config, "already exists")
        await _refused(http, accounts, account("a2", 2, NEW_TOKEN, work_hours="9-5"), config, "work_hours")
        await _refused(http, accounts, account("a2", 2, NEW_TOKEN, daily_limit=-1), config, "daily_limit")
        await _refused(http, accounts, account("a2", 2, NEW_TOKEN, tokn="x"), config, "unknown key")
        await _refused(http, accounts, account("a2", 2, "${MJB_UNSET_VAR_X}"), config, "MJB_UNSET_VAR_X")
        await _refused(http, accounts, account("a2", 2, NEW_TOKEN, core_size="many"), config, "core_size")
        await _refused(http, accounts, [1, 2], config, "Invalid request body")
        await _refused(http, "/mj/admin/accounts/a1/update", {"queue_size": -3}, config, "queue_size")
        await _refused(http, "/mj/admin/accounts/a1/update", {"id": "a9"}, config, "cannot change")
        await _refused(http, "/mj/admin/account-choice", {"choice": "cheapest"}, config, "choice")
        await _refused(http, "/mj/admin/hooks", {"concurrency": "many"}, config, "concurrency")
        await _refused(http, "/mj/admin/hooks", {"bogus": 1}, config, "unknown key")
        await _refused(http, "/mj/admin/api-keys", {"name": "x", "secret": "short"}, config, "secret")
        await _refused(http, "/mj/admin/api-keys/ops/revoke", None, config, "no key with role admin")
        await _refused(http, "/mj/admin/banned-words", {"words": [" "]}, config, "words")
        # a rule that exists is taken, and the file changes
        await _ok(http, "/mj/admin/account-choice", {"choice": "round_robin"})
        assert (await http.get("/mj/admin/account-choice")).json() == {"choice": "round_robin"}
        assert yaml.safe_load(config.read_text())["accounts"]["choice"] == "round_robin"
        await _ok(http, "/mj/admin/account-choice", {"choice": "least_busy"})


async def test_hostile_bodies_on_admin_routes_are_400_code_4(admin_web: WebProcess) -> None:
    before = admin_web.config.read_bytes()
    since = len(admin_web.log())
    hostile = [b'{"id": "a \xff\xfe"}', b'{"a": ' * 1000 + b"1" + b"}" * 1000, b"[" * 100_000, b'"text"']
    routes = [
        "/mj/admin/accounts",
        "/mj/admin/accounts/a1/update",
        "/mj/admin/account-choice",
        "/mj/admin/api-keys",
        "/mj/admin/api-keys/ops/rotate",
        "/mj/admin/banned-words",
        "/mj/admin/banned-words/remove",
        "/mj/admin/hooks",
    ]
    async with httpx.AsyncClient(base_url=admin_web.url, headers=ADMIN, timeout=10) as http:
        for path in routes:
            for body in hostile:
                response = await http.post(path, content=body, headers={"content-type": "application/json"})
                assert response.status_code == 400, (path, body[:20], response.text)
                assert response.json()["code"] == 4
    assert admin_web.config.read_bytes() == before
    assert "Traceback" not in admin_web.log()[since:]


async def test_client_keys_and_cookies_cannot_change_anything(admin_web: WebProcess) -> None:
    web = admin_web
    before = web.config.read_bytes()
    routes = [
        ("GET", "/mj/admin/accounts"),
        ("GET", "/mj/admin/accounts/a1"),
        ("POST", "/mj/admin/accounts"),
        ("POST", "/mj/admin/accounts/a1/update"),
        ("POST", "/mj/admin/accounts/a1/delete"),
        ("POST", "/mj/admin/accounts/a1/disable"),
        ("POST", "/mj/admin/accounts/a1/reconnect"),
        ("GET", "/mj/admin/api-keys"),
        ("POST", "/mj/admin/api-keys/ops/rotate"),
        ("POST", "/mj/admin/banned-words"),
        ("POST", "/mj/admin/banned-words/remove"),
        ("POST", "/mj/admin/hooks"),
        ("GET", "/mj/admin/tasks"),
    ]
    async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
        for method, path in routes:
            refused = await http.request(method, path, headers=CLIENT, json={"words": ["x"]})
            assert refused.status_code == 403 and refused.json()["code"] == 4, (path, refused.text)
        # the status page's cookie signs a browser in for reads only: a change with it is 401
        cookie = {COOKIE_NAME: cookie_value("ops", ADMIN_SECRET)}
        assert (await http.get("/mj/admin/banned-words", cookies=cookie)).status_code == 200
        posted = await http.post("/mj/admin/banned-words", json={"words": ["x"]}, cookies=cookie)
        assert posted.status_code == 401 and posted.json()["code"] == 4
    assert web.config.read_bytes() == before


async def test_api_keys_banned_words_and_hook_options_apply_without_a_restart(
    admin_web: WebProcess, redis: aioredis.Redis
) -> None:
    web = admin_web
    before = comments(web.config.read_text())
    async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=10) as http:
        app_key = {"mj-api-secret": "app2-secret-Pw8Zr5Tq1"}
        assert (await http.get("/mj/task/list", headers=app_key)).status_code == 401
        await _ok(http, "/mj/admin/api-keys", {"name": "app2", "secret": "app2-secret-Pw8Zr5Tq1"})
        assert (await http.get("/mj/task/list", headers=app_key)).status_code == 200
        assert (await http.get("/mj/admin/api-keys", headers=app_key)).status_code == 403
        await _ok(http, "/mj/admin/api-keys/app2/rotate", {"secret": "app2-rotated-Gx4Bn7Kd"})
        assert (await http.get("/mj/task/list", headers=app_key)).status_code == 401
        rotated = {"mj-api-secret": "app2-rotated-Gx4Bn7Kd"}
        assert (await http.get("/mj/task/list", headers=rotated)).status_code == 200
        listed = await http.get("/mj/admin/api-keys")
        assert listed.json() == [
            {"name": "tests", "role": "client"},
            {"name": "ops", "role": "admin"},
            {"name": "app2", "role": "client"},
        ]
        assert "rotated" not in listed.text and ADMIN_SECRET not in listed.text
        await _ok(http, "/mj/admin/api-keys/app2/revoke")
        assert (await http.get("/mj/task/list", headers=rotated)).status_code == 401

        imagine = {"prompt": "a dragonfruit on a plate"}
        assert (await http.post("/mj/submit/imagine", json=imagine)).json()["code"] != 24
        added = await _ok(http, "/mj/admin/banned-words", {"words": ["dragonfruit", "forbidden"]})
        assert added["result"] == ["dragonfruit"]  # "forbidden" was listed already
        banned = (await http.post("/mj/submit/imagine", json=imagine)).json()
        assert banned["code"] == 24 and banned["properties"]["bannedWord"] == "dragonfruit"
        removed = await _ok(http, "/mj/admin/banned-words/remove", {"words": ["dragonfruit", "nope"]})
        assert removed["result"] == ["dragonfruit"] and removed["properties"]["notFound"] == ["nope"]
        assert (await http.post("/mj/submit/imagine", json=imagine)).json()["code"] != 24
        assert (await http.get("/mj/admin/banned-words")).json() == ["forbidden", "bad word"]

        hooks = (await http.get("/mj/admin/hooks")).json()
        assert hooks["secret"] == "***" and hooks["give_up_minutes"] == 10
        await _ok(http, "/mj/admin/hooks", {"secret": "new-hook-secret-Jd3", "give_up_minutes": 3})
        hooks = (await http.get("/mj/admin/hooks")).json()
        assert hooks["secret"] == "***" and hooks["give_up_minutes"] == 3
        assert "new-hook-secret" not in str(hooks)
        await _ok(http, "/mj/admin/hooks", {"secret": HOOK_SECRET, "give_up_minutes": None})
    assert comments(web.config.read_text()) == before
    assert "rotated" not in web.log() and "new-hook-secret" not in web.log()


async def test_parallel_admin_writes_in_two_web_processes_all_survive(redis_server: EmbeddedRedis) -> None:
    directory = Path(tempfile.mkdtemp(prefix="mjb-admin-"))
    web = WebProcess(write_config(directory, redis_server.url, api_keys=KEYS), workers=2)
    web.start()
    try:
        add_comments(web.config)
        words = [f"word{i}" for i in range(16)]
        ids = [f"n{i}" for i in range(8)]
        async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=30) as http:
            replies = await asyncio.gather(
                *(http.post("/mj/admin/banned-words", json={"words": [w]}) for w in words),
                *(http.post("/mj/admin/accounts", json=account(i, 3, NEW_TOKEN)) for i in ids),
            )
        assert [r.json()["code"] for r in replies] == [1] * len(replies), [r.text for r in replies]
        document = yaml.safe_load(web.config.read_text())
        assert set(words) <= set(document["banned_words"])
        assert {a["id"] for a in document["accounts"]} == {"a1", *ids}
    finally:
        web.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _task(n: int, **fields: Any) -> Task:
    task = Task(id=f"t{n:03d}", action=TaskAction.IMAGINE, prompt=f"p{n}", status=TaskStatus.SUCCESS)
    return msgspec.structs.replace(task, submit_time=1_700_000_000_000 + n * 1000, **fields)


#: rows of the ledger the listing reads: accounts, keys, statuses and actions in different rhythms
LEDGER_TASKS = [
    _task(
        n,
        instance_id="a1" if n % 2 else "a2",
        api_key_name="tests" if n % 3 else "other",
        status=TaskStatus.FAILURE if n % 5 == 0 else TaskStatus.SUCCESS,
        action=TaskAction.UPSCALE if n % 4 == 0 else TaskAction.IMAGINE,
    )
    for n in range(1, 31)
]


async def test_tasks_listing_filters_and_pages_the_ledger(admin_web: WebProcess) -> None:
    web, tasks = admin_web, LEDGER_TASKS
    async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=10) as http:

        async def ids(**query: Any) -> tuple[int, list[str]]:
            response = await http.get("/mj/admin/tasks", params=query)
            assert response.status_code == 200, response.text
            data = response.json()
            return data["total"], [t["id"] for t in data["items"]]

        def expect(keep: Any) -> list[str]:
            return [t.id for t in sorted(tasks, key=lambda t: -(t.submit_time or 0)) if keep(t)]

        total, first = await ids(size=7)
        assert total == 30 and first == expect(lambda t: True)[:7]
        _, third = await ids(size=7, page=3)
        assert third == expect(lambda t: True)[14:21]
        _, last = await ids(size=7, page=5)
        assert last == expect(lambda t: True)[28:]
        total, failed = await ids(status="FAILURE", size=100)
        assert failed == expect(lambda t: t.status == TaskStatus.FAILURE) and total == 6
        _, mixed = await ids(account="a2", apiKey="tests", action="imagine", size=100)
        assert mixed == expect(
            lambda t: t.instance_id == "a2" and t.api_key_name == "tests" and t.action == "IMAGINE"
        )
        since, until = 1_700_000_000_000 + 10_000, "2023-11-14T22:13:40Z"  # = ... + 20_000 ms
        _, window = await ids(**{"from": since, "to": until, "size": 100})
        assert window == expect(lambda t: since <= (t.submit_time or 0) <= since + 10_000)
        assert len(window) == 11
        # the stored task JSON, as /fetch gives it
        item = (await http.get("/mj/admin/tasks", params={"size": 1})).json()["items"][0]
        assert item["id"] == "t030" and item["prompt"] == "p30" and item["status"] == "FAILURE"
        for bad in ({"status": "DONE"}, {"size": 1000}, {"page": 0}, {"from": "yesterday"}):
            refused = (await http.get("/mj/admin/tasks", params=bad)).json()
            assert refused["code"] == 4, (bad, refused)
        assert (await http.get("/mj/admin/tasks", params={"page": "x"})).status_code == 400
