"""Button presses as pure functions: a parent task + a customId -> the child task to run.

The mapping follows midjourney-proxy's `/mj/submit/action` (reference/mj-api.md §5) and the bots'
customId catalogue (reference/discord-protocol.md §5). Nothing here does I/O; the caller supplies
the parent, the account's remix switch, the new id and the clock.
"""

from __future__ import annotations

import re

import msgspec

from broker.discord import ButtonKind, CustomId, grid_button_id, parse_custom_id
from broker.errors import ParentNotReady, UnknownCustomId, ValidationFailed, echo
from broker.models import BotType, Task, TaskAction, TaskProperties, TaskStatus

__all__ = [
    "MODAL_MASK",
    "MODAL_PROMPT",
    "MODAL_ZOOM",
    "ActionPlan",
    "build_child",
    "legacy_custom_id",
    "numbered_prompts",
    "parse_simple_change",
    "plan_action",
]

#: what /mj/submit/modal must bring for the parked task
MODAL_PROMPT = "prompt"
MODAL_ZOOM = "zoom"
MODAL_MASK = "mask"

_KEYCAP = re.compile(r"^\s*([1-9])\ufe0f?\u20e3\s*(.+?)\s*$", re.MULTILINE)
_SIMPLE_CHANGE = re.compile(r"^\s*(\d+)\s+(?:([UV])([1-4])|(R))\s*$", re.IGNORECASE)
#: parents whose 🔄 cannot be rerun (midjourney-proxy answers "this task cannot be rerolled")
_NO_REROLL = frozenset({TaskAction.REROLL, TaskAction.SWAP_FACE, TaskAction.VIDEO_EXTEND})
#: parents the legacy /change accepts
_CHANGEABLE = frozenset({TaskAction.IMAGINE, TaskAction.VARIATION, TaskAction.REROLL, TaskAction.BLEND})


class ActionPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What pressing a button will do."""

    action: TaskAction
    #: which image of the grid (U1..U4, V1..V4); 1 for single-image actions
    index: int | None = None
    #: None = runs at once; else what the modal needs ("prompt", "zoom", "mask")
    modal_kind: str | None = None
    #: the child's prompt (prefilled into the modal when there is one)
    prompt: str | None = None
    #: the ❤️ button: pressed for the user, no task created
    bookmark: bool = False
    description: str = ""
    #: the modal is the account's remix dialog (V/R/pan/vary on a remix account): the broker may
    #: answer it itself with the parent's prompt (`Account.remix_auto_submit`)
    remix_modal: bool = False
    #: describe's "🎉 Imagine all": one imagine per prompt, as (PicReader custom_id, prompt) pairs
    picks: list[tuple[str, str]] = msgspec.field(default_factory=list)


def numbered_prompts(text: str | None) -> dict[int, str]:
    """The `1️⃣ ...` lines of a describe or shorten result, by number."""
    if not text:
        return {}
    return {int(m.group(1)): m.group(2) for m in _KEYCAP.finditer(text)}


def _base_prompt(parent: Task) -> str | None:
    # DESCRIBE and SHORTEN keep their text result in finalPrompt: that is not a prompt to rerun.
    if parent.action in (TaskAction.DESCRIBE, TaskAction.SHORTEN):
        return parent.prompt
    return parent.properties.final_prompt or parent.prompt


def _int(text: str, low: int, high: int, custom_id: str) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise UnknownCustomId(f"unknown customId {echo(custom_id)}")
    return int(text)


def plan_action(
    parent: Task,
    custom_id: str,
    *,
    remix: bool,
    enable_remix: bool = False,
    require_button: bool = True,
) -> ActionPlan:
    """Map `custom_id` pressed on `parent` to the child action.

    :param remix: the account's remix switch for the parent's bot (`niji_remix` for Niji).
    :param enable_remix: the request's `enableRemix`: force the remix modal (4 when remix is off).
    :param require_button: the customId must be one of the parent's buttons (the legacy /change
        builds its customId from the message hash and passes False).
    Raises `ParentNotReady` unless the parent is SUCCESS, `UnknownCustomId` for anything unknown.
    """
    if parent.status != TaskStatus.SUCCESS:
        raise ParentNotReady(parent.id, parent.status, TaskStatus.SUCCESS)
    button = next((b for b in parent.buttons if b.custom_id == custom_id), None)
    if require_button and button is None:
        raise UnknownCustomId(f"customId {echo(custom_id)} is not a button of task {parent.id}")
    if enable_remix and not remix:
        raise ValidationFailed(f"remix is off for the account of task {parent.id}")
    remix_kind = MODAL_PROMPT if (remix or enable_remix) else None
    prompt = _base_prompt(parent)

    def plan(action: TaskAction, index: int | None = 1, modal: str | None = None, **kw: object) -> ActionPlan:
        text = kw.pop("prompt", prompt)
        return ActionPlan(
            action=action,
            index=index,
            modal_kind=modal,
            prompt=text if isinstance(text, str) else None,
            description=str(kw.get("description", f"/action {custom_id}")),
            remix_modal=modal is not None and bool(kw.pop("remix", False)),
        )

    if button is not None and button.label.strip().lower() == "show details":
        return plan(TaskAction.SHORTEN, None)
    parsed = parse_custom_id(custom_id)
    kind, arg = (parsed.kind, parsed.arg) if parsed is not None else (None, "")
    if kind is ButtonKind.UPSCALE:
        n = _int(arg, 1, 4, custom_id)
        return plan(TaskAction.UPSCALE, n, description=f"/up {parent.id} U{n}")
    if kind is ButtonKind.VARIATION:
        n = _int(arg, 1, 4, custom_id)
        return plan(TaskAction.VARIATION, n, remix_kind, description=f"/up {parent.id} V{n}", remix=True)
    if kind in (ButtonKind.VARY_STRONG, ButtonKind.VARY_SUBTLE):
        return plan(TaskAction.VARIATION, 1, remix_kind, remix=True)
    if kind is ButtonKind.REROLL:
        if parent.action in _NO_REROLL:
            raise ValidationFailed(f"task {parent.id} ({parent.action}) cannot be rerolled")
        action = TaskAction.IMAGINE if parent.action == TaskAction.UPSCALE else parent.action
        return plan(action, None, remix_kind, description=f"/up {parent.id} R", remix=True)
    if kind is ButtonKind.PAN:
        return plan(TaskAction.PAN, 1, remix_kind, remix=True)
    if kind is ButtonKind.UPSCALE_HD:
        return plan(TaskAction.UPSCALE, 1)
    if kind is ButtonKind.ZOOM_OUT:
        return plan(TaskAction.ZOOM, 1)
    if kind is ButtonKind.CUSTOM_ZOOM:
        return plan(TaskAction.ZOOM, 1, MODAL_ZOOM)
    if kind is ButtonKind.VARY_REGION:
        return plan(TaskAction.VARIATION, 1, MODAL_MASK)
    if kind is ButtonKind.DESCRIBE_PICK and arg == "all":
        return _imagine_all(parent, custom_id)
    if kind is ButtonKind.DESCRIBE_PICK:
        n = _int(arg, 1, 4, custom_id)
        return plan(
            TaskAction.IMAGINE,
            n,
            MODAL_PROMPT,
            prompt=numbered_prompts(parent.properties.final_prompt).get(n),
        )
    if kind is ButtonKind.DESCRIBE_RETRY:
        return plan(TaskAction.DESCRIBE, None)
    if kind is ButtonKind.SHORTEN_PICK:
        if arg.lower() in ("showdetails", "show_details"):
            return plan(TaskAction.SHORTEN, None)
        n = _int(arg, 1, 5, custom_id)
        return plan(
            TaskAction.IMAGINE,
            n,
            MODAL_PROMPT,
            prompt=numbered_prompts(parent.properties.final_prompt).get(n),
        )
    if kind is ButtonKind.BOOKMARK:
        # ❤️ only marks the image on Midjourney's side: midjourney-proxy presses it and answers 1 with the
        # parent's id; no task is created, so there is nothing to follow.
        return ActionPlan(action=parent.action, bookmark=True, description=f"/action {custom_id}")
    # -- video buttons (issue 12): 🎞️ Animate on an upscaled image, U1..U4 and Extend of a video
    if kind is ButtonKind.ANIMATE:
        return plan(TaskAction.VIDEO, 1)
    if kind is ButtonKind.VIDEO_UPSCALE:
        n = _int(arg, 1, 4, custom_id)
        return plan(TaskAction.UPSCALE, n)
    if kind is ButtonKind.ANIMATE_EXTEND:
        n = _int(arg, 1, 4, custom_id)
        return plan(TaskAction.VIDEO_EXTEND, n, remix_kind)
    raise UnknownCustomId(f"unknown customId {echo(custom_id)}")


def _imagine_all(parent: Task, custom_id: str) -> ActionPlan:
    """ "Imagine all" under a describe result, the way midjourney-proxy (trueai) runs it.

    Each prompt becomes its own imagine task that presses ``MJ::Job::PicReader::<n>`` and answers its
    modal with that prompt, so every job has its own nonce and its own task to follow, which one
    real "all" click (four jobs behind one nonce) would not give.
    """
    prompts = numbered_prompts(parent.properties.final_prompt)
    picks = [(f"MJ::Job::PicReader::{n}", prompts[n]) for n in range(1, 5) if prompts.get(n)]
    if not picks:
        raise ValidationFailed(f"task {parent.id} has no described prompts to imagine")
    return ActionPlan(
        action=TaskAction.IMAGINE,
        modal_kind=MODAL_PROMPT,
        picks=picks,
        description=f"/action {custom_id}",
    )


def build_child(
    parent: Task,
    plan: ActionPlan,
    *,
    task_id: str,
    now: int,
    custom_id: str,
    state: str | None,
    notify_hook: str | None,
    api_key_name: str | None = None,
    auto_submit: bool = False,
) -> Task:
    """The new task for `plan`: status MODAL when it waits for /modal, else NOT_START.

    :param auto_submit: a remix dialog is answered by the bridge with the plan's prompt (the
        parent's) instead of waiting for /mj/submit/modal.
    """
    props = parent.properties
    parked = plan.modal_kind is not None and not (auto_submit and plan.remix_modal)
    return Task(
        id=task_id,
        action=plan.action,
        status=TaskStatus.MODAL if parked else TaskStatus.NOT_START,
        prompt=plan.prompt,
        prompt_en=plan.prompt,
        description=plan.description,
        state=state,
        submit_time=now,
        properties=TaskProperties(
            discord_instance_id=props.discord_instance_id,
            notify_hook=notify_hook,
            referenced_message_id=props.message_id,
            flags=props.flags,
            message_hash=props.message_hash,
            custom_id=custom_id,
            modal_kind=plan.modal_kind,
            index=plan.index,
            bot_type=parent.bot_type.value,
        ),
        bot_type=parent.bot_type,
        custom_id=custom_id,
        parent_id=parent.id,
        request_mode=parent.request_mode,
        instance_id=parent.instance_id,
        api_key_name=api_key_name,
    )


def legacy_custom_id(parent: Task, action: str, index: int | None) -> str:
    """The customId the legacy /change (`UPSCALE|VARIATION|REROLL`, index) means on `parent`.

    The parent's own button is used when it has one; else the id is built from the message hash.
    """
    if parent.action not in _CHANGEABLE:
        raise ValidationFailed(f"task {parent.id} ({parent.action}) does not support {action}")
    if action == "REROLL":
        kind, index = ButtonKind.REROLL, 0
    else:
        if index is None or not 1 <= index <= 4:
            raise ValidationFailed("index must be 1 to 4")
        kind = ButtonKind.UPSCALE if action == "UPSCALE" else ButtonKind.VARIATION
    wanted = CustomId(kind, str(index))
    for button in parent.buttons:
        if parse_custom_id(button.custom_id) == wanted:
            return button.custom_id
    if not parent.properties.message_hash:
        raise ValidationFailed(f"task {parent.id} has no message hash to build {action} from")
    return grid_button_id(kind, parent.properties.message_hash, index)


def parse_simple_change(content: str) -> tuple[str, str, int | None]:
    """`"<taskId> U2"` -> (taskId, "UPSCALE", 2); V1-4 -> VARIATION; R -> REROLL."""
    match = _SIMPLE_CHANGE.match(content)
    if match is None:
        raise ValidationFailed("content must look like '<taskId> U1' (U1-4, V1-4 or R)")
    task_id, letter, digit, reroll = match.groups()
    if reroll:
        return task_id, "REROLL", None
    return task_id, "UPSCALE" if letter.upper() == "U" else "VARIATION", int(digit)


def remix_for(bot_type: BotType, *, remix: bool, niji_remix: bool) -> bool:
    """The account's remix switch that applies to a task of `bot_type`."""
    return niji_remix if bot_type == BotType.NIJI_JOURNEY else remix
