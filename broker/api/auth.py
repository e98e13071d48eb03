"""The door of every request: CORS, the api key check and the admin rule, in one ASGI pass over the headers.

Keys come as `mj-api-secret`, `Authorization: Bearer <key>` or a bare `Authorization: <key>`; a
browser signed in at `/admin/login` sends the `mjb_session` cookie instead (GET and HEAD only, see
`broker.api.sessions`). The admin routes (`/mj/admin/...` and the status page under `/admin`) need
a key with `role: admin`; a client key gets 403 there. Every
configured key is compared in constant time (no early exit), so timing tells nothing about which key
or how much of it matched. No keys configured = open. CORS preflights (browser front ends send the
custom `mj-api-secret` header), the OpenAPI schema and the health probes pass without a key, and
the stored images and videos (`/mj/image/...`, `/mj/video/...`) have a door of their own
(`broker.api.image_routes`). CORS lives here rather than in litestar's middleware so a request
parses its headers once (the fetch hot path).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

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

from broker.api.image_routes import STORE_PATHS, store_door
from broker.api.sessions import COOKIE_NAME, session_key
from broker.config import ApiKey, Settings

__all__ = ["door_middleware", "match_secret"]

# code 4 as every client error (README's code table), with HTTP 401
#: answered without an api key: the schema, the probes of load balancers (`broker.api.health`), and
#: the status page's sign-in, sign-out and static files (`broker.api.admin_page`)
_OPEN_PATHS = ("/schema", "/health", "/ready", "/admin/login", "/admin/logout", "/admin/assets/")

_BODY_MISSING = (
    b'{"code":4,"description":"Missing api secret: send the mj-api-secret header",'
    b'"result":null,"properties":{}}'
)
_BODY_WRONG = b'{"code":4,"description":"Invalid api secret","result":null,"properties":{}}'
_BODY_NOT_ADMIN = (
    b'{"code":4,"description":"This route needs an api key with role admin","result":null,"properties":{}}'
)
_COOKIE_PREFIX = COOKIE_NAME.encode() + b"="
_ALLOW_HEADERS = b"mj-api-secret, authorization, content-type"
_ALLOW_METHODS = b"GET, POST, OPTIONS"


def match_secret(keys: Sequence[tuple[bytes, str]], given: str) -> str | None:
    """The name of the key whose secret is `given`, comparing every key in constant time."""
    candidate = given.encode("utf-8", "surrogateescape")
    found = None
    for secret, name in keys:
        if hmac.compare_digest(secret, candidate) and found is None:
            found = name
    return found


class _Keys:
    """The lookup tables of one `api_keys` tuple (rebuilt when a config reload changes it)."""

    def __init__(self, api_keys: Sequence[ApiKey]) -> None:
        self.secrets = [(k.secret.encode(), k.name) for k in api_keys]
        self.admins = {k.name for k in api_keys if k.role == "admin"}
        self.by_name = {k.name: k.secret for k in api_keys}


def door_middleware(settings: Callable[[], Settings]) -> type:
    """An ASGI middleware class (litestar builds it with `app=`): CORS, then the key check.

    :param settings: the settings in force, asked on every request so that api keys, CORS origins
        and `server.metrics_requires_key` changed in config.yaml apply without a restart.
    """
    seen: Settings | None = None
    tables = _Keys(())
    any_origin = False
    origins: set[bytes] = set()
    open_paths: tuple[str, ...] = _OPEN_PATHS

    def current_keys() -> _Keys:
        # a reload replaces the whole Settings: derive the tables again only then
        nonlocal seen, tables, any_origin, origins, open_paths
        now = settings()
        if now is not seen:
            seen = now
            tables = _Keys(now.api_keys)
            any_origin = "*" in now.server.cors_origins
            origins = {o.encode() for o in now.server.cors_origins}
            # `/metrics` needs no key unless server.metrics_requires_key
            open_paths = _OPEN_PATHS if now.server.metrics_requires_key else (*_OPEN_PATHS, "/metrics")
        return tables

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
            if scope["path"].startswith(STORE_PATHS):
                await store_door(self.app, scope, receive, send)  # public, CORS for any origin
                return
            keys = current_keys()
            secret: bytes | None = None
            auth: bytes | None = None
            origin: bytes | None = None
            cookie: bytes | None = None
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
                elif name == b"cookie":
                    cookie = value
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
            path = scope["path"]
            if keys.secrets and not path.startswith(open_paths):
                given = _given(secret, auth)
                key_name = match_secret(keys.secrets, given) if given else None
                if key_name is None and not given and cookie and scope["method"] in ("GET", "HEAD"):
                    key_name = _from_cookie(cookie, keys.by_name)
                if key_name is None and not given and _browsing(path, scope["method"]):
                    # a browser without a session opens the status page: show it the sign-in form
                    await _answer(send, 303, [(b"location", b"/admin/login")], b"")
                    return
                if key_name is None:
                    body = _BODY_MISSING if not given else _BODY_WRONG
                    await _answer(send, 401, [(b"content-type", b"application/json")], body)
                    return
                if key_name not in keys.admins and _is_admin(path):
                    await _answer(send, 403, [(b"content-type", b"application/json")], _BODY_NOT_ADMIN)
                    return
                scope["mjb_key"] = key_name  # type: ignore[typeddict-unknown-key]
            await self.app(scope, receive, send)

    return DoorMiddleware


def _is_admin(path: str) -> bool:
    # Anywhere in the path, not only at its start: a route alias (such as the /mj-fast prefixes of
    # the client routes) given to an admin route by mistake must not open it to client keys.
    return "/mj/admin/" in path or path.lstrip("/").startswith("admin")


def _browsing(path: str, method: str) -> bool:
    return method in ("GET", "HEAD") and (path == "/admin" or path.startswith("/admin/"))


def _given(secret: bytes | None, auth: bytes | None) -> str | None:
    if secret is not None:
        return secret.decode("latin-1").strip()
    if auth is None:
        return None
    text = auth.decode("latin-1").strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text


def _from_cookie(header: bytes, secrets_by_name: dict[str, str]) -> str | None:
    for part in header.split(b";"):
        part = part.strip()
        if part.startswith(_COOKIE_PREFIX):
            return session_key(part[len(_COOKIE_PREFIX) :].decode("latin-1"), secrets_by_name)
    return None


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
