"""Signed, expiring CDN links, as Discord's: ``?ex=<hex expiry>&is=<hex issue>&hm=<hmac>&``.

Every link the simulator hands out is signed for `SimSettings.cdn_link_seconds`; the CDN serves a
signed path only while its signature holds and it has not expired, and answers 404 "This content
is no longer available." otherwise (Discord's answer). A link without a query is served unless
`SimSettings.cdn_require_signature` is set. Routes:

- ``POST /api/v9/attachments/refresh-urls`` ``{"attachment_urls": [...]}`` ->
  ``{"refreshed_urls": [{"original", "refreshed"}]}``: fresh links (signed for
  `cdn_refresh_seconds`) for the simulator's own paths; other URLs are left out, as Discord does;
- ``POST /_sim/cdn/expire``: every link handed out so far expires now;
- ``GET /_sim/cdn``: how many links were refreshed and refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from mjsim import responses

if TYPE_CHECKING:
    from mjsim.state import SimState

__all__ = ["EXPIRED_TEXT", "CdnLinks", "add_link_routes", "query_of"]

#: what Discord's CDN answers for an expired or badly signed link
EXPIRED_TEXT = "This content is no longer available."


class CdnLinks:
    """Signs and checks the simulator's CDN links; `expire_all` invalidates every link handed out."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(16)
        #: part of every signature: bumping it invalidates every link signed before
        self._generation = 0
        self.refreshed = 0
        self.refused = 0

    def _mac(self, path: str, ex: str, issued: str) -> str:
        material = f"{path}|{ex}|{issued}|{self._generation}".encode()
        return hmac.new(self._secret, material, hashlib.sha256).hexdigest()

    def query(self, path: str, *, lifetime_s: float, now: float | None = None) -> str:
        """The signed query of `path`, valid for `lifetime_s` seconds from `now`."""
        issued = int(now if now is not None else time.time())
        ex, is_ = f"{issued + int(lifetime_s):x}", f"{issued:x}"
        return f"?ex={ex}&is={is_}&hm={self._mac(path, ex, is_)}&"

    def valid(self, path: str, query: Mapping[str, str], *, require: bool, now: float | None = None) -> bool:
        """Whether a request for `path` with `query` may be served."""
        ex, issued, mac = query.get("ex"), query.get("is"), query.get("hm")
        if ex is None and issued is None and mac is None:
            ok = not require
        else:
            try:
                ok = (
                    ex is not None
                    and issued is not None
                    and mac is not None
                    and hmac.compare_digest(mac, self._mac(path, ex, issued))
                    and int(ex, 16) > (now if now is not None else time.time())
                )
            except ValueError:
                ok = False
        if not ok:
            self.refused += 1
        return ok

    def expire_all(self) -> None:
        self._generation += 1


def add_link_routes(app: web.Application, state: SimState, api_prefixes: tuple[str, ...]) -> None:
    """The refresh endpoint (under the REST prefixes: authenticated like every /api/ route) and the
    control routes."""
    links = state.cdn_links

    async def refresh(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            urls = [str(u) for u in body.get("attachment_urls") or []]
        except (ValueError, AttributeError):
            return responses.error(400, 50035, "Invalid Form Body")
        refreshed = []
        for url in urls:
            path = urlsplit(url).path
            if path in state.files:
                query = links.query(path, lifetime_s=state.settings.cdn_refresh_seconds)
                refreshed.append({"original": url, "refreshed": state.base_url + path + query})
                links.refreshed += 1
        return responses.json({"refreshed_urls": refreshed})

    async def expire(request: web.Request) -> web.Response:
        links.expire_all()
        return responses.json({"expired": True})

    async def stats(request: web.Request) -> web.Response:
        return responses.json({"refreshed": links.refreshed, "refused": links.refused})

    for prefix in api_prefixes:
        app.router.add_post(f"{prefix}/attachments/refresh-urls", refresh)
    app.router.add_post("/_sim/cdn/expire", expire)
    app.router.add_get("/_sim/cdn", stats)


def query_of(url: str) -> dict[str, str]:
    """The first value of each query parameter of `url`."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
