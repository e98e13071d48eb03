"""`GET /mj/admin/session`: which admin key a request is signed in with (header or cookie).

The status page asks it first; scripts can use it to check a key before they change anything.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get

from broker.api.context import api_key_name

__all__ = ["ADMIN_SESSION_HANDLERS", "AdminSession"]


class AdminSession(msgspec.Struct, kw_only=True):
    #: the api key's name; None when no keys are configured (everything is open)
    key: str | None
    role: str = "admin"


@get("/mj/admin/session", include_in_schema=False)
async def admin_session(request: Request[Any, Any, Any]) -> AdminSession:
    # the door lets only admin keys (or anyone, with no keys configured) this far
    return AdminSession(key=api_key_name(request))


ADMIN_SESSION_HANDLERS = [admin_session]
