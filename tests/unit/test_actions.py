"""Button presses -> child actions, as pure functions."""

from __future__ import annotations

import pytest

from broker.actions import (
    MODAL_MASK,
    MODAL_PROMPT,
    MODAL_ZOOM,
    build_child,
    legacy_custom_id,
    numbered_prompts,
    parse_simple_change,
    plan_action,
    remix_for,
)
from broker.errors import ParentNotReady, UnknownCustomId, ValidationFailed
from broker.models import BotType, Button, Task, TaskAction, TaskProperties, TaskStatus

H = "4c3a5e2f-1111-2222-3333-444455556666"
DESCRIBED = "1️⃣ a red fox, watercolor\n\n2️⃣ a fox in snow\n\n3️⃣ third one --ar 3:2\n\n4️⃣ the fourth"


def _parent(action: TaskAction = TaskAction.IMAGINE, *ids: str, **kw: object) -> Task:
    ids = ids or (
        f"MJ::JOB::upsample::1::{H}",
        f"MJ::JOB::variation::2::{H}",
        f"MJ::JOB::reroll::0::{H}::SOLO",
        f"MJ::JOB::pan_left::1::{H}::SOLO",
        f"MJ::JOB::high_variation::1::{H}::SOLO",
        f"MJ::Outpaint::50::1::{H}::SOLO",
        f"MJ::CustomZoom::{H}",
        f"MJ::Inpaint::1::{H}::SOLO",
        f"MJ::JOB::upsample_v6_2x_subtle::1::{H}::SOLO",
        f"MJ::JOB::upsample_v5_4x::1::{H}::SOLO",
        f"MJ::BOOKMARK::{H}",
        f"MJ::CancelJob::ByJobid::{H}",
    )
    fields: dict[str, object] = {
        "id": "1700000000000123",
        "action": action,
        "status": TaskStatus.SUCCESS,
        "prompt": "a cat",
        "properties": TaskProperties(final_prompt="a cat --v 6", message_id="m1", message_hash=H, flags=0),
        "buttons": [Button(custom_id=c) for c in ids],
        "instance_id": "a1",
    }
    fields.update(kw)
    return Task(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("custom_id", "action", "index", "modal"),
    [
        (f"MJ::JOB::upsample::1::{H}", TaskAction.UPSCALE, 1, None),
        (f"MJ::JOB::variation::2::{H}", TaskAction.VARIATION, 2, None),
        (f"MJ::JOB::reroll::0::{H}::SOLO", TaskAction.IMAGINE, None, None),
        (f"MJ::JOB::pan_left::1::{H}::SOLO", TaskAction.PAN, 1, None),
        (f"MJ::JOB::high_variation::1::{H}::SOLO", TaskAction.VARIATION, 1, None),
        (f"MJ::Outpaint::50::1::{H}::SOLO", TaskAction.ZOOM, 1, None),
        (f"MJ::CustomZoom::{H}", TaskAction.ZOOM, 1, MODAL_ZOOM),
        (f"MJ::Inpaint::1::{H}::SOLO", TaskAction.VARIATION, 1, MODAL_MASK),
        (f"MJ::JOB::upsample_v6_2x_subtle::1::{H}::SOLO", TaskAction.UPSCALE, 1, None),
        (f"MJ::JOB::upsample_v5_4x::1::{H}::SOLO", TaskAction.UPSCALE, 1, None),
    ],
)
def test_grid_buttons_map_to_actions(
    custom_id: str, action: TaskAction, index: int | None, modal: str | None
) -> None:
    plan = plan_action(_parent(), custom_id, remix=False)
    assert (plan.action, plan.index, plan.modal_kind) == (action, index, modal)
    assert plan.prompt == "a cat --v 6"


@pytest.mark.parametrize("name", ["variation::2", "reroll::0", "pan_left::1", "high_variation::1"])
def test_remix_on_sends_variation_reroll_and_pan_to_the_modal(name: str) -> None:
    custom_id = next(b.custom_id for b in _parent().buttons if f"::{name}::" in b.custom_id)
    assert plan_action(_parent(), custom_id, remix=True).modal_kind == MODAL_PROMPT


def test_remix_does_not_touch_upscale() -> None:
    assert plan_action(_parent(), f"MJ::JOB::upsample::1::{H}", remix=True).modal_kind is None


