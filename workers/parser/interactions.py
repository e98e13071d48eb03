"""INTERACTION_* dispatches: the acks that link a nonce to an interaction id, failures, and modals."""

from __future__ import annotations

from typing import Final

import msgspec

from broker.discord import (
    INTERACTION_CREATE,
    INTERACTION_FAILURE,
    INTERACTION_IFRAME_MODAL_CREATE,
    INTERACTION_MODAL_CREATE,
    INTERACTION_SUCCESS,
    ButtonKind,
    bot_type_of,
    parse_custom_id,
)
from broker.discord_types import InteractionEvent, ModalCreate
from broker.models import TaskAction
from workers.parser.change import Change, ErrorInfo
from workers.parser.content import hash_from_custom_ids
from workers.parser.messages import component_buttons, text_nonce

__all__ = [
    "parse_interaction_create",
    "parse_interaction_failure",
    "parse_interaction_iframe_modal_create",
    "parse_interaction_modal_create",
    "parse_interaction_success",
]

#: modals whose custom_id carries the picked image (or prompt) number
_INDEXED_MODALS: Final = frozenset(
    {ButtonKind.REMIX_MODAL, ButtonKind.PAN_MODAL, ButtonKind.DESCRIBE_MODAL, ButtonKind.ANIMATE_MODAL}
)
_MODAL_ACTION: Final = {
    ButtonKind.REMIX_MODAL: TaskAction.VARIATION,
    ButtonKind.PAN_MODAL: TaskAction.PAN,
    ButtonKind.CUSTOM_ZOOM_MODAL: TaskAction.ZOOM,
}


def _interaction(event: str, d: InteractionEvent) -> Change:
    return Change(
        kind="ignore",
        event=event,
        nonce=text_nonce(d.nonce),
        interaction_id=d.id or None,
        channel_id=d.channel_id or None,
        guild_id=d.guild_id or None,
    )


def parse_interaction_create(d: InteractionEvent) -> Change:
    return _interaction(INTERACTION_CREATE, d)


def parse_interaction_success(d: InteractionEvent) -> Change:
    return _interaction(INTERACTION_SUCCESS, d)


def parse_interaction_failure(d: InteractionEvent) -> Change:
    return msgspec.structs.replace(
        _interaction(INTERACTION_FAILURE, d),
        kind="error",
        error=ErrorInfo(
            title="Interaction failed",
            description="The bot did not acknowledge the interaction (This interaction failed)",
        ),
    )


def _modal(event: str, d: ModalCreate) -> Change:
    modal_id = d.custom_id or ""
    inputs = component_buttons(d.components)
    prefill: str | None = None
    for row in d.components or ():
        for field in row.components or ():
            prefill = prefill or field.value or None
    parsed = parse_custom_id(modal_id)
    index: int | None = None
    action: TaskAction | None = None
    if parsed is not None:
        if parsed.kind in _INDEXED_MODALS and parsed.arg.isdecimal():
            index = int(parsed.arg)
        action = _MODAL_ACTION.get(parsed.kind)
    app_id = (d.application.id if d.application else None) or d.application_id or None
    custom_ids = [modal_id, *(b.custom_id for b in inputs)] if modal_id else [b.custom_id for b in inputs]
    return Change(
        kind="modal",
        event=event,
        action=action,
        prompt=prefill,
        index=index,
        hash=hash_from_custom_ids([modal_id]),
        nonce=text_nonce(d.nonce),
        custom_ids=custom_ids,
        buttons=inputs,
        interaction_id=d.id or None,
        channel_id=d.channel_id or None,
        guild_id=d.guild_id or None,
        author_id=app_id,
        bot=bot_type_of(app_id),
        modal_custom_id=modal_id or None,
        modal_title=d.title,
        iframe_path=d.iframe_path,
    )


def parse_interaction_modal_create(d: ModalCreate) -> Change:
    return _modal(INTERACTION_MODAL_CREATE, d)


def parse_interaction_iframe_modal_create(d: ModalCreate) -> Change:
    change = _modal(INTERACTION_IFRAME_MODAL_CREATE, d)
    title = change.modal_title or ""
    path = change.iframe_path or ""
    if "action required" in title.lower() or path.startswith("/captcha/"):
        # A captcha blocks the account, not one task: no submit can answer it (§4.8).
        return msgspec.structs.replace(
            change,
            kind="error",
            error=ErrorInfo(title=title or "Action required to continue", description=path),
        )
    return change
