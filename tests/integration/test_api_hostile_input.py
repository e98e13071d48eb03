"""Hostile input on the HTTP API: bodies the decoder refuses, unknown tasks, echoed input, banned-word
evasions. Routes are enumerated from the app itself, so a route added later is covered too."""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import pytest
from api_support import WebProcess
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from broker.api.app import create_app
from broker.config import load_settings
from broker.models import Button, Task, TaskAction, TaskStatus
from broker.store import TaskStore

#: the door refuses these a client key before any body is read
ADMIN_PATHS = ("/mj/admin/", "/admin")
_PARAM = re.compile(r"\{[^}]+\}")
UNKNOWN_ID = "1799999999999999"

HOSTILE_BODIES = {
    "invalid UTF-8 in a string": b'{"prompt": "a \xff\xfe cat", "taskId": "1", "ids": []}',
    "invalid UTF-8 in a key": b'{"pr\xc3\x28ompt": "a cat"}',
    "UTF-8 encoded surrogate": b'{"prompt": "\xed\xa0\x80", "content": "1 U1"}',
    "1,000-deep arrays": b'{"prompt": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    "1,000-deep objects": b'{"a": ' * 1000 + b"1" + b"}" * 1000,
    "100,000-deep, unclosed": b"[" * 100_000,
}


def _routes(web: WebProcess) -> list[tuple[str, HTTPRoute, HTTPRouteHandler]]:
    """(method, route, handler) of every HTTP route of the app the web process serves, but the
    admin routes: the door refuses this client key there before any body is read (403), and
    test_api_admin.py sends them hostile bodies with an admin key."""
    app = create_app(load_settings(web.config))
    return [
        (method, route, handler)
        for route in app.routes
        if isinstance(route, HTTPRoute) and not route.path.startswith(ADMIN_PATHS)
        for handler in route.route_handlers
        for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"})
    ]


def _url(route: HTTPRoute, task_id: str = UNKNOWN_ID) -> str:
    return _PARAM.sub(task_id, route.path)


def _takes_a_body(handler: HTTPRouteHandler) -> bool:
    return "data" in handler.parsed_fn_signature.parameters


def _post_urls(web: WebProcess) -> list[str]:
    """Every POST route that decodes a body; the others (cancel) must not read one at all. The status
    page's sign-in and sign-out (`/admin/...`) are HTML forms, not the JSON API: tested apart."""
    posts = [
        (route, handler)
        for method, route, handler in _routes(web)
        if method == "POST" and not route.path.startswith("/admin/")
    ]
    assert {r.path for r, h in posts if not _takes_a_body(h)} == {
        prefix + "/mj/task/{task_id:str}/cancel" for prefix in ("", "/mj-fast", "/mj-relax", "/mj-turbo")
    }
    urls = [_url(route) for route, handler in posts if _takes_a_body(handler)]
    assert len(urls) >= 40, urls  # 12 routes and their /mj-fast, /mj-relax, /mj-turbo aliases
    return urls


def _new_log(web: WebProcess, since: int) -> str:
    return web.log()[since:]


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
async def test_bodies_the_decoder_refuses_are_400_code_4_on_every_post_route(
    client: httpx.AsyncClient, web: WebProcess, name: str
) -> None:
    since = len(web.log())
    for url in _post_urls(web):
        response = await client.post(
            url, content=HOSTILE_BODIES[name], headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (url, response.status_code, response.text[:300])
        body = response.json()
        assert body["code"] == 4 and body["description"].startswith("Invalid request body"), (url, body)
    log = _new_log(web, since)
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def _one_answer(task_id: str) -> str:
    shown = task_id if len(task_id) <= 200 else task_id[:200]
    return f"task {shown!r}{'…' if len(task_id) > 200 else ''} not found"


# The other fields a route naming its task in the body needs, so that the task is what it refuses.
_BODY_FIELDS: dict[str, dict[str, Any]] = {
    "/mj/submit/action": {"customId": "MJ::JOB::upsample::1::4c3a5e2f-1111-2222-3333-444455556666"},
    "/mj/submit/modal": {"prompt": "a cat"},
    "/mj/submit/change": {"action": "UPSCALE", "index": 1},
    "/mj/submit/video": {"action": "extend", "index": 0, "prompt": "a cat"},
}


def _task_requests(web: WebProcess, task_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, url, json body) of every route that names a task: in its path or as `taskId`."""
    requests: list[tuple[str, str, dict[str, Any] | None]] = []
    for method, route, handler in _routes(web):
        if "{task_id" in route.path:
            requests.append((method, _url(route, task_id), None if method == "GET" else {}))
            continue
        if method != "POST" or not route.path.startswith("/mj/"):
            continue
        data = handler.parsed_fn_signature.parameters.get("data")
        names = {f.encode_name for f in msgspec.structs.fields(data.annotation)} if data else set()
        if "taskId" in names:
            assert route.path in _BODY_FIELDS, f"add {route.path} to _BODY_FIELDS"
            requests.append((method, route.path, {"taskId": task_id, **_BODY_FIELDS[route.path]}))
    requests.append(("POST", "/mj/submit/simple-change", {"content": f"{task_id} U1"}))
    return requests


@pytest.mark.parametrize("task_id", [UNKNOWN_ID, "9" * 3000], ids=["snowflake", "3000 digits"])
async def test_an_unknown_task_gets_one_answer_on_every_route(
    client: httpx.AsyncClient, web: WebProcess, task_id: str
) -> None:
    requests = _task_requests(web, task_id)
    assert {"/mj/submit/action", "/mj/submit/modal", "/mj/submit/change"} <= {u for _, u, _ in requests}
    for method, url, body in requests:
        response = await client.request(method, url, json=body)
        # a GET names the task in its path: HTTP's 404; a POST answers in the body, in a 200
        assert response.status_code == (404 if method == "GET" else 200), (method, url, response.text)
        assert response.json() == {
            "code": 4,
            "description": _one_answer(task_id),
            "result": None,
            "properties": {},
        }, (method, url)


async def test_an_unknown_account_is_404_code_4(client: httpx.AsyncClient) -> None:
    response = await client.get("/mj/account/zz/fetch")
    assert response.status_code == 404
    assert response.json()["code"] == 4 and response.json()["description"] == "account 'zz' not found"


async def test_echoed_input_is_cut_to_200_characters(client: httpx.AsyncClient, store: TaskStore) -> None:
    await store.create(
        Task(id="1700000000000001", action=TaskAction.IMAGINE, prompt="a cat", instance_id="a1")
    )
    await store.transition("1700000000000001", TaskStatus.SUBMITTED, progress="0%")
    await store.transition(
        "1700000000000001", TaskStatus.SUCCESS, progress="100%", buttons=[Button(custom_id="MJ::X")]
    )
    huge = "7" * 100_000
    # (path, body, whether the description quotes the value: its first 200 characters)
    cases: list[tuple[str, dict[str, Any], bool]] = [
        ("/mj/submit/action", {"taskId": huge, "customId": "MJ::X"}, True),
        ("/mj/submit/modal", {"taskId": huge}, True),
        ("/mj/submit/simple-change", {"content": f"{huge} U1"}, True),
        ("/mj/submit/action", {"taskId": "1700000000000001", "customId": huge}, True),
        ("/mj/submit/action", {"taskId": "1700000000000001", "customId": huge + "::JOB"}, True),
        ("/mj/submit/imagine", {"prompt": "a cat", "botType": huge}, False),
        ("/mj/submit/change", {"taskId": "1", "action": huge}, False),
        ("/mj/submit/imagine", {"prompt": "a cat", "accountFilter": {"modes": [huge]}}, False),
    ]
    for path, body, quoted in cases:
        response = await client.post(path, json=body)
        description = response.json()["description"]
        assert response.status_code in (200, 400) and response.json()["code"] == 4, (path, description)
        assert "7" * 201 not in description, (path, len(description), description[:300])
        assert len(description) < 400, (path, len(description))
        if quoted:
            assert "7" * 200 in description, (path, description)


@pytest.mark.parametrize("prompt", ["a ｎｓｆｗ cat", "a ns\u200bfw cat", "a ns\u00adfw cat", "a nѕfw cat"])
async def test_banned_word_evasions_are_refused_at_submit(client: httpx.AsyncClient, prompt: str) -> None:
    # the session web's banned words are "forbidden" and "bad word"
    evasive = prompt.replace("nsfw", "forbidden").replace("ｎｓｆｗ", "ｆｏｒｂｉｄｄｅｎ")
    evasive = evasive.replace("ns\u200bfw", "forbid\u200bden").replace("ns\u00adfw", "forbid\u00adden")
    evasive = evasive.replace("nѕfw", "fоrbiddеn")  # Cyrillic o and e
    assert "forbidden" not in evasive
    reply = (await client.post("/mj/submit/imagine", json={"prompt": evasive})).json()
    assert reply["code"] == 24, reply
    assert reply["properties"]["promptEn"] == evasive
