"""Every recorded payload in tests/fixtures/*.jsonl parses to its `expect`.

`mj-events.jsonl` holds the shared recordings; `mj-message-forms.jsonl` every bot message form,
current and past, collected from public clients (issue 12 part 5), each naming its source.

Each case runs three times: through `parse_event` on the decoded payload and on its raw JSON bytes
(the workers' path), and through the real `python -m workers.parse` subprocess, which is started once
for the whole file and fed all fixtures in one stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from workers.parse import to_cli
from workers.parser import parse_event

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "mj-events.jsonl"
#: every bot message form, current and past (issue 12 part 5)
FORMS = ROOT / "tests" / "fixtures" / "mj-message-forms.jsonl"
CLI_KEYS = [
    "kind",
    "action",
    "progress",
    "prompt",
    "mode",
    "index",
    "hash",
    "messageId",
    "nonce",
    "imageUrl",
    "customIds",
    "prompts",
    "error",
]


def _load() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in (FIXTURES, FORMS):
        with path.open(encoding="utf-8") as fh:
            cases.extend(json.loads(line) for line in fh if line.strip())
    return cases


CASES = _load()
IDS = [case["id"] for case in CASES]


def _norm(text: str) -> str:
    return " ".join(text.split())


def _check(out: dict[str, Any], expect: dict[str, Any]) -> None:
    assert list(out) == CLI_KEYS
    for key, want in expect.items():
        if key == "error_title":
            got = out["error"]["title"] if out["error"] else None
        elif key == "prompts":
            assert [_norm(p) for p in out["prompts"]] == [_norm(p) for p in want], key
            continue
        else:
            got = out[key]
        if isinstance(want, list):
            assert got in want, f"{key}: {got!r} not in {want!r}"
        else:
            assert got == want, f"{key}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def cli_output() -> dict[str, dict[str, Any]]:
    """All fixtures through one CLI process, keyed by fixture id."""
    stdin = "".join(json.dumps({"t": c["t"], "d": c["d"]}, ensure_ascii=False) + "\n" for c in CASES)
    proc = subprocess.run(
        [sys.executable, "-m", "workers.parse"],
        input=stdin.encode(),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == len(CASES)
    return {case["id"]: json.loads(line) for case, line in zip(CASES, lines, strict=True)}


def test_fixture_ids_are_unique() -> None:
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fixture_through_parse_event(case: dict[str, Any]) -> None:
    change = parse_event(case["t"], case["d"])
    out = json.loads(msgspec.json.encode(to_cli(change)))
    _check(out, case["expect"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fixture_through_parse_event_on_raw_bytes(case: dict[str, Any]) -> None:
    raw = json.dumps(case["d"], ensure_ascii=False).encode()
    change = parse_event(case["t"], raw)
    assert change == parse_event(case["t"], case["d"])
    _check(json.loads(msgspec.json.encode(to_cli(change))), case["expect"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fixture_through_cli(case: dict[str, Any], cli_output: dict[str, dict[str, Any]]) -> None:
    _check(cli_output[case["id"]], case["expect"])


_KINDS = {"start", "progress", "done", "describe", "shorten", "error", "queued", "modal", "ignore"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_fixture_names_its_source_and_expected_kind(case: dict[str, Any]) -> None:
    assert case["source"].strip(), case["id"]
    kinds = case["expect"]["kind"]
    assert set(kinds if isinstance(kinds, list) else [kinds]) <= _KINDS


def test_message_forms_naming_a_job_are_never_ignored() -> None:
    """A bot message about one of our jobs is progress, done, queued or an error: never `ignore`."""
    forms = [case for case in CASES if case["source"] and case["id"] in _form_ids()]
    assert len(forms) >= 40
    for case in forms:
        change = parse_event(case["t"], case["d"])
        assert change.kind != "ignore", case["id"]
        if change.kind in ("error", "queued"):
            assert change.error is not None and (change.error.title or change.error.description), case["id"]


def _form_ids() -> set[str]:
    with FORMS.open(encoding="utf-8") as fh:
        return {json.loads(line)["id"] for line in fh if line.strip()}
