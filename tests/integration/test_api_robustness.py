"""Bad input never gives a 500, errors keep one shape, and no secret ever leaves the process."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from api_support import API_SECRET, AUTH, HOOK_SECRET, TOKEN_A1, WebProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

POST_ROUTES = [
    "/mj/submit/imagine",
    "/mj/submit/action",
    "/mj/submit/modal",
    "/mj/submit/describe",
    "/mj/submit/blend",
    "/mj/submit/shorten",
    "/mj/submit/change",
    "/mj/submit/simple-change",
    "/mj/submit/upload-discord-images",
    "/mj/insight-face/swap",
    "/mj/task/list-by-condition",
]


@pytest.fixture
async def client(web: WebProcess, redis: aioredis.Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=60) as c:
        yield c


def assert_api_shape(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if not response.content:
        return
    body = response.json()
    if isinstance(body, list):
        return
    assert isinstance(body, dict), body
    if "code" in body and "description" in body:
        assert isinstance(body["code"], int) and isinstance(body["description"], str)
        if response.status_code != 200:
            assert body["code"] == 4
    else:
        assert response.status_code == 200 and "id" in body  # a task or an account


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/mj/submit/imagine", b"{not json"),
        ("/mj/submit/imagine", b""),
        ("/mj/submit/imagine", b"[1,2]"),
        ("/mj/submit/imagine", b'{"prompt": 5}'),
        ("/mj/submit/imagine", b'{"prompt": "x", "base64Array": "abc"}'),
        ("/mj/submit/imagine", b'{"prompt": "x", "botType": "DALL_E"}'),
        ("/mj/submit/action", b'{"taskId": "1"}'),
        ("/mj/submit/blend", b'{"base64Array": ["a", "b"], "dimensions": null}'),
        ("/mj/task/list-by-condition", b'{"ids": [1, 2]}'),
        ("/mj/task/list-by-condition", b'{"ids": "abc"}'),
    ],
)
async def test_malformed_bodies_give_400_in_the_api_shape(
    client: httpx.AsyncClient, path: str, content: bytes
) -> None:
    response = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 4 and body["description"]


async def test_ten_megabyte_prompt_is_a_clean_code_4(client: httpx.AsyncClient) -> None:
    response = await client.post("/mj/submit/imagine", json={"prompt": "a" * 10_000_000})
    assert response.status_code == 200 and response.json()["code"] == 4


async def test_body_over_the_limit_is_413(web: WebProcess) -> None:
    # Announce a body over server.max_body_bytes; the server answers before reading it.
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    writer.write(
        b"POST /mj/submit/imagine HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"mj-api-secret: " + API_SECRET.encode() + b"\r\nContent-Length: 40000000\r\n\r\n{"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 413")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    assert length is not None, head
    body = json.loads(await asyncio.wait_for(reader.readexactly(int(length.group(1))), 10))
    assert body["code"] == 4 and body["description"], body
    writer.close()


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    nothing = await client.get("/mj/nothing")
    assert (nothing.status_code, nothing.json()["code"]) == (404, 4)
    wrong = await client.get("/mj/submit/imagine")
    assert (wrong.status_code, wrong.json()["code"]) == (405, 4)
    assert "POST" in wrong.headers["allow"]


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False)
        | st.text(max_size=40)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )


def _bodies(schema: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    """Objects with the route's field names (from the OpenAPI schema) holding any JSON, or any JSON."""
    ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    fields = sorted(schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])
    typed = st.fixed_dictionaries({}, optional={name: _json_values() for name in fields})
    return typed | _json_values()


def test_generated_bodies_never_give_a_500(web: WebProcess) -> None:
    with httpx.Client(base_url=web.url, headers=AUTH, timeout=30) as c:
        schema = c.get("/schema/openapi.json").json()
        strategy = st.tuples(st.sampled_from(POST_ROUTES), st.data())

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(strategy)
        def check(case: tuple[str, st.DataObject]) -> None:
            path, data = case
            body = data.draw(_bodies(schema, path))
            assert_api_shape(c.post(path, content=json.dumps(body).encode()))

        check()
        for path in ("/mj/task/%00/fetch", "/mj/task/" + "9" * 500 + "/fetch", "/mj/task/x/image-seed"):
            assert_api_shape(c.get(path))


async def test_no_secret_in_any_response_or_log_line(client: httpx.AsyncClient, web: WebProcess) -> None:
    texts = []
    for method, path, body in [
        ("GET", "/mj/account/list", None),
        ("GET", "/mj/account/a1/fetch", None),
        ("GET", "/mj/task/list", None),
        ("POST", "/mj/submit/imagine", {"prompt": "a cat"}),
        ("POST", "/mj/submit/imagine", {"prompt": 1}),
        ("POST", "/mj/submit/action", {"taskId": "1", "customId": "x"}),
        ("GET", "/schema/openapi.json", None),
    ]:
        response = await client.request(method, path, json=body)
        texts.append(response.text + str(response.headers))
    async with httpx.AsyncClient(base_url=web.url) as anon:
        texts.append((await anon.get("/mj/task/list", headers={"mj-api-secret": API_SECRET[:-1]})).text)
    everything = "\n".join([*texts, web.log()])
    for secret in (TOKEN_A1, API_SECRET, HOOK_SECRET):
        assert secret not in everything
