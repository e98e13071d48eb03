"""The door of every request: CORS and the api key check, in one ASGI pass over the headers.

Keys come as `mj-api-secret`, `Authorization: Bearer <key>` or a bare `Authorization: <key>`. Every
configured key is compared in constant time (no early exit), so timing tells nothing about which key
or how much of it matched. No keys configured = open. CORS preflights (browser front ends send the
custom `mj-api-secret` header), the OpenAPI schema and the health probes pass without a key. CORS
lives here rather than in litestar's middleware so a request parses its headers once (the fetch hot
path).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from broker.config import ApiKey

__all__ = ["door_middleware"]

# code 4 as every client error (README's code table), with HTTP 401
#: answered without an api key: the schema, and the probes of load balancers (`broker.api.health`)
_OPEN_PATHS = ("/schema", "/health", "/ready")

_BODY_MISSING = (
    b'{"code":4,"description":"Missing api secret: send the mj-api-secret header",'
    b'"result":null,"properties":{}}'
)
_BODY_WRONG = b'{"code":4,"description":"Invalid api secret","result":null,"properties":{}}'
_ALLOW_HEADERS = b"mj-api-secret, authorization, content-type"
_ALLOW_METHODS = b"GET, POST, OPTIONS"


def _match(keys: Sequence[tuple[bytes, str]], given: str) -> str | None:
    candidate = given.encode("utf-8", "surrogateescape")
    found = None
    for secret, name in keys:
        if hmac.compare_digest(secret, candidate) and found is None:
            found = name
    return found


def door_middleware(
    api_keys: Sequence[ApiKey], cors_origins: Sequence[str], *, open_metrics: bool = True
) -> type:
    """An ASGI middleware class (litestar builds it with `app=`): CORS, then the key check.

    :param open_metrics: `/metrics` needs no key (``server.metrics_requires_key: false``).
    """
    keys = [(k.secret.encode(), k.name) for k in api_keys]
    open_paths = (*_OPEN_PATHS, "/metrics") if open_metrics else _OPEN_PATHS
    any_origin = "*" in cors_origins
    origins = {o.encode() for o in cors_origins}

    def allowed(origin: bytes) -> bytes | None:
        if any_origin:
            return b"*"
        return origin if origin in origins else None

    class DoorMiddleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await self.app(scope, receive, send)
                return
            secret: bytes | None = None
            auth: bytes | None = None
            origin: bytes | None = None
            preflight = False
            for name, value in scope["headers"]:
                if name == b"mj-api-secret":
                    secret = value
                elif name == b"authorization":
                    auth = value
                elif name == b"origin":
                    origin = value
                elif name == b"access-control-request-method":
                    preflight = True
            allow = allowed(origin) if origin is not None else None
            if preflight and scope["method"] == "OPTIONS":
                headers = [(b"access-control-max-age", b"600"), (b"vary", b"Origin")]
                if allow is not None:
                    headers += [
                        (b"access-control-allow-origin", allow),
                        (b"access-control-allow-methods", _ALLOW_METHODS),
                        (b"access-control-allow-headers", _ALLOW_HEADERS),
                    ]
                await _answer(send, 204 if allow is not None else 400, headers, b"")
                return
            if allow is not None:
                send = _with_origin(send, allow)
            if keys and not scope["path"].startswith(open_paths):
                given = _given(secret, auth)
                key_name = _match(keys, given) if given else None
                if key_name is None:
                    body = _BODY_MISSING if not given else _BODY_WRONG
                    await _answer(send, 401, [(b"content-type", b"application/json")], body)
                    return
                scope["mjb_key"] = key_name  # type: ignore[typeddict-unknown-key]
            await self.app(scope, receive, send)

    return DoorMiddleware


def _given(secret: bytes | None, auth: bytes | None) -> str | None:
    if secret is not None:
        return secret.decode("latin-1").strip()
    if auth is None:
        return None
    text = auth.decode("latin-1").strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text


def _with_origin(send: Send, allow: bytes) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((b"access-control-allow-origin", allow))
            if allow != b"*":
                headers.append((b"vary", b"Origin"))
            message["headers"] = headers
        await send(message)

    return wrapped


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
