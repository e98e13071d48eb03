"""The status page without a browser: sign-in by form (key -> cookie), sign-out, what the page
says and escapes, its security headers, and `/schema` with nothing from another host."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import API_SECRET, WebProcess, running_web

from broker.api.sessions import COOKIE_NAME, SESSION_SECONDS
from broker.ledger import Ledger
from broker.models import Task, TaskAction, TaskStatus
from broker.redis_server import EmbeddedRedis

ADMIN_SECRET = "admin-page-Zr4Hq8Lw"
KEYS = [{"name": "tests", "secret": API_SECRET}, {"name": "ops", "secret": ADMIN_SECRET, "role": "admin"}]


def _ledger_with_a_hostile_task(path: Path) -> None:
    ledger = Ledger(path)
    now = int(time.time() * 1000)
    ledger.append(
        [
            Task(
                id="9001",
                action=TaskAction.IMAGINE,
                status=TaskStatus.FAILURE,
                prompt='<script>alert("x")</script> a cat',
                fail_reason="<img src=x onerror=alert(1)>",
                instance_id="a1",
                api_key_name="tests",
                submit_time=now - 2000,
                finish_time=now - 1000,
            )
        ]
    )
    ledger.close()


@pytest.fixture(scope="module")
def admin_web(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """One web process for the module: a client key, an admin key, a ledger with one task."""
    ledger = tmp_path_factory.mktemp("admin-page") / "ledger.db"
    _ledger_with_a_hostile_task(ledger)
    with running_web(redis_server, api_keys=KEYS, tasks={"ledger_path": str(ledger)}) as web:
        yield web


async def test_sign_in_by_form_sets_a_strict_http_only_cookie_and_sign_out_clears_it(
    admin_web: WebProcess,
) -> None:
    async with httpx.AsyncClient(base_url=admin_web.url, timeout=10) as http:
        # a browser without a session is sent to the form; a script with a client key is refused
        first = await http.get("/admin")
        assert first.status_code == 303 and first.headers["location"] == "/admin/login"
        assert (await http.get("/admin", headers={"mj-api-secret": API_SECRET})).status_code == 403
        form = await http.get("/admin/login")
        assert form.status_code == 200 and 'name="key"' in form.text
        assert (await http.get("/admin/assets/status.css")).status_code == 200

        for wrong in ("nope", API_SECRET, ""):
            refused = await http.post("/admin/login", data={"key": wrong})
            assert refused.status_code == 401 and "not an admin api key" in refused.text
            assert COOKIE_NAME not in refused.headers.get("set-cookie", "")

        signed = await http.post("/admin/login", data={"key": ADMIN_SECRET})
        assert signed.status_code == 303 and signed.headers["location"] == "/admin"
        cookie = signed.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "max-age", "samesite"} <= attributes and "secure" not in attributes
        assert "SameSite=Strict".lower() in cookie.lower() and f"Max-Age={SESSION_SECONDS}" in cookie
        assert ADMIN_SECRET not in cookie

        page = await http.get("/admin")  # the client keeps the cookie
        assert page.status_code == 200 and "signed in as <b>ops</b>" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "img-src 'self' data: http: https:" in csp
        # everything from outside is escaped
        assert "<script>alert" not in page.text and "&lt;script&gt;alert" in page.text
        assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
        fragment = await http.get("/admin/fragment")
        assert fragment.status_code == 200 and "9001" in fragment.text and "<html" not in fragment.text
        # the cookie reads, but does not write
        assert (await http.post("/mj/submit/imagine", json={"prompt": "x"})).status_code == 401

        out = await http.post("/admin/logout")
        assert out.status_code == 303 and out.headers["location"] == "/admin/login"
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert (await http.get("/admin")).status_code == 303

        behind_tls = await http.post(
            "/admin/login", data={"key": ADMIN_SECRET}, headers={"x-forwarded-proto": "https"}
        )
        assert "secure" in behind_tls.headers["set-cookie"].lower()


async def test_with_no_api_keys_the_page_is_open(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    with running_web(redis_server, api_keys=[], tasks={"ledger_path": str(tmp_path / "ledger.db")}) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            page = await http.get("/admin")
            assert page.status_code == 200 and "open (no api keys configured)" in page.text
            assert "a1" in page.text  # the configured account
            assert (await http.get("/admin/login")).headers["location"] == "/admin"


_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


async def test_no_page_under_schema_loads_anything_from_another_host(admin_web: WebProcess) -> None:
    async with httpx.AsyncClient(base_url=admin_web.url, timeout=10) as http:
        operations = await http.get("/schema")
        assert operations.status_code == 200
        pages = {"/schema"} | {u for u in _LINK.findall(operations.text) if u.startswith("/schema")}
        assert "/schema/swagger" in pages and "/schema/redoc" not in pages
        for path in sorted(pages):
            response = await http.get(path)
            assert response.status_code == 200, path
            if "html" not in response.headers["content-type"]:
                continue
            for url in _LINK.findall(response.text):
                assert url.startswith("/"), f"{path} loads {url}"
                assert (await http.get(url)).status_code == 200, url
