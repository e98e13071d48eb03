"""Discord wire shapes the bridge sends: `/interactions` bodies, built by pure functions.

Nothing here does I/O. The builders return plain dicts ready for JSON; their shapes follow
`reference/discord-protocol.md` §2.1 (type 2 command, type 3 button, type 5 modal submit). The bot ids,
`application_id_for` and `INTERACTION_EVENTS` belong to `broker.discord` and are re-exported here for
the bridge modules that import them from this one.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import msgspec

from broker.clock import now_ms
from broker.discord import (
    BOT_IDS,
    INSIGHTFACE_ID,
    INTERACTION_EVENTS,
    MIDJOURNEY_ID,
    NIJI_ID,
    application_id_for,
)
from broker.discord_types import ModalCreate

__all__ = [
    "BOT_IDS",
    "INSIGHTFACE_ID",
    "INTERACTION_EVENTS",
    "KNOWN_COMMANDS",
    "MIDJOURNEY_ID",
    "NIJI_ID",
    "Command",
    "CommandBook",
    "application_id_for",
    "attachment_option",
    "blend_dimensions",
    "button_click",
    "modal_submit",
    "new_nonce",
    "slash_command",
    "string_option",
]

Payload = dict[str, Any]

_DISCORD_EPOCH_MS = 1_420_070_400_000
#: 10 bits that tell this process's nonces from another bridge's in the same millisecond
_PROCESS_BITS = (os.getpid() ^ int.from_bytes(os.urandom(2), "big")) & 0x3FF
_counter = itertools.count()
_lock = threading.Lock()


def new_nonce() -> str:
    """A snowflake-shaped nonce, unique per call (discord.py-self's repeats within a millisecond)."""
    with _lock:
        increment = next(_counter) & 0xFFF
    return str(((now_ms() - _DISCORD_EPOCH_MS) << 22) | (_PROCESS_BITS << 12) | increment)


_TEXT_INPUT = 4
_OPTION_STRING = 3
_OPTION_ATTACHMENT = 11


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One slash command as the application-command-index lists it; `raw` is the full object."""

    id: str
    version: str
    name: str
    application_id: str
    raw: Payload


def _known(app: str, name: str, cid: str, version: str) -> Command:
    raw = {"id": cid, "application_id": app, "version": version, "name": name, "type": 1}
    return Command(id=cid, version=version, name=name, application_id=app, raw=raw)


#: fallback ids/versions (reference §3) for when the guild's command index cannot be read
KNOWN_COMMANDS: dict[tuple[str, str], Command] = {
    (c.application_id, c.name): c
    for c in (
        _known(MIDJOURNEY_ID, "imagine", "938956540159881230", "1237876415471554623"),
        _known(MIDJOURNEY_ID, "describe", "1092492867185950852", "1237876415471554625"),
        _known(MIDJOURNEY_ID, "blend", "1062880104792997970", "1237876415471554624"),
        _known(MIDJOURNEY_ID, "shorten", "1121575372539039774", "1247736572414001223"),
        _known(MIDJOURNEY_ID, "show", "1169435442328911902", "1247736572414001224"),
        _known(NIJI_ID, "imagine", "1023054140580057099", "1248805223892254774"),
        _known(NIJI_ID, "blend", "1061216934374424697", "1248805223892254775"),
        _known(NIJI_ID, "describe", "1092683500743831652", "1248805223892254776"),
        _known(NIJI_ID, "shorten", "1121575453916942376", "1248805223892254777"),
        _known(NIJI_ID, "show", "1023054140580057101", "1248805223892254781"),
        _known(INSIGHTFACE_ID, "saveid", "1097018209481261127", "1097018209481261130"),
        _known(INSIGHTFACE_ID, "swapid", "1097030226204184646", "1097030226204184647"),
    )
}


class CommandBook:
    """Commands of one guild: read from its application-command-index, else the known ids."""

    def __init__(self) -> None:
        self._commands: dict[tuple[str, str], Command] = {}

    def load_index(self, index: Any) -> int:
        """Take the commands of an application-command-index response; returns how many were usable."""
        count = 0
        commands = index.get("application_commands", []) if isinstance(index, dict) else []
        for raw in commands:
            try:
                command = Command(
                    id=str(raw["id"]),
                    version=str(raw["version"]),
                    name=str(raw["name"]),
                    application_id=str(raw["application_id"]),
                    raw=raw,
                )
            except (KeyError, TypeError):
                continue
            if command.application_id in BOT_IDS and raw.get("type", 1) == 1:
                self._commands[(command.application_id, command.name)] = command
                count += 1
        return count

    def get(self, application_id: str, name: str) -> Command:
        found = self._commands.get((application_id, name)) or KNOWN_COMMANDS.get((application_id, name))
        if found is None:
            raise KeyError(f'no command "/{name}" for application {application_id}')
        return found


def string_option(name: str, value: str) -> Payload:
    return {"type": _OPTION_STRING, "name": name, "value": value}


def attachment_option(name: str, index: int) -> Payload:
    """An attachment option: `value` is the index into the payload's `data.attachments`."""
    return {"type": _OPTION_ATTACHMENT, "name": name, "value": index}


_DIMENSIONS = {"PORTRAIT": "--ar 2:3", "SQUARE": "--ar 1:1", "LANDSCAPE": "--ar 3:2"}


def blend_dimensions(value: str | None) -> str:
    """midjourney-proxy's PORTRAIT/SQUARE/LANDSCAPE (or an `--ar W:H`) -> the option value."""
    if not value:
        return "--ar 1:1"
    text = value.strip()
    if text.startswith("--ar"):
        return text
    if ":" in text:
        return f"--ar {text}"
    return _DIMENSIONS.get(text.upper(), "--ar 1:1")


def slash_command(
    command: Command,
    *,
    guild_id: str | None,
    channel_id: str,
    session_id: str,
    nonce: str,
    options: list[Payload],
    attachments: list[Payload] | None = None,
) -> Payload:
    """A type 2 interaction invoking `command` with `options` (attachments already uploaded)."""
    data: Payload = {
        "version": command.version,
        "id": command.id,
        "name": command.name,
        "type": 1,
        "options": options,
        "application_command": command.raw,
        "attachments": attachments or [],
    }
    if command.raw.get("guild_id"):
        data["guild_id"] = command.raw["guild_id"]
    payload: Payload = {
        "type": 2,
        "application_id": command.application_id,
        "channel_id": channel_id,
        "session_id": session_id,
        "nonce": nonce,
        "data": data,
        "analytics_location": "slash_ui",
    }
    if guild_id:
        payload["guild_id"] = guild_id
    return payload


def button_click(
    *,
    application_id: str,
    guild_id: str | None,
    channel_id: str,
    session_id: str,
    nonce: str,
    message_id: str,
    message_flags: int,
    custom_id: str,
) -> Payload:
    """A type 3 interaction: a click on `custom_id` of message `message_id`."""
    payload: Payload = {
        "type": 3,
        "application_id": application_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "message_flags": message_flags,
        "session_id": session_id,
        "nonce": nonce,
        "data": {"component_type": 2, "custom_id": custom_id},
    }
    if guild_id:
        payload["guild_id"] = guild_id
    return payload


def modal_submit(
    *,
    application_id: str,
    guild_id: str | None,
    channel_id: str,
    session_id: str,
    nonce: str,
    modal_id: str,
    custom_id: str,
    input_custom_id: str,
    value: str,
) -> Payload:
    """A type 5 interaction answering the modal `modal_id` (its `custom_id`) with one text input."""
    payload: Payload = {
        "type": 5,
        "application_id": application_id,
        "channel_id": channel_id,
        "session_id": session_id,
        "nonce": nonce,
        "data": {
            "id": modal_id,
            "custom_id": custom_id,
            "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": input_custom_id, "value": value}]}
            ],
        },
    }
    if guild_id:
        payload["guild_id"] = guild_id
    return payload


def first_text_input(modal: ModalCreate) -> str | None:
    """custom_id of the first text input (type 4) of an INTERACTION_MODAL_CREATE payload."""
    for row in modal.components or ():
        for component in row.components or ():
            if component.type == _TEXT_INPUT and component.custom_id:
                return component.custom_id
    return None
