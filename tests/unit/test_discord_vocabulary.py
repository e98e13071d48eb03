"""The shared Discord vocabulary (`broker.discord`): bot ids, speed words, the custom_id catalogue."""

from __future__ import annotations

import pytest

from broker.discord import (
    BOT_IDS,
    INSIGHTFACE_ID,
    MIDJOURNEY_ID,
    NIJI_ID,
    SPEED_WORDS,
    ButtonKind,
    CustomId,
    application_id_for,
    bot_type_of,
    cancel_button_id,
    grid_button_id,
    parse_custom_id,
    speed_word,
)
from broker.models import BotType, SpeedMode

H = "5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab"


@pytest.mark.parametrize(
    ("app_id", "bot_type"),
    [
        (MIDJOURNEY_ID, BotType.MID_JOURNEY),
        (NIJI_ID, BotType.NIJI_JOURNEY),
        (INSIGHTFACE_ID, BotType.INSIGHT_FACE),
    ],
)
def test_bot_ids_and_bot_types_map_both_ways(app_id: str, bot_type: BotType) -> None:
    assert bot_type_of(app_id) is bot_type
    assert application_id_for(bot_type) == app_id
    assert application_id_for(bot_type.value) == app_id
    assert app_id in BOT_IDS


def test_unknown_authors_are_no_bot_and_tasks_default_to_midjourney() -> None:
    assert bot_type_of("4242") is None
    assert bot_type_of(None) is None
    assert application_id_for(None) == MIDJOURNEY_ID


def test_speed_words_read_and_written_as_the_bot_does() -> None:
    assert SPEED_WORDS == {
        "fast": SpeedMode.FAST,
        "relaxed": SpeedMode.RELAX,
        "relax": SpeedMode.RELAX,
        "turbo": SpeedMode.TURBO,
    }
    assert [speed_word(m) for m in SpeedMode] == ["fast", "relax", "turbo"]


@pytest.mark.parametrize(
    ("custom_id", "kind", "arg"),
    [
        (f"MJ::JOB::upsample::3::{H}", ButtonKind.UPSCALE, "3"),
        (f"MJ::JOB::variation::2::{H}", ButtonKind.VARIATION, "2"),
        (f"MJ::JOB::reroll::0::{H}::SOLO", ButtonKind.REROLL, "0"),
        (f"MJ::JOB::high_variation::1::{H}::SOLO", ButtonKind.VARY_STRONG, "1"),
        (f"MJ::JOB::low_variation::1::{H}::SOLO", ButtonKind.VARY_SUBTLE, "1"),
        (f"MJ::JOB::pan_down::1::{H}::SOLO", ButtonKind.PAN, "1"),
        (f"MJ::JOB::upsample_v6r1_2x_creative::1::{H}::SOLO", ButtonKind.UPSCALE_HD, "1"),
        (f"MJ::JOB::upsample_v5_4x::1::{H}::SOLO", ButtonKind.UPSCALE_HD, "1"),
        (f"MJ::JOB::animate_low::1::{H}::SOLO", ButtonKind.ANIMATE, "1"),
        (f"MJ::JOB::animate_high_extend::2::{H}", ButtonKind.ANIMATE_EXTEND, "2"),
        (f"MJ::JOB::video_virtual_upscale::4::{H}", ButtonKind.VIDEO_UPSCALE, "4"),
        (f"MJ::Outpaint::75::1::{H}::SOLO", ButtonKind.ZOOM_OUT, "75"),
        (f"MJ::CustomZoom::{H}", ButtonKind.CUSTOM_ZOOM, ""),
        (f"MJ::Inpaint::1::{H}::SOLO", ButtonKind.VARY_REGION, ""),
        ("MJ::Job::PicReader::all", ButtonKind.DESCRIBE_PICK, "all"),
        ("MJ::Picread::Retry", ButtonKind.DESCRIBE_RETRY, ""),
        ("MJ::Job::PromptAnalyzer::ShowDetails", ButtonKind.SHORTEN_PICK, "ShowDetails"),
        (f"MJ::BOOKMARK::{H}", ButtonKind.BOOKMARK, ""),
        (f"MJ::RemixModal::{H}::3::1", ButtonKind.REMIX_MODAL, "3"),
        ("MJ::RemixModal::new_prompt", ButtonKind.REMIX_MODAL, ""),
        (f"MJ::PanModal::left::{H}::2", ButtonKind.PAN_MODAL, "2"),
        (f"MJ::OutpaintCustomZoomModal::{H}", ButtonKind.CUSTOM_ZOOM_MODAL, ""),
        ("MJ::ImagineModal::1250000000000000010", ButtonKind.IMAGINE_MODAL, ""),
        ("MJ::Picreader::Modal::4", ButtonKind.DESCRIBE_MODAL, "4"),
        ("MJ::PicReader::Modal::PromptField", ButtonKind.DESCRIBE_MODAL, "PromptField"),
        (f"MJ::AnimateModal::{H}::2::low::1", ButtonKind.ANIMATE_MODAL, "2"),
        ("MJ::iframe::tok", ButtonKind.IFRAME, ""),
    ],
)
def test_custom_id_catalogue(custom_id: str, kind: ButtonKind, arg: str) -> None:
    assert parse_custom_id(custom_id) == CustomId(kind, arg)


