"""Random JSON and random text never make the parser or the CLI line function fail.

Random JSON mostly does not fit the typed wire shapes and is ``ignore`` at the door, so a second family
of strategies builds payloads that do fit (`Message`, `ModalCreate`, `InteractionEvent`) with bot-like
text, to drive the parsers' deep branches; those also check that the raw-bytes path and the decoded-dict
path give the same `Change`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.discord import BOT_IDS
from workers.parse import parse_line
from workers.parser import Change, parse_event
from workers.parser.dispatch import _PARSERS, _dispatch

KEYS = ["kind", "action", "progress", "prompt", "mode", "index", "hash", "messageId", "nonce", "imageUrl"]
KEYS += ["customIds", "prompts", "error"]
KINDS = {"start", "progress", "done", "describe", "shorten", "error", "queued", "modal", "ignore"}
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

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- payloads that fit the wire shapes

JOB = "5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab"
#: a job line: [opener] **prompt** - [words] <@user> (groups...)
job_line = st.builds(
    lambda opener, prompt, words, mention, groups: (
        f"{opener}**{prompt}** - {words}{mention} {' '.join(groups)}"
    ),
    st.sampled_from(["", "Upscaling image #2 with ", "Done! "]),
    botlike,
    st.sampled_from(["", "Image #3 ", "Variations (Strong) by ", "Pan Up by ", "Zoom Out by ", "Remix by "]),
    st.sampled_from(["<@12>", "<@!12>", ""]),
    st.lists(
        st.sampled_from(["(fast)", "(relaxed, stealth)", "(turbo)", "(42%)", "(paused)", "(Stopped)"])
        | st.sampled_from(["(Waiting to start)", "[a](b)", "(x)"]),
        max_size=3,
    ),
)
text = botlike | job_line | st.sampled_from(["1️⃣ a\n2️⃣ b", "## Shortened prompts\n1️⃣ a", f"**Job ID**: {JOB}"])
ids = st.sampled_from(["", "1", "1250000000000000010", *BOT_IDS])
custom_ids = st.sampled_from(
    [
        f"MJ::JOB::upsample::1::{JOB}",
        f"MJ::JOB::reroll::0::{JOB}::SOLO",
        "MJ::Job::PicReader::1",
        "MJ::Picread::Retry",
        "MJ::Job::PromptAnalyzer::2",
        f"MJ::RemixModal::{JOB}::3::1",
        f"MJ::PanModal::left::{JOB}::2",
        "MJ::Picreader::Modal::2",
        f"MJ::OutpaintCustomZoomModal::{JOB}",
        "MJ::iframe::tok",
        "x",
    ]
) | st.text(max_size=6)
urls = st.sampled_from([f"https://cdn/x/a_{JOB}.png?ex=1&", "fox.png", "a_grid_0.webp", "", "x/0_0.png"])


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object whose keys may each be missing or null."""
    return st.fixed_dictionaries({}, optional={k: _opt(v) for k, v in fields.items()})


component = st.recursive(
    _obj(
        type=st.integers(0, 5),
        custom_id=custom_ids,
        label=text,
        style=st.integers(0, 5),
        emoji=_obj(name=text),
        value=text,
    ),
    lambda inner: _obj(type=st.integers(0, 5), custom_id=custom_ids, components=st.lists(inner, max_size=3)),
    max_leaves=8,
)
embed = _obj(
    title=text | st.sampled_from(["Invalid prompt", "Job queued", "Credits exhausted"]),
    description=text,
    color=st.sampled_from([16711680, 0, 65280]),
    type=st.sampled_from(["rich", "link"]),
    footer=_obj(text=text),
    image=_obj(url=urls),
)
interaction = _obj(
    id=ids, type=st.integers(0, 5), name=st.sampled_from(["imagine", "blend", "describe", "shorten"])
)
bot_author = st.fixed_dictionaries({"id": st.sampled_from(sorted(BOT_IDS))})
message = st.builds(
    lambda rest, content, author, embeds: {**rest, "content": content, "author": author, "embeds": embeds},
    _obj(
        id=ids,
        channel_id=ids,
        nonce=ids | st.integers(0, 2**62),
        flags=st.integers(0, 200),
        attachments=st.lists(
            _obj(
                filename=urls,
                url=urls,
                proxy_url=urls,
                content_type=st.sampled_from(["image/png", "text/plain"]),
            ),
            max_size=2,
        ),
        components=st.lists(component, max_size=3),
        interaction_metadata=interaction,
        interaction=interaction,
        message_reference=_obj(message_id=ids),
    ),
    # mostly a job line from one of the bots, so the content grammar is what gets exercised
    st.one_of(job_line, job_line, job_line, text),
    st.one_of(bot_author, bot_author, st.none(), _obj(id=ids, username=text, bot=st.booleans())),
    st.one_of(st.just([]), st.just([]), st.lists(embed, max_size=2)),
)
modal = _obj(
    id=ids,
    nonce=ids | st.integers(0, 99),
    custom_id=custom_ids,
    title=st.sampled_from(["Action required to continue", "Vary Region", ""]),
    components=st.lists(component, max_size=2),
    application=_obj(id=ids),
    application_id=ids,
    iframe_path=st.sampled_from(["/captcha/embedded/x", "/inpaint/x", ""]),
)
messages = st.tuples(st.sampled_from(["MESSAGE_CREATE", "MESSAGE_UPDATE"]), message)
typed_events = st.one_of(
    messages,
    messages,
    messages,
    st.tuples(st.sampled_from(["INTERACTION_MODAL_CREATE", "INTERACTION_IFRAME_MODAL_CREATE"]), modal),
    st.tuples(st.sampled_from(["INTERACTION_SUCCESS", "INTERACTION_FAILURE", "MESSAGE_DELETE"]), modal),
)


def _check_change(change: Change) -> None:
    assert change.kind in KINDS
    assert isinstance(change.custom_ids, list)
    assert isinstance(change.prompts, list)


@FAST
@given(event=st.sampled_from(EVENTS) | st.text(max_size=10) | json_values, data=json_values)
def test_parse_event_never_raises_on_random_json(event: Any, data: Any) -> None:
    _check_change(_dispatch(event, data))
    _check_change(parse_event(event, data))
    raw = msgspec.json.encode(data)
    _check_change(_dispatch(event, raw))
    _check_change(parse_event(event, raw))


@FAST
@given(event=st.sampled_from(EVENTS), data=st.binary(max_size=64))
def test_parse_event_never_raises_on_random_bytes(event: str, data: bytes) -> None:
    _check_change(_dispatch(event, data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=typed_events)
def test_payloads_that_fit_their_shape_parse_alike_from_bytes_and_dict(
    event: tuple[str, dict[str, Any]],
) -> None:
    t, d = event
    # It fits the dispatch's wire shape, so the parser reads it instead of dropping it as malformed
    # (a dropped payload also gives kind="ignore" with its event name: nothing else tells them apart).
    msgspec.convert(d, _PARSERS[t].shape)
    from_dict = _dispatch(t, d)
    _check_change(from_dict)
    assert _dispatch(t, msgspec.json.encode(d)) == from_dict
    assert from_dict.event == t


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
    assert out["kind"] in KINDS
