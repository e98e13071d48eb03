"""Hand-written cases for the gateway-event parser, named after what the bot said."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from broker.discord import INSIGHTFACE_ID as INSIGHT_FACE_BOT_ID
from broker.discord import MIDJOURNEY_ID as MIDJOURNEY_BOT_ID
from broker.discord import NIJI_ID as NIJI_BOT_ID
from broker.models import Button, SpeedMode
from workers.parse import main, parse_line
from workers.parser import Change, extract_hash, parse_event

USER = "1012345678901234567"
JOB = "5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab"
SIGNED = "?ex=66a1b2c3&is=66a06143&hm=ab12cd34ef&"
CDN = "https://cdn.discordapp.com/attachments/222/1250000000000000009"


def msg(content: str = "", *, author: str = MIDJOURNEY_BOT_ID, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "1250000000000000010",
        "channel_id": "222",
        "guild_id": "111",
        "type": 0,
        "content": content,
        "author": {"id": author, "username": "Midjourney Bot", "bot": True},
        "embeds": [],
        "components": [],
        "attachments": [],
        "flags": 0,
    }
    data.update(extra)
    return data


def png(name: str, query: str = SIGNED) -> list[dict[str, Any]]:
    return [{"id": "9", "filename": name, "url": f"{CDN}/{name}{query}", "content_type": "image/png"}]


def grid_buttons(job: str = JOB) -> list[dict[str, Any]]:
    row1 = [
        {"type": 2, "style": 2, "label": f"U{n}", "custom_id": f"MJ::JOB::upsample::{n}::{job}"}
        for n in (1, 2)
    ]
    row1.append(
        {"type": 2, "style": 2, "emoji": {"name": "🔄"}, "custom_id": f"MJ::JOB::reroll::0::{job}::SOLO"}
    )
    row2 = [{"type": 2, "style": 2, "label": "V1", "custom_id": f"MJ::JOB::variation::1::{job}"}]
    return [{"type": 1, "components": row1}, {"type": 1, "components": row2}]


def create(data: dict[str, Any]) -> Change:
    return parse_event("MESSAGE_CREATE", data)


def update(data: dict[str, Any]) -> Change:
    return parse_event("MESSAGE_UPDATE", data)


# ---------------------------------------------------------------- start


def test_waiting_to_start_with_nonce_is_start() -> None:
    meta = {"id": "1250000000000000003", "type": 2, "name": "imagine"}
    change = create(
        msg(
            f"**a red fox --ar 16:9** - <@{USER}> (Waiting to start)",
            nonce="1250000000000000001",
            type=20,
            interaction=meta,
            interaction_metadata=meta,
        )
    )
    assert change.kind == "start"
    assert change.action == "IMAGINE"
    assert change.prompt == "a red fox --ar 16:9"
    assert change.nonce == "1250000000000000001"
    assert change.message_id == "1250000000000000010"
    assert change.interaction_id == "1250000000000000003"
    assert change.interaction_name == "imagine"
    assert change.status_text == "Waiting to start"
    assert change.user_id == USER
    assert change.mode is None
    assert change.progress is None


def test_integer_nonce_is_kept_as_string() -> None:
    change = create(msg(f"**cat** - <@{USER}> (Waiting to start)", nonce=1250000000000000001))
    assert change.nonce == "1250000000000000001"


def test_blend_start_is_blend() -> None:
    content = f"**<https://s.mj.run/abc> <https://s.mj.run/def> --ar 1:1** - <@{USER}> (Waiting to start)"
    change = create(msg(content, nonce="7", interaction={"id": "8", "type": 2, "name": "blend"}))
    assert (change.kind, change.action) == ("start", "BLEND")
    assert change.prompt == "<https://s.mj.run/abc> <https://s.mj.run/def> --ar 1:1"


def test_first_message_with_nonce_already_in_progress_is_start() -> None:
    change = create(msg(f"**cat** - <@{USER}> (0%) (fast)", nonce="7"))
    assert (change.kind, change.progress, change.mode) == ("start", 0, SpeedMode.FAST)


def test_upscaling_opener_is_start_with_index() -> None:
    change = create(msg("Upscaling image #3 with **cat --niji 6**", author=NIJI_BOT_ID))
    assert (change.kind, change.action, change.index, change.prompt) == (
        "start",
        "UPSCALE",
        3,
        "cat --niji 6",
    )
    assert change.bot == "NIJI_JOURNEY"


def test_making_variations_opener_is_start_with_index() -> None:
    change = create(
        msg(f"Making variations for image #2 with **cat** - <@{USER}> (Waiting to start)", nonce="1")
    )
    assert (change.kind, change.action, change.index, change.prompt) == ("start", "VARIATION", 2, "cat")


def test_bold_words_inside_prose_are_not_a_job() -> None:
    change = create(msg("Done! **Fast mode** is on - <@1> (fast)", interaction={"name": "fast"}))
    assert (change.kind, change.prompt) == ("ignore", None)


# ---------------------------------------------------------------- progress


@pytest.mark.parametrize("pct", [0, 15, 93, 100])
def test_percentage_update_is_progress(pct: int) -> None:
    change = update(
        msg(
            f"**cat in hat --v 6** - <@{USER}> ({pct}%) (fast)",
            attachments=[{"filename": f"{JOB}_grid_0.webp", "url": f"{CDN}/{JOB}_grid_0.webp{SIGNED}"}],
        )
    )
    assert (change.kind, change.progress, change.mode) == ("progress", pct, SpeedMode.FAST)
    assert change.hash == JOB
    assert change.image_url == f"{CDN}/{JOB}_grid_0.webp{SIGNED}"


def test_stopped_is_progress_with_status() -> None:
    change = update(msg(f"**cat** - <@{USER}> (Stopped)"))
    assert (change.kind, change.status_text, change.progress) == ("progress", "Stopped", None)


def test_stopped_on_create_with_nonce_is_still_progress() -> None:
    change = create(msg(f"**cat** - <@{USER}> (Stopped)", nonce="5"))
    assert (change.kind, change.status_text) == ("progress", "Stopped")


def test_paused_is_progress_without_percent() -> None:
    change = update(msg(f"**cat** - <@{USER}> (paused) (relaxed)"))
    assert (change.kind, change.status_text, change.progress, change.mode) == (
        "progress",
        "paused",
        None,
        SpeedMode.RELAX,
    )


def test_waiting_to_start_on_update_is_progress() -> None:
    change = update(msg(f"**cat** - <@{USER}> (Waiting to start)"))
    assert (change.kind, change.status_text) == ("progress", "Waiting to start")


def test_progress_preview_short_name_is_completed_from_buttons() -> None:
    change = update(
        msg(
            f"**cat** - <@{USER}> (35%) (fast)",
            attachments=[{"filename": "5b1c2d3e_grid_0.webp"}],
            components=[
                {"type": 1, "components": [{"type": 2, "custom_id": f"MJ::CancelJob::ByJobid::{JOB}"}]}
            ],
        )
    )
    assert change.hash == JOB


# ---------------------------------------------------------------- done and actions


def test_final_grid_with_signed_url() -> None:
    data = msg(
        f"**a red fox** - <@{USER}> (fast)",
        attachments=png(f"alice_a_red_fox_{JOB}.png"),
        components=grid_buttons(),
        flags=0,
        message_reference={"message_id": "1249999999999999999"},
    )
    change = create(data)
    assert change.kind == "done"
    assert change.action == "IMAGINE"
    assert change.hash == JOB
    assert change.image_url == f"{CDN}/alice_a_red_fox_{JOB}.png{SIGNED}"
    assert change.custom_ids == [
        f"MJ::JOB::upsample::1::{JOB}",
        f"MJ::JOB::upsample::2::{JOB}",
        f"MJ::JOB::reroll::0::{JOB}::SOLO",
        f"MJ::JOB::variation::1::{JOB}",
    ]
    assert change.buttons[2] == Button(custom_id=f"MJ::JOB::reroll::0::{JOB}::SOLO", emoji="🔄", style=2)
    assert change.buttons[0].label == "U1"
    assert change.message_flags == 0
    assert change.referenced_message_id == "1249999999999999999"
    assert change.channel_id == "222"
    assert change.author_id == MIDJOURNEY_BOT_ID
    assert change.bot == "MID_JOURNEY"
    assert change.content == data["content"]


def test_final_without_attachment_takes_hash_from_buttons() -> None:
    change = create(msg(f"**cat** - <@{USER}> (fast)", components=grid_buttons()))
    assert (change.kind, change.hash) == ("done", JOB)


@pytest.mark.parametrize(
    ("words", "action", "index"),
    [
        ("", "IMAGINE", None),
        ("Image #2 ", "UPSCALE", 2),
        ("Upscaled by ", "UPSCALE", None),
        ("Upscaled (Subtle) by ", "UPSCALE", None),
        ("Upscaled (Creative) by ", "UPSCALE", None),
        ("Upscaling (2x) by ", "UPSCALE", None),
        ("Variations by ", "VARIATION", None),
        ("Variations (Strong) by ", "VARIATION", None),
        ("Variations (Region) by ", "VARIATION", None),
        ("Remix (Subtle) by ", "VARIATION", None),
        ("Remix (Strong) by ", "VARIATION", None),
        ("Zoom Out by ", "ZOOM", None),
        ("Pan Left by ", "PAN", None),
        ("Pan Right by ", "PAN", None),
        ("Pan Up by ", "PAN", None),
        ("Pan Down by ", "PAN", None),
    ],
)
def test_final_action_from_words(words: str, action: str, index: int | None) -> None:
    tail = "" if words.startswith("Image") else " (fast)"
    change = create(msg(f"**cat --v 6** - {words}<@{USER}>{tail}", attachments=png(f"u_cat_{JOB}.png")))
    assert (change.kind, change.action, change.index, change.prompt) == ("done", action, index, "cat --v 6")


def test_plain_final_after_button_click_is_reroll() -> None:
    change = create(msg(f"**cat** - <@{USER}> (fast)", interaction_metadata={"id": "9", "type": 3}))
    assert (change.kind, change.action, change.interaction_id) == ("done", "REROLL", "9")


def test_plain_final_of_blend_interaction_is_blend() -> None:
    change = create(
        msg(
            f"**<https://s.mj.run/a> <https://s.mj.run/b>** - <@{USER}> (fast)",
            interaction={"id": "3", "type": 2, "name": "blend"},
        )
    )
    assert change.action == "BLEND"


def test_final_edit_is_ignored_but_keeps_fields() -> None:
    change = update(
        msg(f"**cat** - <@{USER}> (fast)", attachments=png(f"u_cat_{JOB}.png"), components=grid_buttons())
    )
    assert change.kind == "ignore"
    assert (change.action, change.hash, change.prompt) == ("IMAGINE", JOB, "cat")
    assert len(change.buttons) == 4


def test_swap_face_image_reply_is_done() -> None:
    data = msg("", author=INSIGHT_FACE_BOT_ID, nonce="44", attachments=png("swapped_face.jpg", query=""))
    change = create(data)
    assert (change.kind, change.action, change.bot) == ("done", "SWAP_FACE", "INSIGHT_FACE")
    assert change.image_url == f"{CDN}/swapped_face.jpg"


def test_swap_face_text_reply_is_ignored() -> None:
    change = create(msg("id saved", author=INSIGHT_FACE_BOT_ID, nonce="44"))
    assert (change.kind, change.action, change.nonce) == ("ignore", "SWAP_FACE", "44")


def test_niji_author_is_parsed() -> None:
    change = create(msg(f"**girl --niji 6** - <@{USER}> (relaxed)", author=NIJI_BOT_ID))
    assert (change.kind, change.mode, change.bot) == ("done", SpeedMode.RELAX, "NIJI_JOURNEY")


def test_other_authors_are_ignored() -> None:
    data = msg(f"**cat** - <@{USER}> (fast)", author="4242")
    data["author"]["bot"] = False
    assert create(data).kind == "ignore"


def test_missing_author_is_parsed_leniently() -> None:
    data = msg(f"**cat** - <@{USER}> (fast)")
    del data["author"]
    assert create(data).kind == "done"


# ---------------------------------------------------------------- modes and tails


@pytest.mark.parametrize(
    ("group", "mode", "stealth"),
    [
        ("(fast)", SpeedMode.FAST, False),
        ("(relaxed)", SpeedMode.RELAX, False),
        ("(turbo)", SpeedMode.TURBO, False),
        ("(fast, stealth)", SpeedMode.FAST, True),
        ("(relaxed, stealth)", SpeedMode.RELAX, True),
        ("(turbo, stealth)", SpeedMode.TURBO, True),
    ],
)
def test_mode_groups(group: str, mode: SpeedMode, stealth: bool) -> None:
    change = create(msg(f"**cat** - <@{USER}> {group}"))
    assert (change.mode, change.stealth) == (mode, stealth)


@pytest.mark.parametrize(
    "tail",
    [
        "(Open on website for full quality) (fast)",
        "[(Open on website for full quality)](<https://midjourney.com/jobs/x>) (fast)",
        "[Open](https://midjourney.com/jobs/x) (fast) ✨",
        "(fast) <:emoji:123>",
    ],
)
def test_mode_survives_extra_groups_links_and_emoji(tail: str) -> None:
    change = create(msg(f"**cat** - Variations (Strong) by <@{USER}> {tail}"))
    assert (change.kind, change.action, change.mode, change.prompt) == (
        "done",
        "VARIATION",
        SpeedMode.FAST,
        "cat",
    )


def test_mode_inside_prompt_is_not_the_mode() -> None:
    change = create(msg(f"**a photo (fast) (relaxed)** - Image #1 <@{USER}>"))
    assert (change.mode, change.index, change.prompt) == (None, 1, "a photo (fast) (relaxed)")


def test_legacy_mention_with_bang() -> None:
    change = create(msg(f"**cat** - <@!{USER}> (turbo)"))
    assert (change.user_id, change.mode) == (USER, SpeedMode.TURBO)


# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize(
    "prompt",
    [
        "<https://s.mj.run/pnvVhedeTbw> <https://s.mj.run/abc> a cat --iw 2",
        "a **bold** cat",
        "a *star* and **more**",
        "***emphatic*** fox",
        "🦊 fox 中文提示词 ✨ --ar 3:2",
        "a cat - with a dash ** - inside",
        "[text](https://example.com) link",
    ],
)
def test_prompt_is_kept_verbatim(prompt: str) -> None:
    change = create(msg(f"**{prompt}** - <@{USER}> (fast)"))
    assert (change.prompt, change.mode) == (prompt, SpeedMode.FAST)


def test_content_without_bold_has_no_prompt() -> None:
    change = create(msg("Done! Your jobs now do not consume fast-hours"))
    assert (change.kind, change.prompt) == ("ignore", None)


# ---------------------------------------------------------------- hash rules


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{CDN}/{JOB}_grid_0.webp{SIGNED}", JOB),
        (f"{CDN}/alice_a_red_fox_{JOB}.png{SIGNED}", JOB),
        (f"{CDN}/alice_a_red_fox_{JOB}.png", JOB),
        (f"https://cdn.midjourney.com/{JOB}/0_0.png", JOB),
        (f"{CDN}/x_{JOB}_0_0.png{SIGNED}", JOB),
        (f"{CDN}/{JOB}_0.mp4{SIGNED}", JOB),
        (f"https://cdn.discordapp.com/ephemeral-attachments/1/2/{JOB}_3_step_7.jpeg{SIGNED}", JOB),
        (f"{CDN}/user_prompt_words_abc123.png{SIGNED}", "abc123"),
        ("1748599984985576.jpg", "1748599984985576"),
        ("", None),
    ],
)
def test_extract_hash(url: str, expected: str | None) -> None:
    assert extract_hash(url) == expected


# ---------------------------------------------------------------- describe and shorten


def test_describe_result() -> None:
    description = "1️⃣ a red fox in snow\n\n2️⃣ a fox, watercolor\n\n3️⃣ fox --ar 3:2\n\n4️⃣ orange fox"
    change = create(
        msg(
            embeds=[{"type": "rich", "description": description, "image": {"url": f"{CDN}/fox.png{SIGNED}"}}],
            components=[
                {
                    "type": 1,
                    "components": [
                        {"type": 2, "style": 2, "emoji": {"name": "1️⃣"}, "custom_id": "MJ::Job::PicReader::1"},
                        {"type": 2, "style": 2, "emoji": {"name": "🔄"}, "custom_id": "MJ::Picread::Retry"},
                    ],
                }
            ],
            interaction_metadata={"id": "5", "type": 2, "name": "describe"},
        )
    )
    assert (change.kind, change.action) == ("describe", "DESCRIBE")
    assert change.prompts == ["a red fox in snow", "a fox, watercolor", "fox --ar 3:2", "orange fox"]
    assert change.embed_description == description
    assert change.image_url == f"{CDN}/fox.png{SIGNED}"
    assert change.hash == "fox"


def test_describe_result_on_update() -> None:
    change = update(msg(embeds=[{"description": "1️⃣ one\n2️⃣ two"}], interaction={"name": "describe"}))
    assert (change.kind, change.prompts) == ("describe", ["one", "two"])


def test_describe_placeholder_with_nonce_is_start() -> None:
    change = create(
        msg(nonce="7", embeds=[{"type": "rich", "image": {"url": "x.png"}}], interaction={"name": "describe"})
    )
    assert (change.kind, change.action) == ("start", "DESCRIBE")


def test_shorten_result_by_footer() -> None:
    description = (
        "## Important tokens\n**cat** (1.00)\n██████████ cat\n## Shortened prompts\n1️⃣ cat, fluffy\n\n2️⃣ cat"
    )
    change = create(
        msg(
            embeds=[
                {
                    "description": description,
                    "footer": {"text": "Click on a button to imagine one of the shortened prompts"},
                }
            ]
        )
    )
    assert (change.kind, change.action, change.prompts) == ("shorten", "SHORTEN", ["cat, fluffy", "cat"])
    assert change.embed_description == description


def test_shorten_result_by_interaction_name() -> None:
    change = create(
        msg(embeds=[{"description": "1️⃣ a\n2️⃣ b"}], interaction_metadata={"id": "1", "name": "shorten"})
    )
    assert (change.kind, change.prompts) == ("shorten", ["a", "b"])


# ---------------------------------------------------------------- errors and notices


@pytest.mark.parametrize(
    ("title", "color"),
    [
        ("Invalid prompt", 16711680),
        ("Banned prompt detected", None),
        ("Request cancelled due to output filters", 16711680),
        ("Credits exhausted", None),
        ("Subscription required", None),
        ("Pending mod message", None),
        ("Blocked", None),
        ("Something unknown", 16711680),
    ],
)
def test_error_embeds(title: str, color: int | None) -> None:
    embed: dict[str, Any] = {"type": "rich", "title": title, "description": "why"}
    if color is not None:
        embed["color"] = color
    change = create(msg(embeds=[embed], nonce="77"))
    assert change.kind == "error"
    assert change.error is not None
    assert (change.error.title, change.error.description, change.nonce) == (title, "why", "77")


def test_error_embed_replacing_content_on_update() -> None:
    change = update(
        msg(f"**cat** - <@{USER}> (3%) (fast)", embeds=[{"title": "Invalid parameter", "color": 16711680}])
    )
    assert change.kind == "error"


def test_job_queued_is_queued() -> None:
    change = create(
        msg(embeds=[{"title": "Job queued", "description": "wait", "color": 16776960}], nonce="9")
    )
    assert change.kind == "queued"
    assert change.error is not None and change.error.title == "Job queued"


def test_notice_embed_without_error_signs_is_ignored() -> None:
    change = create(
        msg(embeds=[{"title": "Your info - alice", "description": "**Job Mode**: Fast", "color": 65280}])
    )
    assert (change.kind, change.embed_title) == ("ignore", "Your info - alice")


def test_link_unfurl_is_not_an_error() -> None:
    change = create(msg(f"**cat** - <@{USER}> (fast)", embeds=[{"type": "link", "title": "Error page"}]))
    assert change.kind == "done"


def test_failed_to_process_your_command() -> None:
    change = create(msg("Failed to process your command", nonce="12"))
    assert change.kind == "error"
    assert change.error is not None
    assert change.error.title == "Failed to process your command"
    assert change.nonce == "12"


# ---------------------------------------------------------------- seed DM


def test_seed_dm_carries_seed_and_job_id() -> None:
    content = f"**a red fox --ar 16:9**\n**Job ID**: {JOB}\n**seed** 3456789012"
    change = create(msg(content, channel_id="999"))
    assert change.kind == "ignore"
    assert (change.seed, change.hash, change.prompt) == ("3456789012", JOB, "a red fox --ar 16:9")


# ---------------------------------------------------------------- other events


def test_message_delete_is_ignore_with_message_id() -> None:
    change = parse_event("MESSAGE_DELETE", {"id": "55", "channel_id": "222", "guild_id": "111"})
    assert (change.kind, change.message_id, change.channel_id) == ("ignore", "55", "222")


@pytest.mark.parametrize("event", ["INTERACTION_CREATE", "INTERACTION_SUCCESS"])
def test_interaction_ack_links_nonce_to_interaction(event: str) -> None:
    change = parse_event(event, {"id": "1250000000000000003", "nonce": "1250000000000000001"})
    assert (change.kind, change.nonce, change.interaction_id, change.message_id) == (
        "ignore",
        "1250000000000000001",
        "1250000000000000003",
        None,
    )


def test_interaction_failure_is_error() -> None:
    change = parse_event("INTERACTION_FAILURE", {"id": "3", "nonce": "1"})
    assert (change.kind, change.nonce, change.interaction_id) == ("error", "1", "3")
    assert change.error is not None and change.error.title == "Interaction failed"


def test_custom_zoom_modal() -> None:
    change = parse_event(
        "INTERACTION_MODAL_CREATE",
        {
            "id": "88",
            "nonce": "1",
            "channel_id": "222",
            "custom_id": f"MJ::OutpaintCustomZoomModal::{JOB}",
            "title": "Zoom Out",
            "components": [
                {
                    "type": 1,
                    "components": [
                        {
                            "type": 4,
                            "custom_id": "MJ::OutpaintCustomZoomModal::prompt",
                            "value": "cat --zoom 2",
                        }
                    ],
                }
            ],
            "application": {"id": MIDJOURNEY_BOT_ID},
        },
    )
    assert (change.kind, change.action, change.hash, change.prompt) == ("modal", "ZOOM", JOB, "cat --zoom 2")
    assert change.custom_ids == [f"MJ::OutpaintCustomZoomModal::{JOB}", "MJ::OutpaintCustomZoomModal::prompt"]
    assert (change.modal_custom_id, change.interaction_id, change.nonce) == (
        f"MJ::OutpaintCustomZoomModal::{JOB}",
        "88",
        "1",
    )
    assert change.bot == "MID_JOURNEY"


@pytest.mark.parametrize(
    ("custom_id", "action", "index"),
    [
        (f"MJ::RemixModal::{JOB}::3::1", "VARIATION", 3),
        (f"MJ::PanModal::left::{JOB}::1", "PAN", 1),
        ("MJ::Picreader::Modal::2", None, 2),
        ("MJ::ImagineModal::1250000000000000010", None, None),
    ],
)
def test_modal_custom_ids(custom_id: str, action: str | None, index: int | None) -> None:
    change = parse_event("INTERACTION_MODAL_CREATE", {"id": "1", "nonce": "2", "custom_id": custom_id})
    assert (change.kind, change.action, change.index) == ("modal", action, index)


def test_vary_region_iframe_is_modal() -> None:
    change = parse_event(
        "INTERACTION_IFRAME_MODAL_CREATE",
        {
            "id": "4",
            "nonce": "5",
            "custom_id": "MJ::iframe::tok",
            "title": "Vary Region",
            "iframe_path": "/inpaint/x",
        },
    )
    assert (change.kind, change.modal_custom_id, change.hash) == ("modal", "MJ::iframe::tok", None)


def test_captcha_iframe_is_error() -> None:
    change = parse_event(
        "INTERACTION_IFRAME_MODAL_CREATE",
        {
            "id": "4",
            "nonce": "5",
            "custom_id": "MJ::iframe::tok",
            "title": "Action required to continue",
            "iframe_path": "/captcha/embedded/x",
            "application": {"id": MIDJOURNEY_BOT_ID},
        },
    )
    assert change.kind == "error"
    assert change.error is not None and change.error.title == "Action required to continue"
    assert (change.nonce, change.modal_custom_id) == ("5", "MJ::iframe::tok")


@pytest.mark.parametrize(
    ("event", "data"),
    [("READY", {"session_id": "x"}), ("MESSAGE_CREATE", None), ("MESSAGE_CREATE", [1]), (None, {})],
)
def test_unknown_shapes_are_ignored(event: Any, data: Any) -> None:
    assert parse_event(event, data).kind == "ignore"


# ---------------------------------------------------------------- typed payloads, raw or decoded


def test_raw_bytes_parse_like_the_decoded_payload() -> None:
    data = msg(f"**cat** - Image #2 <@{USER}> (relaxed)", attachments=png(f"alice_cat_{JOB}.png"))
    change = create(data)
    assert (change.kind, change.action, change.index, change.mode) == ("done", "UPSCALE", 2, SpeedMode.RELAX)
    assert parse_event("MESSAGE_CREATE", json.dumps(data).encode()) == change
    assert parse_event("MESSAGE_CREATE", bytearray(json.dumps(data).encode())) == change


def test_integer_nonce_in_raw_bytes_is_kept_as_string() -> None:
    raw = b'{"content": "**cat** - <@1> (Waiting to start)", "nonce": 1250000000000000001}'
    assert parse_event("MESSAGE_CREATE", raw).nonce == "1250000000000000001"
    ack = parse_event("INTERACTION_SUCCESS", b'{"id": "9", "nonce": 77}')
    assert (ack.nonce, ack.interaction_id) == ("77", "9")


@pytest.mark.parametrize(
    "extra",
    [
        {"content": 5},
        {"nonce": True},
        {"flags": "64"},
        {"author": "Midjourney Bot"},
        {"embeds": [{"color": "red"}]},
        {"components": [{"type": 1, "components": [{"custom_id": 7}]}]},
        {"id": 1250000000000000010},
    ],
)
def test_payload_with_wrong_types_is_malformed_and_ignored(extra: dict[str, Any]) -> None:
    data = msg(f"**cat** - <@{USER}> (fast)", nonce="3") | extra
    assert create(data).kind == "ignore"
    assert parse_event("MESSAGE_CREATE", json.dumps(data).encode()).kind == "ignore"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b"null", b'{"content": "**cat', b"\xff"])
def test_bytes_that_are_not_a_payload_are_ignored(raw: bytes) -> None:
    change = parse_event("MESSAGE_CREATE", raw)
    assert (change.kind, change.event) == ("ignore", "MESSAGE_CREATE")


def test_nulls_and_unknown_fields_are_accepted() -> None:
    data = msg(f"**cat** - <@{USER}> (fast)")
    data |= {"interaction": None, "message_reference": None, "embeds": None, "sticker_items": [{"id": "1"}]}
    assert create(data).kind == "done"


# ---------------------------------------------------------------- CLI


KEYS = ["kind", "action", "progress", "prompt", "mode", "index", "hash", "messageId", "nonce", "imageUrl"]
KEYS += ["customIds", "prompts", "error"]


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"not json",
        b"[1,2]",
        b"42",
        b'{"t": 5, "d": {}}',
        b'{"d": {}}',
        b'{"t": "X"}',
        b"\xff\xfe",
    ],
)
def test_cli_line_never_fails(line: bytes) -> None:
    out = json.loads(parse_line(line))
    assert list(out) == KEYS
    assert out["kind"] == "ignore"
    assert (out["customIds"], out["prompts"], out["error"]) == ([], [], None)


def test_cli_line_omits_worker_fields() -> None:
    line = json.dumps({"t": "MESSAGE_CREATE", "d": msg(f"**cat** - <@{USER}> (fast)", nonce="3")})
    out = json.loads(parse_line(line.encode()))
    assert list(out) == KEYS
    assert (out["kind"], out["prompt"], out["mode"], out["nonce"]) == ("done", "cat", "fast", "3")


def test_cli_main_answers_every_line_in_order() -> None:
    lines = [
        json.dumps({"t": "MESSAGE_DELETE", "d": {"id": "1"}}),
        "",
        "garbage",
        json.dumps({"t": "INTERACTION_FAILURE", "d": {"id": "2", "nonce": "3"}}),
    ]
    src = io.BytesIO(("\n".join(lines) + "\n").encode())
    dst = io.BytesIO()
    assert main(src, dst) == 0
    out = [json.loads(x) for x in dst.getvalue().splitlines()]
    assert [o["kind"] for o in out] == ["ignore", "ignore", "ignore", "error"]
    assert out[0]["messageId"] == "1"
    assert out[3]["nonce"] == "3"


def test_interaction_failed_spelling_is_an_error_too() -> None:
    from workers.parser import parse_event

    change = parse_event("INTERACTION_FAILED", {"id": "1", "nonce": "2"})
    assert change.kind == "error"
    assert change.nonce == "2"
