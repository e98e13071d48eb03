"""The status page at `/admin`, its files, and the sign-in that trades an admin key for a cookie.

- `GET /admin`: the page (`broker.api.status_page`); `GET /admin/fragment`: its <main> alone, which
  the page's script fetches again every few seconds; `/admin/assets/status.css`, `/admin/assets/status.js`.
- `GET /admin/login`: a sign-in form; `POST /admin/login` (`key=<admin api secret>`): checks the key
  in constant time against the admin keys, sets the session cookie (`broker.api.sessions`: HttpOnly,
  SameSite=Strict, Secure over https) and redirects to `/admin`; `POST /admin/logout` clears it.

The door (`broker.api.auth`) lets only admin keys (header or cookie) reach `/admin`, and sends a
browser without one to the sign-in form. With no api keys configured everything is open (a dev
setup): the page shows without signing in.

Every HTML answer carries a Content-Security-Policy that allows scripts, styles and requests to
this origin only. Images are the exception: the thumbnails are the tasks' `imageUrl`, which point
to Discord's CDN, the image store or a simulator, any http(s) host, so `img-src` allows http: and
https:. An image can run no code; `referrerpolicy=no-referrer` keeps the page's URL from those hosts.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qs

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect

from broker.api.auth import match_secret
from broker.api.context import api_key_name, context_of
from broker.api.sessions import COOKIE_NAME, SESSION_SECONDS, cookie_value
from broker.api.status_assets import CSS, JS
from broker.api.status_data import snapshot
from broker.api.status_page import render_main, render_page

__all__ = ["ADMIN_PAGE_HANDLERS", "SECURITY_HEADERS"]

AnyRequest = Request[Any, Any, Any]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data: http: https:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_HTML = "text/html; charset=utf-8"
#: the longest key the sign-in form reads (no configured secret is near it)
_MAX_KEY = 4096


def _html(body: str, status: int = 200) -> Response[str]:
    return Response(body, status_code=status, media_type=_HTML, headers=SECURITY_HEADERS)


@get("/admin", include_in_schema=False)
async def status_page(request: AnyRequest) -> Response[str]:
    ctx = context_of(request)
    snap = await snapshot(ctx, key=api_key_name(request))
    return _html(render_page(snap, ctx.settings.timezone))


@get("/admin/fragment", include_in_schema=False)
async def status_fragment(request: AnyRequest) -> Response[str]:
    ctx = context_of(request)
    snap = await snapshot(ctx, key=api_key_name(request))
    return _html(render_main(snap, ctx.settings.timezone))


@get("/admin/assets/status.css", include_in_schema=False)
async def status_css() -> Response[str]:
    return Response(CSS, media_type="text/css; charset=utf-8", headers={"Cache-Control": "max-age=300"})


@get("/admin/assets/status.js", include_in_schema=False)
async def status_js() -> Response[str]:
    return Response(JS, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "max-age=300"})


def _login_form(message: str = "") -> str:
    note = f'<p class="alert">{escape(message)}</p>' if message else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mjbroker: sign in</title><link rel="stylesheet" href="/admin/assets/status.css">
<link rel="icon" href="data:,">
</head><body><main class="login"><section>
<h1>mjbroker status</h1>{note}
<form method="post" action="/admin/login">
<label for="key">Admin api key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
<p class="muted small">The browser keeps a session cookie for {SESSION_SECONDS // 3600} hours.
Scripts can send the key as the <code>mj-api-secret</code> header instead.</p>
</section></main></body></html>
"""


def _over_https(request: AnyRequest) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


@get("/admin/login", include_in_schema=False)
async def login_form(request: AnyRequest) -> Response[Any]:
    if not context_of(request).settings.api_keys:
        return Redirect(path="/admin", status_code=303)
    return _html(_login_form())


@post("/admin/login", include_in_schema=False, status_code=303)
async def login(request: AnyRequest) -> Response[Any]:
    settings = context_of(request).settings
    if not settings.api_keys:
        return Redirect(path="/admin", status_code=303)
    body = (await request.body()).decode("utf-8", "replace")
    given = (parse_qs(body).get("key") or [""])[0].strip()[:_MAX_KEY]
    admins = [(k.secret.encode(), k.name) for k in settings.api_keys if k.role == "admin"]
    name = match_secret(admins, given) if given else None
    if name is None:
        return _html(_login_form("That is not an admin api key."), status=401)
    secret = next(k.secret for k in settings.api_keys if k.name == name)
    cookie = Cookie(
        key=COOKIE_NAME,
        value=cookie_value(name, secret),
        path="/",
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=_over_https(request),
    )
    return Redirect(path="/admin", status_code=303, cookies=[cookie])


@post("/admin/logout", include_in_schema=False, status_code=303)
async def logout(request: AnyRequest) -> Response[Any]:
    gone = Cookie(
        key=COOKIE_NAME,
        value="",
        path="/",
        max_age=0,
        httponly=True,
        samesite="strict",
        secure=_over_https(request),
    )
    return Redirect(path="/admin/login", status_code=303, cookies=[gone])


ADMIN_PAGE_HANDLERS = [status_page, status_fragment, status_css, status_js, login_form, login, logout]
