"""The bridge's pure parts: interaction payloads, health verdicts on the bots' notices, seed DMs."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from broker.account_status import AccountState
from broker.discord_types import ModalCreate
from discord_bridge.forwarder import is_forwarded
from discord_bridge.health import Verdict, verdict_for
from discord_bridge.payloads import blend_dimensions, button_click, first_text_input, modal_submit, new_nonce
from discord_bridge.rpc import parse_seed
from workers.apply import account_fact
from workers.parser import parse_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mj-events.jsonl"
MJ = {"id": "936929561302675456", "username": "Midjourney Bot", "bot": True}


def _fixture(case_id: str) -> dict[str, object]:
    for line in FIXTURES.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        if case["id"] == case_id:
            return case  # type: ignore[no-any-return]
    raise KeyError(case_id)


def test_button_click_echoes_the_message_and_its_flags() -> None:
    payload = button_click(
        application_id="936929561302675456",
        guild_id=None,
        channel_id="2",
        session_id="s" * 32,
        nonce="9",
        message_id="77",
        message_flags=64,
        custom_id="MJ::JOB::upsample::1::abc",
    )
    assert payload["type"] == 3 and payload["message_id"] == "77" and payload["message_flags"] == 64
    assert payload["data"] == {"component_type": 2, "custom_id": "MJ::JOB::upsample::1::abc"}
    assert "guild_id" not in payload  # a DM interaction carries no guild


def test_modal_submit_answers_the_modal_with_one_text_input() -> None:
    payload = modal_submit(
        application_id="936929561302675456",
        guild_id="1",
        channel_id="2",
        session_id="s" * 32,
        nonce="10",
        modal_id="555",
        custom_id="MJ::OutpaintCustomZoomModal::abc",
        input_custom_id="MJ::OutpaintCustomZoomModal::prompt",
        value="a cat --zoom 1.5",
    )
    assert payload["type"] == 5 and payload["guild_id"] == "1"
    row = payload["data"]["components"][0]["components"][0]
    assert row == {"type": 4, "custom_id": "MJ::OutpaintCustomZoomModal::prompt", "value": "a cat --zoom 1.5"}
    modal = {"components": [{"type": 1, "components": [{"type": 4, "custom_id": "X::prompt", "style": 1}]}]}
    assert first_text_input(msgspec.convert(modal, ModalCreate)) == "X::prompt"


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, "--ar 1:1"), ("PORTRAIT", "--ar 2:3"), ("landscape", "--ar 3:2"), ("16:9", "--ar 16:9")],
)
def test_blend_dimensions_become_an_aspect_ratio(given: str | None, expected: str) -> None:
    assert blend_dimensions(given) == expected


def test_nonces_are_increasing_snowflakes() -> None:
    first, second = new_nonce(), new_nonce()
    assert first.isdigit() and int(second) > int(first)


def _verdict(t: str, d: object, account_id: str = "") -> Verdict | None:
    """What the bridge decides about the account when the bot sends (t, d): the worker parses it and
    reports the fact, the health module judges it."""
    fact = account_fact(parse_event(t, d), at_ms=0, task_id=None)
    return None if fact is None else verdict_for(fact, account_id=account_id)


def test_action_needed_pauses_and_a_block_disables_the_account() -> None:
    case = _fixture("err-action-needed-moderators-feel")
    verdict = _verdict(str(case["t"]), case["d"], account_id="a1")
    assert verdict is not None and verdict.state == AccountState.PAUSED and '"a1"' in verdict.reason
    blocked = {"author": MJ, "embeds": [{"title": "Blocked", "color": 16711680}]}
    verdict = _verdict("MESSAGE_CREATE", blocked, account_id="a1")
    assert verdict is not None and verdict.state == AccountState.DISABLED


def test_captcha_iframe_pauses_and_an_ordinary_error_leaves_the_account_alone() -> None:
    captcha = {"title": "Action required to continue", "iframe_path": "/captcha/embedded/x"}
    verdict = _verdict("INTERACTION_IFRAME_MODAL_CREATE", captcha)
    assert verdict is not None and verdict.state == AccountState.PAUSED
    case = _fixture("err-invalid-parameter-unrecognized")
    assert _verdict(str(case["t"]), case["d"]) is None
    vary_region = {"title": "Vary Region", "iframe_path": "/inpaint/index.html"}
    assert _verdict("INTERACTION_IFRAME_MODAL_CREATE", vary_region) is None


def test_queue_full_pauses_briefly_without_failing_tasks() -> None:
    case = _fixture("err-queue-full")
    verdict = _verdict(str(case["t"]), case["d"])
    assert verdict is not None and not verdict.fail_tasks and verdict.pause_ms > 0


def test_seed_is_read_only_from_the_dm_about_the_job() -> None:
    dm = "**a cat**\n**Job ID**: 5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab\n**seed** 636646138"
    assert parse_seed(dm, "5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab") == "636646138"
    assert parse_seed(dm, "00000000-0000-0000-0000-000000000000") is None
    assert parse_seed("no seed here", None) is None


def test_only_bot_messages_of_the_accounts_channels_and_every_interaction_are_forwarded() -> None:
    channels = frozenset({"10", "11"})
    bot = {"channel_id": "10", "author": MJ, "content": "**a cat** - <@1> (fast)"}
    assert is_forwarded("MESSAGE_CREATE", json.dumps(bot).encode(), channels)
    by_application = {"channel_id": "11", "application_id": MJ["id"], "author": {"id": "5"}}
    assert is_forwarded("MESSAGE_UPDATE", json.dumps(by_application).encode(), channels)
    assert not is_forwarded("MESSAGE_CREATE", json.dumps({**bot, "channel_id": "99"}).encode(), channels)
    human = {**bot, "author": {"id": "1012345678901234567"}}
    assert not is_forwarded("MESSAGE_CREATE", json.dumps(human).encode(), channels)
    assert is_forwarded("MESSAGE_DELETE", b'{"id": "1", "channel_id": "10"}', channels)
    assert is_forwarded("INTERACTION_SUCCESS", b'{"id": "1", "nonce": "2"}', channels)
    assert not is_forwarded("MESSAGE_CREATE", b'{"channel_id": 10}', channels)  # malformed
    assert not is_forwarded("TYPING_START", json.dumps(bot).encode(), channels)
