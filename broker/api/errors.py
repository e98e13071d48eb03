"""The one place that turns exceptions into HTTP replies; routes never build error bodies.

- `BrokerError` -> HTTP 200 + `SubmitResult` with the error's code (midjourney-proxy's contract);
- litestar's `ValidationException` and malformed JSON -> 400 `{"code": 4, "description": ...}`;
- other HTTP errors (404, 405, 413, ...) -> their status with `{"code": <status>, ...}`;
- Redis unreachable (connection refused or lost, no reply in time, still loading its data) -> 503
  `{"code": 9, "description": ...}` with `Retry-After`: the one exception to "always 200", since
  nothing can be admitted or read; no traceback is logged for it (it is not our fault);
- anything else -> 500 `{"code": 9, "description": "internal error"}`, logged with its traceback
  (exception texts never carry secrets: settings and accounts redact themselves).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.errors import BrokerError
from broker.models import ReturnCode, SubmitResult
from broker.store import InvalidTransition

__all__ = ["EXCEPTION_HANDLERS", "RETRY_AFTER_SECONDS"]

log = logging.getLogger(__name__)


class _HttpErrorBody(msgspec.Struct):
    """The body of an HTTP error that has no midjourney-proxy code (404, 405, 413...): `code` is the
    HTTP status, as litestar's own error bodies give it."""

    code: int
    description: str
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


def _reply(
    status: int, code: ReturnCode, description: str, properties: dict[str, Any] | None = None
) -> Response[Any]:
    return Response(
        SubmitResult(code=code, description=description, properties=properties or {}),
        status_code=status,
        media_type=MediaType.JSON,
    )


def _broker_error(_: Request[Any, Any, Any], exc: BrokerError) -> Response[Any]:
    return _reply(200, exc.code, exc.message, exc.properties)


def _transition(_: Request[Any, Any, Any], exc: InvalidTransition) -> Response[Any]:
    # Someone else (the bridge, another request) moved the task first.
    return _reply(200, ReturnCode.VALIDATION_ERROR, f"task {exc.task_id} is {exc.old} now")


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    details = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key, message = item.get("key"), item.get("message")
            details.append(f"{message} (at {key})" if key else str(message))
    text = "; ".join(d for d in details if d) or str(exc.detail)
    return _reply(400, ReturnCode.VALIDATION_ERROR, f"Invalid request body: {text}"[:1000])


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("HTTP %s: %s", status, exc.detail)
        return _reply(status, ReturnCode.FAILURE, "internal error")
    description = str(exc.detail)[:1000]
    if status == 400:
        return _reply(status, ReturnCode.VALIDATION_ERROR, description)
    return Response(_HttpErrorBody(status, description), status_code=status, media_type=MediaType.JSON)


#: seconds a client is told to wait before retrying while Redis is unreachable
RETRY_AFTER_SECONDS = 2


def _redis_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return Response(
        SubmitResult(
            code=ReturnCode.FAILURE,
            description="the broker's Redis is unreachable; nothing was done, retry shortly",
        ),
        status_code=503,
        media_type=MediaType.JSON,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _reply(500, ReturnCode.FAILURE, "internal error")


EXCEPTION_HANDLERS: MutableMapping[
    int | type[Exception], Callable[[Request[Any, Any, Any], Any], Response[Any]]
] = {
    BrokerError: _broker_error,
    InvalidTransition: _transition,
    ValidationException: _validation,
    HTTPException: _http,
    RedisConnectionError: _redis_down,
    RedisTimeoutError: _redis_down,
    Exception: _internal,
}
