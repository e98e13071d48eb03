"""The request class of the app: a body the JSON decoder refuses is the client's fault, always.

Litestar turns msgspec's `DecodeError` into a 400, but msgspec also raises `UnicodeDecodeError` for
invalid UTF-8 and `RecursionError` for nesting deeper than the interpreter's recursion limit (about
1,000 levels on Python 3.11, where C and Python share it); both would reach the catch-all handler
as a 500 with a traceback. Here they become litestar's `SerializationException`, which its HTTP
route turns into a 400 like any other malformed body (`broker.api.errors` gives it code 4). Only
the decode of the request body is covered: the same exceptions raised by our own code stay 500s.

The body is also checked against the route's `data` type in msgspec's strict mode: litestar
converts it in lax mode, which takes `0` or `"true"` for a boolean and `"1"` for an integer, so a
body the OpenAPI schema calls invalid would be accepted. Strict conversion refuses it (400); the
Struct it builds is what the handler gets (litestar passes an instance of the type through).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException

__all__ = ["ApiRequest"]


class ApiRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            value = await super().json()
        except UnicodeDecodeError:
            raise SerializationException("the body is not valid UTF-8") from None
        except RecursionError:
            raise SerializationException("the body is nested too deeply") from None
        data = self.route_handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            return value
        try:
            return msgspec.convert(value, data.annotation, strict=True)
        except msgspec.ValidationError as exc:
            raise SerializationException(str(exc)) from None
        except RecursionError:
            raise SerializationException("the body is nested too deeply") from None
