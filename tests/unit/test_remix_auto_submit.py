"""Remix behind relays (`remix_auto_submit`): which presses answer the remix dialog themselves."""

from __future__ import annotations

import pytest

from broker.actions import MODAL_PROMPT, build_child, plan_action
from broker.config import Account
from broker.eligibility import AccountFilter, candidates
from broker.models import BotType, Button, SpeedMode, Task, TaskAction, TaskProperties, TaskStatus

H = "4c3a5e2f-1111-2222-3333-444455556666"
V2 = f"MJ::JOB::variation::2::{H}"
REROLL = f"MJ::JOB::reroll::0::{H}::SOLO"
PAN = f"MJ::JOB::pan_left::1::{H}::SOLO"
STRONG = f"MJ::JOB::high_variation::1::{H}::SOLO"
ZOOM = f"MJ::CustomZoom::{H}"
PICK = "MJ::Job::PicReader::1"


def _parent(action: TaskAction = TaskAction.IMAGINE, *ids: str, final: str = "a cat --v 6") -> Task:
    return Task(
        id="1700000000000123",
        action=action,
        status=TaskStatus.SUCCESS,
        prompt="a cat",
        properties=TaskProperties(final_prompt=final, message_id="m1", message_hash=H, flags=0),
        buttons=[Button(custom_id=c) for c in ids or (V2, REROLL, PAN, STRONG, ZOOM)],
        instance_id="a1",
        request_mode=SpeedMode.RELAX,
    )


def _child(parent: Task, custom_id: str, *, auto_submit: bool, enable_remix: bool = False) -> Task:
    plan = plan_action(parent, custom_id, remix=True, enable_remix=enable_remix)
    return build_child(
        parent,
        plan,
        task_id="1700000000000999",
        now=5,
        custom_id=custom_id,
        state=None,
        notify_hook=None,
        auto_submit=auto_submit,
    )


@pytest.mark.parametrize("custom_id", [V2, REROLL, PAN, STRONG])
def test_remix_presses_run_at_once_with_the_parents_prompt(custom_id: str) -> None:
    child = _child(_parent(), custom_id, auto_submit=True)
    assert child.status == TaskStatus.NOT_START
    # the bridge still expects the remix dialog and answers it with this prompt
    assert child.properties.modal_kind == MODAL_PROMPT and child.prompt == "a cat --v 6"


@pytest.mark.parametrize("custom_id", [V2, REROLL, PAN, STRONG])
def test_remix_presses_park_without_auto_submit(custom_id: str) -> None:
    assert _child(_parent(), custom_id, auto_submit=False).status == TaskStatus.MODAL


def test_enable_remix_parks_whatever_auto_submit_says() -> None:
    # the API passes auto_submit only when the request did not set enableRemix
    child = _child(_parent(), V2, auto_submit=False, enable_remix=True)
    assert child.status == TaskStatus.MODAL


def test_dialogs_that_need_the_clients_input_still_park() -> None:
    assert _child(_parent(), ZOOM, auto_submit=True).status == TaskStatus.MODAL
    described = _parent(TaskAction.DESCRIBE, PICK, final="1️⃣ a red fox")
    assert _child(described, PICK, auto_submit=True).status == TaskStatus.MODAL


def test_a_child_inherits_the_parents_requested_mode() -> None:
    assert _child(_parent(), V2, auto_submit=True).request_mode == SpeedMode.RELAX


def test_remix_auto_considered_filters_on_remix_auto_submit() -> None:
    accounts = [
        Account(id="auto", guild_id="1", channel_id="c1", token="t", remix=True),
        Account(id="manual", guild_id="1", channel_id="c2", token="t", remix=True, remix_auto_submit=False),
    ]

    def ids(flag: bool) -> list[str]:
        flt = AccountFilter(remix_auto_considered=flag)
        found = candidates(accounts, bot_type=BotType.MID_JOURNEY, account_filter=flt, modes=[])
        return [a.id for a in found]

    assert ids(True) == ["auto"]
    assert ids(False) == ["manual"]
