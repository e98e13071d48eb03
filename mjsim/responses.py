"""JSON responses exactly as discord.py-self needs them (``Content-Type: application/json``, no charset)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

__all__ = ["RestError", "error", "form_error", "json", "no_content"]


def json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # aiohttp's json_response appends "; charset=utf-8", which makes discord.py-self treat the body as text.
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def error(status: int, code: int, message: str) -> web.Response:
    return json({"code": code, "message": message}, status=status)


def form_error(path: list[str], code: str, message: str) -> web.Response:
    """400 Invalid Form Body with the nested ``errors`` tree Discord uses."""
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        tree = {key: tree}
    return json({"code": 50035, "errors": tree, "message": "Invalid Form Body"}, status=400)


class RestError(Exception):
    """Raised by a REST route to answer with ``response`` (the REST middleware sends it)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response
