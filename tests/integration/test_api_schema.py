"""`/schema/openapi.json` documents what the API really sends: Schemathesis with every check finds
nothing, and the auth schemes are there exactly when api keys are configured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_support import ADMIN_API_SECRET, API_SECRET, AUTH, WebProcess, running_web

from broker.models import Task, TaskAction, TaskStatus
from broker.redis_server import EmbeddedRedis
from broker.store import TaskStore

ST = Path(sys.executable).with_name("st")
#: generated examples per operation: with the coverage phase the run takes about 15 s on 2 idle cores
MAX_EXAMPLES = 5
KNOWN_ID = "1700000000000042"


# as long as the run itself may take (below): on shared, loaded cores it can pass the default 120 s
@pytest.mark.timeout(240)
async def test_schemathesis_with_all_checks_finds_nothing(
    web: WebProcess, store: TaskStore, tmp_path: Path
) -> None:
    # A task that exists, named in every path that takes an id (random ids would only ever meet
    # the 404, which test_api_hostile_input covers): running, so /image-seed and /cancel refuse
    # it with code 4 without waiting for a bridge.
    await store.create(Task(id=KNOWN_ID, action=TaskAction.IMAGINE, prompt="a cat", instance_id="a1"))
    await store.transition(KNOWN_ID, TaskStatus.SUBMITTED, progress="0%")
    (tmp_path / "schemathesis.toml").write_text(
        f'warnings = {{ fail-on = true }}\n\n[parameters]\n"path.task_id" = "{KNOWN_ID}"\n'
        '"path.account_id" = "a1"\n'
    )
    # Every operation under /mj/ (the /mj-fast, /mj-relax and /mj-turbo aliases run the same
    # handlers and are left out to bound the time). The coverage phase sends schema-violating
    # bodies (wrong types, missing fields, out-of-range values) and requests without the secret,
    # the fuzzing phase generated ones; `--checks all` includes negative data rejection, status,
    # content-type, header and body conformance, ignored auth and unsupported methods. The
    # stateful phase is left out: the API has no links worth following (ids are not guessable).
    command = [
        str(ST),
        "run",
        f"{web.url}/schema/openapi.json",
        "--checks",
        "all",
        "--header",
        # an admin key reaches the admin routes too (a client key gets their documented 403)
        f"mj-api-secret: {ADMIN_API_SECRET}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261201",
        "--include-path-regex",
        "^/mj/",
        "--phases",
        "coverage,fuzzing",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--no-color",
    ]
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "No issues found" in output, output[-8000:]
    assert "24 selected" in output, output[:2000]  # every /mj/ operation (video, edits, retexture, usage too)
    assert API_SECRET not in web.log() and ADMIN_API_SECRET not in web.log()


def test_auth_is_a_security_scheme_only_when_keys_are_configured(
    web: WebProcess, redis_server: EmbeddedRedis
) -> None:
    schema = httpx.get(f"{web.url}/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiSecret"] == {"type": "apiKey", "name": "mj-api-secret", "in": "header"}
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"apiSecret": []}, {"bearer": []}]
    with running_web(redis_server, api_keys=[]) as open_web:
        open_schema = httpx.get(f"{open_web.url}/schema/openapi.json").json()
    assert "securitySchemes" not in open_schema.get("components", {})
    assert "security" not in open_schema
    text = str(open_schema)
    assert "mj-api-secret" not in text


def test_error_statuses_are_documented_with_the_code_description_body(web: WebProcess) -> None:
    schema = httpx.get(f"{web.url}/schema/openapi.json", headers=AUTH).json()
    paths = schema["paths"]
    fetch = paths["/mj/task/{task_id}/fetch"]["get"]["responses"]
    imagine = paths["/mj/submit/imagine"]["post"]["responses"]
    assert set(fetch) == {"200", "400", "401", "404", "503"}
    assert set(imagine) == {"200", "400", "401", "413", "503"}
    for responses in (fetch, imagine):
        for status in set(responses) - {"200"}:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert {"code", "description"} <= set(body["properties"]), (status, body)
            assert "detail" not in body["properties"] and "status_code" not in body["properties"]
    codes = schema["components"]["schemas"]["ReturnCode"]["enum"]
    assert sorted(codes) == [1, 3, 4, 9, 21, 22, 23, 24]


def test_the_schema_page_lists_every_operation_without_loading_anything(web: WebProcess) -> None:
    page = httpx.get(f"{web.url}/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    # offline it is all there is: no script or stylesheet to fetch from elsewhere
    assert "<script" not in text and "<link" not in text and "src=" not in text
    paths = httpx.get(f"{web.url}/schema/openapi.json").json()["paths"]
    for path in paths:
        assert f"<code>{path}</code>" in text, path
