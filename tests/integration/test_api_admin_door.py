"""The admin rule of the door: role admin keys, the status page's session cookie, keys that reload."""

from __future__ import annotations

import asyncio
import time

import httpx
import yaml
from api_support import API_SECRET, running_web

from broker.api.sessions import COOKIE_NAME, cookie_value
from broker.redis_server import EmbeddedRedis

ADMIN_SECRET = "admin-sekret-Hx3Lq9Vt"
KEYS = [{"name": "tests", "secret": API_SECRET}, {"name": "ops", "secret": ADMIN_SECRET, "role": "admin"}]


async def test_admin_routes_need_an_admin_key(redis_server: EmbeddedRedis) -> None:
    with running_web(redis_server, api_keys=KEYS) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            client = await http.get("/mj/admin/session", headers={"mj-api-secret": API_SECRET})
            assert client.status_code == 403
            assert client.json()["code"] == 4 and "admin" in client.json()["description"]
            admin = await http.get("/mj/admin/session", headers={"Authorization": f"Bearer {ADMIN_SECRET}"})
            assert admin.status_code == 200 and admin.json() == {"key": "ops", "role": "admin"}
            # admin keys are client keys too
            fetched = await http.get("/mj/task/list", headers={"mj-api-secret": ADMIN_SECRET})
            assert fetched.status_code == 200
            assert (await http.get("/mj/admin/session")).status_code == 401


async def test_the_session_cookie_signs_a_browser_in_for_reads_only(redis_server: EmbeddedRedis) -> None:
    with running_web(redis_server, api_keys=KEYS) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            good = {COOKIE_NAME: cookie_value("ops", ADMIN_SECRET)}
            signed_in = await http.get("/mj/admin/session", cookies=good)
            assert signed_in.status_code == 200 and signed_in.json()["key"] == "ops"
            forged = {COOKIE_NAME: cookie_value("ops", "not-the-secret")}
            assert (await http.get("/mj/admin/session", cookies=forged)).status_code == 401
            expired = {COOKIE_NAME: cookie_value("ops", ADMIN_SECRET, now=0)}
            assert (await http.get("/mj/admin/session", cookies=expired)).status_code == 401
            client_cookie = {COOKIE_NAME: cookie_value("tests", API_SECRET)}
            assert (await http.get("/mj/admin/session", cookies=client_cookie)).status_code == 403


async def test_api_keys_apply_without_a_restart(redis_server: EmbeddedRedis) -> None:
    with running_web(redis_server, api_keys=KEYS) as web:
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            new = {"mj-api-secret": "rotated-Kd82nVq"}
            assert (await http.get("/mj/task/list", headers=new)).status_code == 401
            document = yaml.safe_load(web.config.read_text())
            document["api_keys"] = [{"name": "tests", "secret": "rotated-Kd82nVq"}]
            web.config.write_text(yaml.safe_dump(document))
            deadline = time.monotonic() + 15
            while (await http.get("/mj/task/list", headers=new)).status_code != 200:
                assert time.monotonic() < deadline, "the new key was not taken within 15 s"
                await asyncio.sleep(0.2)
            assert (await http.get("/mj/task/list", headers={"mj-api-secret": API_SECRET})).status_code == 401
