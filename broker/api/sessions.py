"""Browser sessions of the status page: a signed cookie instead of a header on every request.

A browser cannot send `mj-api-secret` when it follows a link, so `/admin/login` trades an admin key
for a cookie `<key name>.<expiry ms>.<mac>`, where the mac is HMAC-SHA256 keyed by that api key's
own secret. Nothing is stored: every web process checks a cookie with the config it already has,
and revoking or rotating the key ends its sessions at once. The door accepts the cookie on GET and
HEAD only (a cookie rides along on cross-site form posts; changes need the key in a header).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from broker.clock import now_ms

__all__ = ["COOKIE_NAME", "SESSION_SECONDS", "cookie_value", "session_key"]

COOKIE_NAME = "mjb_session"
#: a signed-in browser stays signed in this long
SESSION_SECONDS = 12 * 3600


def _mac(secret: str, name: str, expires_ms: int) -> str:
    message = f"{name}.{expires_ms}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def cookie_value(name: str, secret: str, *, now: int | None = None) -> str:
    """The cookie for a signed-in key `name` (whose secret is `secret`)."""
    expires_ms = (now_ms() if now is None else now) + SESSION_SECONDS * 1000
    return f"{name}.{expires_ms}.{_mac(secret, name, expires_ms)}"


def session_key(value: str, secrets_by_name: Mapping[str, str], *, now: int | None = None) -> str | None:
    """The key name a cookie value stands for, or None when it is forged, expired or its key is gone."""
    head, _, mac = value.rpartition(".")
    name, _, expires = head.rpartition(".")
    if not name or not expires.isdigit():
        return None
    secret = secrets_by_name.get(name)
    if secret is None or not hmac.compare_digest(_mac(secret, name, int(expires)), mac):
        return None
    if int(expires) <= (now_ms() if now is None else now):
        return None
    return name