@pytest.mark.parametrize(
    "custom_id",
    [
        "",
        "MJ",
        "MJ::CancelJob::ByJobid",
        f"MJ::Outpaint::60::1::{H}",
        f"MJ::JOB::dance::1::{H}",
        "XX::JOB::x",
    ],
)
def test_ids_outside_the_catalogue_have_no_kind(custom_id: str) -> None:
    assert parse_custom_id(custom_id) is None


def test_grid_buttons_built_from_a_hash_read_back_as_themselves() -> None:
    assert grid_button_id(ButtonKind.UPSCALE, H, 2) == f"MJ::JOB::upsample::2::{H}"
    assert grid_button_id(ButtonKind.REROLL, H) == f"MJ::JOB::reroll::0::{H}::SOLO"
    assert parse_custom_id(grid_button_id(ButtonKind.VARIATION, H, 4)) == CustomId(ButtonKind.VARIATION, "4")
    with pytest.raises(KeyError):
        grid_button_id(ButtonKind.PAN, H, 1)


# ---- the rest of the catalogue (issue 12 part 4) ----


@pytest.mark.parametrize(
    ("custom_id", "kind", "arg"),
    [
        (f"MJ::Outpaint::50::1::{H}::SOLO", ButtonKind.ZOOM_OUT, "50"),
        (f"MJ::Outpaint::100::1::{H}::SOLO", ButtonKind.ZOOM_OUT, "100"),  # Make Square
        (f"MJ::JOB::upsample_v5_2x::1::{H}::SOLO", ButtonKind.UPSCALE_HD, "1"),
        (f"MJ::JOB::upsample_v6_2x_subtle::1::{H}::SOLO", ButtonKind.UPSCALE_HD, "1"),
        (f"MJ::JOB::upsample_v7_2x_creative::1::{H}::SOLO", ButtonKind.UPSCALE_HD, "1"),
        (f"MJ::CancelJob::ByJobid::{H}", ButtonKind.CANCEL_JOB, ""),
    ],
)
def test_make_square_old_upscales_and_cancel_are_in_the_catalogue(
    custom_id: str, kind: ButtonKind, arg: str
) -> None:
    assert parse_custom_id(custom_id) == CustomId(kind, arg)


def test_cancel_button_is_built_from_the_job_hash() -> None:
    assert cancel_button_id(H) == f"MJ::CancelJob::ByJobid::{H}"
    assert parse_custom_id(cancel_button_id(H)) == CustomId(ButtonKind.CANCEL_JOB)
