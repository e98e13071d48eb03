"""`parse_event`: one dispatch in, one `Change` out, through a table of ``parse_<event>`` functions.

Each dispatch type names its wire shape (`broker.discord_types`) and its parser. Raw bytes are decoded
straight into the shape by a decoder made once per shape; an already-decoded dict is converted into
it. A payload that does not fit its shape is malformed: ``kind="ignore"``, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import msgspec

from broker import discord as dc
from broker.discord_types import InteractionEvent, Message, MessageDelete, ModalCreate
from workers.parser.change import Change
from workers.parser.interactions import (
    parse_interaction_create,
    parse_interaction_failure,
    parse_interaction_iframe_modal_create,
    parse_interaction_modal_create,
    parse_interaction_success,
)
from workers.parser.messages import parse_message_create, parse_message_delete, parse_message_update

__all__ = ["parse_event"]

P = TypeVar("P", bound=msgspec.Struct)
#: what `parse_event` reads raw: the dispatch's ``d`` as the gateway sent it
_RAW = (bytes, bytearray, memoryview, msgspec.Raw)


class _Route(Generic[P]):
    """One dispatch type: its wire shape, the decoder into it and its ``parse_<event>`` function."""

    __slots__ = ("decoder", "parse", "shape")

    def __init__(self, shape: type[P], decoder: msgspec.json.Decoder[P], parse: Callable[[P], Change]):
        self.shape = shape
        self.decoder = decoder
        self.parse = parse


def _routes() -> dict[str, _Route[Any]]:
    # One decoder per shape, shared by the dispatch types that have that shape.
    message = msgspec.json.Decoder(Message)
    interaction = msgspec.json.Decoder(InteractionEvent)
    modal = msgspec.json.Decoder(ModalCreate)
    failure = _Route(InteractionEvent, interaction, parse_interaction_failure)
    return {
        dc.MESSAGE_CREATE: _Route(Message, message, parse_message_create),
        dc.MESSAGE_UPDATE: _Route(Message, message, parse_message_update),
        dc.MESSAGE_DELETE: _Route(MessageDelete, msgspec.json.Decoder(MessageDelete), parse_message_delete),
        dc.INTERACTION_CREATE: _Route(InteractionEvent, interaction, parse_interaction_create),
        dc.INTERACTION_SUCCESS: _Route(InteractionEvent, interaction, parse_interaction_success),
        dc.INTERACTION_FAILURE: failure,
        dc.INTERACTION_FAILED: failure,
        dc.INTERACTION_MODAL_CREATE: _Route(ModalCreate, modal, parse_interaction_modal_create),
        dc.INTERACTION_IFRAME_MODAL_CREATE: _Route(ModalCreate, modal, parse_interaction_iframe_modal_create),
    }


_PARSERS: Final = _routes()


def parse_event(event_type: object, data: object) -> Change:
    """What the dispatch ``{"t": event_type, "d": data}`` means; ``kind="ignore"`` if nothing.

    `data` is the raw JSON of ``d`` (bytes, as the bridge forwards it) or the decoded object. Never
    raises: gateway input is untrusted and a parser failure must not stop a worker.
    """
    try:
        return _dispatch(event_type, data)
    except Exception:  # a payload no test foresaw is noise, never a crashed worker
        return Change(kind="ignore", event=event_type if isinstance(event_type, str) else "")


def _dispatch(event_type: object, data: object) -> Change:
    """`parse_event` without the safety net, so tests can see any exception the parsers would hide.

    Only a payload that does not fit its shape (malformed JSON, wrong types) is caught here.
    """
    if not isinstance(event_type, str):
        return Change(kind="ignore")
    route = _PARSERS.get(event_type)
    if route is None:
        return Change(kind="ignore", event=event_type)
    try:
        if isinstance(data, _RAW):
            payload = route.decoder.decode(data)
        elif isinstance(data, dict):
            payload = msgspec.convert(data, route.shape)
        else:
            return Change(kind="ignore", event=event_type)
    except msgspec.DecodeError:  # ValidationError included: the payload does not fit its shape
        return Change(kind="ignore", event=event_type)
    return route.parse(payload)
