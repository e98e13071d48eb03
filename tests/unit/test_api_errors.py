"""The exception handlers and the request class, on an in-process app (litestar's test client)."""

from __future__ import annotations

import logging

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.testing import TestClient, create_test_client

from broker.api.body import ApiRequest
from broker.api.errors import EXCEPTION_HANDLERS
from broker.errors import ECHO_LIMIT, TaskNotFound, ValidationFailed, cut, echo

_EMPTY = {"result": None, "properties": {}}


class _Body(msgspec.Struct):
    flag: bool = False


@post("/body", status_code=200)
async def _body(data: _Body) -> dict[str, bool]:
    return {"flag": data.flag}


@post("/forgot", status_code=200)
async def _forgot() -> None:
    raise ValidationFailed(f"a message that quotes {'9' * 100_000} without echo")


@get("/bug")
async def _bug() -> None:
    raise RuntimeError("a bug of ours")


@get("/recursion")
async def _recursion() -> None:
    # the same exception the body decoder may raise, but from our own code: still our fault
    raise RecursionError("ours")


@get("/task/{task_id:str}")
async def _task(task_id: str) -> None:
    raise TaskNotFound(task_id)


@post("/task/{task_id:str}", status_code=200)
async def _task_post(task_id: str) -> None:
    raise TaskNotFound(task_id)


def _client() -> TestClient[Litestar]:
    return create_test_client(
        [_body, _forgot, _bug, _recursion, _task, _task_post],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=ApiRequest,
        logging_config=None,
    )


def test_our_own_faults_are_500_code_9_logged_once_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _client() as client, caplog.at_level(logging.ERROR):
        for path in ("/bug", "/recursion"):
            caplog.clear()
            response = client.get(path)
            assert response.status_code == 500
            assert response.json() == {
                "code": 9,
                "description": "internal error",
                "result": None,
                "properties": {},
            }
            records = [r for r in caplog.records if r.exc_info]
            assert len(records) == 1, caplog.records


def test_bodies_the_decoder_refuses_are_400_without_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    bodies = [b'{"flag": "\xff"}', b"[" * 5000, b'{"flag": 1}', b'{"flag": "true"}', b"null", b"{"]
    with _client() as client, caplog.at_level(logging.DEBUG):
        for body in bodies:
            response = client.post("/body", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, (body[:20], response.text)
            assert response.json()["code"] == 4, response.text
        assert client.post("/body", content=b'{"flag": true}').json() == {"flag": True}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


def test_an_unknown_task_is_404_on_a_get_and_200_on_a_post() -> None:
    with _client() as client:
        got, posted = client.get("/task/42"), client.post("/task/42")
    assert (got.status_code, posted.status_code) == (404, 200)
    assert (
        got.json()
        == posted.json()
        == {
            "code": 4,
            "description": "task '42' not found",
            "result": None,
            "properties": {},
        }
    )


def test_echo_cuts_to_the_limit() -> None:
    assert echo("abc") == "'abc'"
    assert echo(12) == "'12'"
    long = "x" * 100_000
    assert echo(long) == repr("x" * ECHO_LIMIT) + "…"
    assert cut("abc") == "abc" and cut(long) == "x" * ECHO_LIMIT + "…"


def test_a_description_that_forgot_echo_is_still_cut() -> None:
    with _client() as client:
        description = client.post("/forgot").json()["description"]
    assert len(description) == 2 * ECHO_LIMIT + 1 and description.endswith("…")
