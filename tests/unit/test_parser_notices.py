"""Embeds that answer our interaction (issue 12 part 5): a notice in place of a job is an error with the
bot's words (a yellow one a wait), but replies to account commands stay what they are."""

from __future__ import annotations

from typing import Any

from workers.parser import parse_event

MJ = {"id": "936929561302675456", "username": "Midjourney Bot", "bot": True}


def _reply(
    embed: dict[str, Any], *, nonce: str | None = "1250000000000000900", name: str | None = None
) -> dict[str, Any]:
    d: dict[str, Any] = {"content": "", "author": MJ, "embeds": [embed], "type": 20}
    if nonce:
        d["nonce"] = nonce
    if name:
        d["interaction_metadata"] = {"id": "1250000000000000901", "type": 2, "name": name}
    return d


def test_an_unknown_notice_answering_our_interaction_fails_with_the_bots_words() -> None:
    change = parse_event(
        "MESSAGE_CREATE", _reply({"type": "rich", "title": "Hmm", "description": "Try later."})
    )
    assert change.kind == "error" and change.error is not None
    assert (change.error.title, change.error.description) == ("Hmm", "Try later.")


def test_a_yellow_notice_answering_our_interaction_is_a_wait() -> None:
    embed = {"type": "rich", "title": "Heads up", "description": "Slow queue.", "color": 16776960}
    assert parse_event("MESSAGE_CREATE", _reply(embed)).kind == "queued"


def test_account_command_replies_are_not_job_errors() -> None:
    info = {"type": "rich", "title": "Your info - someone", "description": "**Subscription**: Basic"}
    for name in ("info", "settings", "fast", "relax", "prefer remix"):
        assert parse_event("MESSAGE_CREATE", _reply(info, name=name)).kind == "ignore", name


def test_an_unknown_plain_embed_without_our_nonce_stays_ignored() -> None:
    embed = {"type": "rich", "title": "Hmm", "description": "Try later."}
    assert parse_event("MESSAGE_CREATE", _reply(embed, nonce=None)).kind == "ignore"
