"""The one place that turns exceptions into HTTP replies; routes never build error bodies.

Every error body is `{"code", "description", "result", "properties"}` with a code of the README's
table:

- `BrokerError` -> HTTP 200 + its code (midjourney-proxy's contract), except `NotFound` on a GET:
  that route names the task or account in its path, so an unknown one is HTTP 404 (code 4);
- litestar's `ValidationException` and any body the decoder refuses (malformed JSON, invalid UTF-8,
  deep nesting: see `broker.api.body`) -> 400, code 4;
- other client errors (404, 405, 413, ...) -> their status, code 4, with their headers (`Allow`);
- Redis unreachable (connection refused or lost, no reply in time, still loading its data) -> 503,
  code 9, with `Retry-After`: the one exception to "always 200", since nothing can be admitted or
  read; no traceback is logged for it (it is not our fault);
- anything else is our fault -> 500, code 9 "internal error", logged once with its traceback
  (exception texts never carry secrets: settings and accounts redact themselves).

What a description quotes of the request is cut to `broker.errors.ECHO_LIMIT` characters: ours by
`broker.errors.echo`, litestar's and msgspec's messages (which may quote a value) by `cut`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.errors import ECHO_LIMIT, BrokerError, NotFound, cut
from broker.models import ReturnCode, SubmitResult
from broker.redis_client import NotDurable
from broker.store import InvalidTransition

__all__ = ["EXCEPTION_HANDLERS", "RETRY_AFTER_SECONDS"]

log = logging.getLogger(__name__)

_DESCRIPTION_LIMIT = 2 * ECHO_LIMIT


def _reply(
    status: int,
    code: ReturnCode,
    description: str,
    properties: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        SubmitResult(code=code, description=description, properties=properties or {}),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _broker_error(request: Request[Any, Any, Any], exc: BrokerError) -> Response[Any]:
    status = 404 if isinstance(exc, NotFound) and request.method == "GET" else 200
    # Messages quote input through `echo`; the cut is a net for one that forgot (room for an echo
    # and the message's own words), so no request is ever sent back whole.
    return _reply(status, exc.code, cut(exc.message, _DESCRIPTION_LIMIT), exc.properties)


def _transition(_: Request[Any, Any, Any], exc: InvalidTransition) -> Response[Any]:
    # Someone else (the bridge, another request) moved the task first.
    return _reply(200, ReturnCode.VALIDATION_ERROR, f"task {exc.task_id} is {exc.old} now")


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    details = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key, message = item.get("key"), item.get("message")
            text = cut(str(message))
            details.append(f"{text} (at {cut(str(key))})" if key else text)
    text = "; ".join(d for d in details[:5] if d) or cut(str(exc.detail))
    return _reply(400, ReturnCode.VALIDATION_ERROR, f"Invalid request body: {text}")


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("HTTP %s: %s", status, exc.detail)
        return _reply(status, ReturnCode.FAILURE, "internal error")
    description = cut(str(exc.detail))
    if status == 400:
        description = f"Invalid request body: {description}"
    return _reply(status, ReturnCode.VALIDATION_ERROR, description, headers=exc.headers)


#: seconds a client is told to wait before retrying while Redis is unreachable
RETRY_AFTER_SECONDS = 2


def _redis_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return _reply(
        503,
        ReturnCode.FAILURE,
        "the broker's Redis is unreachable; nothing was done, retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _not_durable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Unlike an unreachable Redis, the writes may have been applied: say only what is known.
    log.warning("Redis did not confirm durability on %s %s: %s", request.method, request.url.path, exc)
    return _reply(
        503,
        ReturnCode.FAILURE,
        "the broker's Redis could not confirm the write as durable in time (redis.durability: "
        "its AOF fsync or a replica); nothing was acknowledged, retry shortly",
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
    NotDurable: _not_durable,
    Exception: _internal,
}
