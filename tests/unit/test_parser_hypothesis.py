"""Random JSON and random text never make the parser or the CLI line function fail."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers import parser
from workers.parse import parse_line

KEYS = ["kind", "action", "progress", "prompt", "mode", "index", "hash", "messageId", "nonce", "imageUrl"]
KEYS += ["customIds", "prompts", "error"]
EVENTS = [
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "INTERACTION_CREATE",
    "INTERACTION_SUCCESS",
    "INTERACTION_FAILURE",
    "INTERACTION_MODAL_CREATE",
    "INTERACTION_IFRAME_MODAL_CREATE",
    "READY",
]
# Text that looks like bot output, so random content reaches the deep branches.
PIECES = [
    "**",
    "** - ",
    "<@123>",
    "(fast)",
    "(relaxed, stealth)",
    "(42%)",
    "(Stopped)",
    "Image #2",
    "Pan Left by ",
]
PIECES += [
    "Upscaling image #1 with ",
    "1️⃣ ",
    "\n",
    "[x](<u>)",
    "Failed",
    "**seed** 12",
    "(",
    ")",
    "_grid_0.webp",
]
botlike = st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=12).map("".join)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | botlike
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        *("id", "nonce", "content", "author", "embeds", "components", "attachments", "interaction"),
        *("custom_id", "interaction_metadata", "flags", "title", "description", "url", "filename", "image"),
        *("name", "type", "message_reference", "footer", "color", "value", "iframe_path"),
    ]
)
payload_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)
author = st.fixed_dictionaries({"id": st.sampled_from([*parser._BOTS, "1"])})

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_change(change: parser.Change) -> None:
    assert change.kind in {
        "start",
        "progress",
        "done",
        "describe",
        "shorten",
        "error",
        "queued",
        "modal",
        "ignore",
    }
    assert isinstance(change.custom_ids, list)
    assert isinstance(change.prompts, list)


@FAST
@given(event=st.sampled_from(EVENTS) | st.text(max_size=10) | json_values, data=json_values)
def test_parse_event_never_raises_on_random_json(event: Any, data: Any) -> None:
    _check_change(parser._dispatch(event, data))
    _check_change(parser.parse_event(event, data))


@FAST
@given(
    event=st.sampled_from(EVENTS),
    data=st.dictionaries(keys, payload_like, max_size=8),
    content=botlike,
    who=author,
)
def test_parse_event_never_raises_on_message_like_payloads(
    event: str, data: dict[str, Any], content: str, who: dict[str, Any]
) -> None:
    data = {**data, "content": content, "author": who}
    _check_change(parser._dispatch(event, data))


@FAST
@given(line=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_cli_line_always_has_the_13_keys_for_random_text(line: bytes) -> None:
    out = json.loads(parse_line(line))
    assert list(out) == KEYS


@FAST
@given(t=st.sampled_from(EVENTS) | json_values, d=json_values)
def test_cli_line_always_has_the_13_keys_for_random_json(t: Any, d: Any) -> None:
    line = json.dumps({"t": t, "d": d}).encode()
    out = json.loads(parse_line(line))
    assert list(out) == KEYS
    assert out["kind"] in {
        "start",
        "progress",
        "done",
        "describe",
        "shorten",
        "error",
        "queued",
        "modal",
        "ignore",
    }
