"""The video messages (tests/fixtures/video-events.jsonl) through `parse_event` and `python -m workers.parse`,
and the pure video rules: the imagine prompt of a video and which image URLs are ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from broker.video import VideoSpec, is_own_image_url, video_prompt
from workers.parse import to_cli
from workers.parser import parse_event

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "video-events.jsonl"
CASES = [json.loads(line) for line in FIXTURES.read_text(encoding="utf-8").splitlines() if line.strip()]
IDS = [case["id"] for case in CASES]


def _check(out: dict[str, Any], expect: dict[str, Any]) -> None:
    for key, want in expect.items():
        assert out[key] == want, f"{key}: {out[key]!r} != {want!r}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_video_fixture_through_parse_event(case: dict[str, Any]) -> None:
    assert case["source"].startswith("RECONSTRUCTED")
    _check(json.loads(msgspec.json.encode(to_cli(parse_event(case["t"], case["d"])))), case["expect"])


def test_video_fixtures_through_the_cli() -> None:
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
    for case, line in zip(CASES, lines, strict=True):
        _check(json.loads(line), case["expect"])


def test_a_video_result_lists_its_video_files_in_order() -> None:
    final = next(c for c in CASES if c["id"] == "video-final-four")
    change = parse_event(final["t"], final["d"])
    assert change.video_urls == [a["url"] for a in final["d"]["attachments"]]
    assert change.image_url == change.video_urls[0]
    one = next(c for c in CASES if c["id"] == "video-upscaled-one")
    assert len(parse_event(one["t"], one["d"]).video_urls) == 1


def test_an_image_result_has_no_video_files() -> None:
    d = {
        "id": "1",
        "content": "**cat** - <@2> (fast)",
        "author": {"id": "936929561302675456", "bot": True},
        "attachments": [{"url": "https://cdn.discordapp.com/attachments/3/4/cat_x.png", "filename": "c.png"}],
    }
    change = parse_event("MESSAGE_CREATE", d)
    assert change.kind == "done" and change.action == "IMAGINE" and change.video_urls == []


def test_video_prompt_adds_the_frames_and_parameters_once() -> None:
    spec = VideoSpec(motion="high", loop=True, batch_size=2)
    assert (
        video_prompt("a cat", spec, start="https://x/s.png", end="https://x/e.png")
        == "https://x/s.png a cat --video 1 --motion high --end https://x/e.png --loop --bs 2"
    )
    # the client's own parameters stay as written; the default batch of 4 needs no --bs
    assert video_prompt("a cat --motion low --video 1", VideoSpec(), start="https://x/s.png", end=None) == (
        "https://x/s.png a cat --motion low --video 1"
    )


@pytest.mark.parametrize(
    ("url", "ours"),
    [
        ("https://cdn.discordapp.com/attachments/42/7/a_cat_uuid.png?ex=1&is=2&hm=3&", True),
        ("https://media.discordapp.net/attachments/42/7/a.png", True),
        ("https://cdn.discordapp.com/attachments/99/7/a.png", False),  # another channel's
        ("https://cdn.discordapp.com/ephemeral-attachments/42/7/a.png", False),
        ("https://cdn.discordapp.com.evil.example/attachments/42/7/a.png", False),
        ("https://user:pw@cdn.discordapp.com/attachments/42/7/a.png", False),
        ("ftp://cdn.discordapp.com/attachments/42/7/a.png", False),
        ("https://cdn.discordapp.com:99999/attachments/42/7/a.png", False),
        ("http://127.0.0.1:8081/attachments/42/7/a.png", True),
        ("http://127.0.0.1:8082/attachments/42/7/a.png", False),
    ],
)
def test_own_image_urls_are_cdn_attachments_of_our_channels(url: str, ours: bool) -> None:
    hosts = {"cdn.discordapp.com", "media.discordapp.net", "127.0.0.1:8081"}
    assert is_own_image_url(url, cdn_hosts=hosts, channel_ids={"42"}) is ours