def test_enable_remix_forces_the_modal_but_needs_remix_on() -> None:
    assert plan_action(_parent(), f"MJ::JOB::variation::2::{H}", remix=True, enable_remix=True).modal_kind
    with pytest.raises(ValidationFailed, match="remix is off"):
        plan_action(_parent(), f"MJ::JOB::variation::2::{H}", remix=False, enable_remix=True)


def test_remix_for_niji_uses_niji_switch() -> None:
    assert remix_for(BotType.NIJI_JOURNEY, remix=False, niji_remix=True)
    assert not remix_for(BotType.MID_JOURNEY, remix=False, niji_remix=True)


def test_reroll_of_an_upscale_is_an_imagine_and_of_a_blend_a_blend() -> None:
    rr = f"MJ::JOB::reroll::0::{H}::SOLO"
    assert plan_action(_parent(TaskAction.UPSCALE), rr, remix=False).action == TaskAction.IMAGINE
    assert plan_action(_parent(TaskAction.BLEND), rr, remix=False).action == TaskAction.BLEND
    with pytest.raises(ValidationFailed, match="cannot be rerolled"):
        plan_action(_parent(TaskAction.SWAP_FACE), rr, remix=False)


def test_unknown_or_foreign_custom_id_is_rejected() -> None:
    with pytest.raises(UnknownCustomId, match="unknown customId"):
        plan_action(_parent(), f"MJ::CancelJob::ByJobid::{H}", remix=False)
    with pytest.raises(UnknownCustomId, match="not a button"):
        plan_action(_parent(), f"MJ::JOB::upsample::3::{H}", remix=False)


def test_parent_must_have_succeeded() -> None:
    with pytest.raises(ParentNotReady, match="IN_PROGRESS"):
        plan_action(_parent(status=TaskStatus.IN_PROGRESS), f"MJ::JOB::upsample::1::{H}", remix=False)


def test_bookmark_creates_no_task() -> None:
    assert plan_action(_parent(), f"MJ::BOOKMARK::{H}", remix=False).bookmark


def test_describe_picks_prefill_the_modal_with_prompt_n() -> None:
    ids = [*(f"MJ::Job::PicReader::{n}" for n in range(1, 5)), "MJ::Picread::Retry"]
    parent = _parent(
        TaskAction.DESCRIBE, *ids, prompt=None, properties=TaskProperties(final_prompt=DESCRIBED)
    )
    plan = plan_action(parent, "MJ::Job::PicReader::3", remix=False)
    assert (plan.action, plan.modal_kind, plan.prompt) == (
        TaskAction.IMAGINE,
        MODAL_PROMPT,
        "third one --ar 3:2",
    )
    assert plan_action(parent, "MJ::Picread::Retry", remix=False).action == TaskAction.DESCRIBE


def test_shorten_picks_and_show_details() -> None:
    text = "## Important tokens\nx\n## Shortened prompts\n1️⃣ cat, red\n\n2️⃣ cat\n\n5️⃣ last"
    parent = _parent(
        TaskAction.SHORTEN,
        "MJ::Job::PromptAnalyzer::2",
        "MJ::Job::PromptAnalyzer::ShowDetails",
        properties=TaskProperties(final_prompt=text),
    )
    plan = plan_action(parent, "MJ::Job::PromptAnalyzer::2", remix=False)
    assert (plan.action, plan.modal_kind, plan.prompt) == (TaskAction.IMAGINE, MODAL_PROMPT, "cat")
    details = plan_action(parent, "MJ::Job::PromptAnalyzer::ShowDetails", remix=False)
    assert (details.action, details.prompt) == (TaskAction.SHORTEN, "a cat")
    assert numbered_prompts(text) == {1: "cat, red", 2: "cat", 5: "last"}


def test_child_copies_what_the_bridge_needs_from_the_parent() -> None:
    parent = _parent(mode=None)
    plan = plan_action(parent, f"MJ::JOB::upsample::1::{H}", remix=False)
    child = build_child(
        parent,
        plan,
        task_id="1700000000000999",
        now=5,
        custom_id=f"MJ::JOB::upsample::1::{H}",
        state="s",
        notify_hook=None,
    )
    assert child.parent_id == parent.id and child.instance_id == "a1" and child.status == TaskStatus.NOT_START
    assert child.properties.referenced_message_id == "m1" and child.properties.message_hash == H
    assert child.properties.flags == 0 and child.properties.index == 1
    assert child.custom_id == child.properties.custom_id == f"MJ::JOB::upsample::1::{H}"
    assert child.description == f"/up {parent.id} U1" and child.progress is None


