"""What the web sees of every request: the access log line and the submit counter.

One ASGI middleware, outermost, so it sees every answer, the door's 401s and the error handlers'
replies included:

- the access log (`broker.api.access_log`): one line per request, ``<method> <path> <status>
  <ms>ms``, with ``code=<code> task=<id>`` after the status for a submit. The query string is left
  out (a client may put something private there); the path is cut to 200 characters (and quoted
  when it holds control characters, so one request is always one line);
- ``mjbroker_tasks_submitted_total{action, code}`` for the submit routes: the code is read from the
  reply's JSON (every submit reply, errors included, is ``{"code", ...}``), the action from the
  route: the task's action for the routes that make one kind of task (``IMAGINE``, ``DESCRIBE``,
  ``BLEND``, ``SHORTEN``, ``SWAP_FACE``), else ``ACTION`` (a button: ``/submit/action``, ``/change``,
  ``/simple-change``), ``MODAL`` or ``UPLOAD``.

It costs two clock reads and, with the access log on, one string per request; a submit's reply,
a few hundred bytes, is decoded for its code and task id. No Redis round trip.
"""

from __future__ import annotations

import time

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter

from broker.api.access_log import AccessLog
from broker.metrics import Metrics

__all__ = ["observe_middleware", "submit_action"]

_SUBMIT_ACTIONS = {
    "imagine": "IMAGINE",
    "describe": "DESCRIBE",
    "blend": "BLEND",
    "shorten": "SHORTEN",
    "swap": "SWAP_FACE",
    "action": "ACTION",
    "change": "ACTION",
    "simple-change": "ACTION",
    "modal": "MODAL",
    "upload-discord-images": "UPLOAD",
}


class _Reply(msgspec.Struct):
    code: int | None = None
    result: str | list[str] | None = None


_reply = msgspec.json.Decoder(_Reply)


def submit_action(method: str, path: str) -> str | None:
    """The action label of a submit route (see the module), or None for any other request."""
    if method != "POST" or not ("/mj/submit/" in path or path.endswith("/mj/insight-face/swap")):
        return None
    return _SUBMIT_ACTIONS.get(path.rstrip("/").rsplit("/", 1)[-1])


def _reply_of(body: bytes) -> tuple[str, str | None]:
    """The reply's code (``none`` when it has none) and the id of the task it made (`result`)."""
    try:
        reply = _reply.decode(body)
    except msgspec.DecodeError:
        return "none", None
    task_id = reply.result if isinstance(reply.result, str) and reply.result.isalnum() else None
    return (str(reply.code) if reply.code is not None else "none"), task_id


def observe_middleware(metrics: Metrics, *, access: AccessLog | None) -> type:
    """An ASGI middleware class (litestar builds it with `app=`) that logs and counts requests.

    :param access: where the access lines go; None: no access log.
    """
    submitted = metrics.submitted
    # one child per (action, code) seen, looked up without the counter's lock
    children: dict[tuple[str, str], Counter] = {}

    def count(action: str, code: str) -> None:
        child = children.get((action, code))
        if child is None:
            child = children[(action, code)] = submitted.labels(action, code)
        child.inc()

    class ObserveMiddleware:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await self.app(scope, receive, send)
                return
            method, path = scope["method"], scope["path"]
            action = submit_action(method, path)
            if action is None and access is None:
                # nothing to count or log: the metrics cost a request that is not a submit nothing
                await self.app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500
            body = bytearray()

            async def watch(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif action is not None and message["type"] == "http.response.body":
                    body.extend(message.get("body", b""))
                await send(message)

            try:
                await self.app(scope, receive, watch)
            finally:
                about = ""
                if action is not None:
                    code, task_id = _reply_of(bytes(body))
                    count(action, code)
                    about = f" code={code}" + (f" task={task_id}" if task_id else "")
                if access is not None:
                    ms = (time.perf_counter() - started) * 1000
                    shown = path[:200] if path.isprintable() else repr(path[:200])
                    access.add(f"{method} {shown} {status}{about} {ms:.1f}ms")

    return ObserveMiddleware