def test_legacy_change_uses_the_parent_button_else_the_hash() -> None:
    assert legacy_custom_id(_parent(), "UPSCALE", 1) == f"MJ::JOB::upsample::1::{H}"
    assert legacy_custom_id(_parent(), "UPSCALE", 4) == f"MJ::JOB::upsample::4::{H}"
    assert legacy_custom_id(_parent(), "REROLL", None) == f"MJ::JOB::reroll::0::{H}::SOLO"
    with pytest.raises(ValidationFailed, match="index"):
        legacy_custom_id(_parent(), "VARIATION", 7)
    with pytest.raises(ValidationFailed, match="does not support"):
        legacy_custom_id(_parent(TaskAction.UPSCALE), "UPSCALE", 1)


def test_simple_change_parses_u_v_and_r() -> None:
    assert parse_simple_change("1700000000000123 U2") == ("1700000000000123", "UPSCALE", 2)
    assert parse_simple_change(" 17 v4 ") == ("17", "VARIATION", 4)
    assert parse_simple_change("17 R") == ("17", "REROLL", None)
    for bad in ("17 U5", "U1", "17 X1", ""):
        with pytest.raises(ValidationFailed):
            parse_simple_change(bad)


# -- video buttons (issue 12 part 3) ---------------------------------------------------------------


def test_animate_on_an_upscaled_image_is_a_video_without_a_modal() -> None:
    ids = (f"MJ::JOB::animate_high::1::{H}::SOLO", f"MJ::JOB::animate_low::1::{H}::SOLO")
    parent = _parent(TaskAction.UPSCALE, *ids)
    for custom_id in ids:
        plan = plan_action(parent, custom_id, remix=True)
        assert (plan.action, plan.index, plan.modal_kind) == (TaskAction.VIDEO, 1, None)


def test_a_videos_u_and_extend_buttons() -> None:
    video = _parent(TaskAction.VIDEO, *(f"MJ::JOB::video_virtual_upscale::{i}::{H}" for i in (1, 2, 3, 4)))
    up = plan_action(video, f"MJ::JOB::video_virtual_upscale::3::{H}", remix=False)
    assert (up.action, up.index) == (TaskAction.UPSCALE, 3)
    one = _parent(TaskAction.UPSCALE, f"MJ::JOB::animate_high_extend::3::{H}")
    plain = plan_action(one, f"MJ::JOB::animate_high_extend::3::{H}", remix=False)
    assert (plain.action, plain.index, plain.modal_kind) == (TaskAction.VIDEO_EXTEND, 3, None)
    remixed = plan_action(one, f"MJ::JOB::animate_high_extend::3::{H}", remix=True)
    assert remixed.modal_kind == MODAL_PROMPT


def test_an_extended_video_cannot_be_rerolled() -> None:
    parent = _parent(TaskAction.VIDEO_EXTEND, f"MJ::JOB::reroll::0::{H}::SOLO")
    with pytest.raises(ValidationFailed, match="cannot be rerolled"):
        plan_action(parent, f"MJ::JOB::reroll::0::{H}::SOLO", remix=False)


# ---- the rest of the catalogue (issue 12 part 4) ----


def test_make_square_is_a_zoom_without_modal() -> None:
    square = f"MJ::Outpaint::100::1::{H}::SOLO"
    plan = plan_action(_parent(TaskAction.UPSCALE, square), square, remix=True)
    assert (plan.action, plan.modal_kind, plan.index) == (TaskAction.ZOOM, None, 1)


def test_imagine_all_plans_one_auto_submitted_pick_per_described_prompt() -> None:
    all_id = "MJ::Job::PicReader::all"
    parent = _parent(
        TaskAction.DESCRIBE, all_id, properties=TaskProperties(final_prompt=DESCRIBED, message_id="m")
    )
    plan = plan_action(parent, all_id, remix=False)
    assert (plan.action, plan.modal_kind) == (TaskAction.IMAGINE, MODAL_PROMPT)
    assert plan.picks == [
        ("MJ::Job::PicReader::1", "a red fox, watercolor"),
        ("MJ::Job::PicReader::2", "a fox in snow"),
        ("MJ::Job::PicReader::3", "third one --ar 3:2"),
        ("MJ::Job::PicReader::4", "the fourth"),
    ]
    empty = _parent(TaskAction.DESCRIBE, all_id, properties=TaskProperties(message_id="m"))
    with pytest.raises(ValidationFailed, match="no described prompts"):
        plan_action(empty, all_id, remix=False)
