"""Builders for Discord wire payloads: READY, messages, embeds, components, modals."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from mjsim.apps import INSIGHTFACE, MIDJOURNEY, NIJI, BotApp
from mjsim.state import Account, SimState

__all__ = [
    "COLOR_ERROR",
    "COLOR_WARNING",
    "button",
    "edited",
    "error_embed",
    "file_prompt_words",
    "iframe_modal",
    "interaction_refs",
    "message",
    "normalise_prompt",
    "ready_payload",
    "ready_supplemental",
    "row",
    "text_input_modal",
]

Payload = dict[str, Any]

COLOR_ERROR = 16711680
COLOR_WARNING = 16239475

_URL = re.compile(r"(?<!<)(https?://[^\s>]+)")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def normalise_prompt(prompt: str) -> str:
    """What the bot echoes back: URLs wrapped in ``<>``, em-dashes to ``--``, whitespace collapsed."""
    text = " ".join(prompt.replace("—", "--").split())
    return _URL.sub(r"<\1>", text)


def file_prompt_words(prompt: str) -> str:
    """Prompt words as Midjourney puts them in file names (URLs and --params dropped, <= 48 chars)."""
    text = re.sub(r"<?https?://\S+>?", " ", prompt).split(" --", 1)[0]
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "_".join(words)[:48].strip("_")


def ready_payload(state: SimState, account: Account, session_id: str) -> Payload:
    """READY with flat guild objects (channels, roles, members incl. self and bots) and bot DMs."""
    bots = [MIDJOURNEY, NIJI, INSIGHTFACE]
    me = account.user()
    guilds = []
    for gid in sorted(g for g, members in state.guild_members.items() if account.user_id in members):
        channels = [state.channels[c].payload() for c in state.guilds[gid]]
        members = [
            {"user": me, "roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False}
        ]
        members += [
            {
                "user": b.user(),
                "roles": [],
                "joined_at": "2023-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
            }
            for b in bots
        ]
        guilds.append(
            {
                "id": gid,
                "name": f"Sim Guild {gid[-4:]}",
                "icon": None,
                "owner_id": account.user_id,
                "features": [],
                "roles": [{"id": gid, "name": "@everyone", "permissions": "2251799813685247", "position": 0}],
                "channels": channels,
                "threads": [],
                "members": members,
                "member_count": len(state.guild_members[gid]) + len(bots),
                "large": False,
                "emojis": [],
                "stickers": [],
                "joined_at": "2024-01-01T00:00:00+00:00",
            }
        )
    private = [
        {
            "id": account.dm_channels[b.key],
            "type": 1,
            "recipients": [b.user()],
            "last_message_id": None,
            "flags": 0,
        }
        for b in bots
    ]
    return {
        "v": 9,
        "session_id": session_id,
        "resume_gateway_url": state.gateway_url,
        "user": {**me, "email": None, "verified": True, "mfa_enabled": False, "flags": 0, "premium_type": 0},
        "guilds": guilds,
        "users": [b.user() for b in bots],
        "private_channels": private,
        "relationships": [],
        "sessions": [
            {
                "session_id": session_id,
                "status": "online",
                "activities": [],
                "client_info": {"client": "web", "os": "windows", "version": 0},
            }
        ],
        "user_settings_proto": "",
        "session_type": "normal",
        "country_code": "US",
    }


def ready_supplemental() -> Payload:
    return {
        "merged_presences": {"guilds": [], "friends": []},
        "merged_members": [],
        "guilds": [],
        "lazy_private_channels": [],
        "disclose": [],
    }


def button(custom_id: str, *, label: str | None = None, emoji: str | None = None, style: int = 2) -> Payload:
    b: Payload = {"type": 2, "style": style, "custom_id": custom_id}
    if label is not None:
        b["label"] = label
    if emoji is not None:
        b["emoji"] = {"name": emoji}
    return b


def row(*components: Payload) -> Payload:
    return {"type": 1, "components": list(components)}


def interaction_refs(
    *, interaction_id: str, type_: int, name: str, user: Payload, message_id: str | None = None
) -> Payload:
    """The ``interaction`` and ``interaction_metadata`` fields of a bot reply."""
    meta: Payload = {
        "id": interaction_id,
        "type": type_,
        "name": name,
        "user": user,
        "authorizing_integration_owners": {"0": user["id"]} if type_ == 2 else {},
    }
    if message_id is not None:
        meta["interacted_message_id"] = message_id
    return {
        "interaction": {"id": interaction_id, "type": type_, "name": name, "user": user},
        "interaction_metadata": meta,
    }


def message(
    *,
    id: str,
    channel_id: str,
    guild_id: str | None,
    author: Payload,
    content: str = "",
    type_: int = 0,
    nonce: str | None = None,
    embeds: list[Payload] | None = None,
    attachments: list[Payload] | None = None,
    components: list[Payload] | None = None,
    flags: int = 0,
    mentions: list[Payload] | None = None,
    application_id: str | None = None,
    extra: Payload | None = None,
    reference: Payload | None = None,
) -> Payload:
    """A full message object (MESSAGE_UPDATE carries the same full object, as bot edits do)."""
    msg: Payload = {
        "id": id,
        "channel_id": channel_id,
        "type": type_,
        "content": content,
        "author": author,
        "attachments": attachments or [],
        "embeds": embeds or [],
        "mentions": mentions or [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "flags": flags,
        "components": components or [],
    }
    if guild_id is not None:
        msg["guild_id"] = guild_id
    if nonce is not None:
        msg["nonce"] = nonce
    if application_id is not None:
        msg["application_id"] = application_id
        msg["webhook_id"] = application_id
    if reference is not None:
        msg["message_reference"] = {
            "type": 0,
            "channel_id": reference["channel_id"],
            "message_id": reference["id"],
            **({"guild_id": guild_id} if guild_id else {}),
        }
        msg["referenced_message"] = reference
    if extra:
        msg.update(extra)
    return msg


def edited(msg: Payload, **changes: Any) -> Payload:
    """``msg`` as a bot edit sends it: the full message with ``changes``, marked edited, without the nonce."""
    out = {**msg, **changes, "edited_timestamp": msg["timestamp"]}
    out.pop("nonce", None)
    return out


def error_embed(
    title: str, description: str, *, color: int | None = COLOR_ERROR, footer: str | None = None
) -> Payload:
    embed: Payload = {"type": "rich", "title": title, "description": description}
    if color is not None:
        embed["color"] = color
    if footer is not None:
        embed["footer"] = {"text": footer}
    return embed


def text_input_modal(
    *,
    interaction_id: str,
    nonce: str,
    channel_id: str,
    bot: BotApp,
    custom_id: str,
    title: str,
    input_id: str,
    label: str,
    value: str,
    style: int = 2,
) -> Payload:
    """INTERACTION_MODAL_CREATE data (``application`` is required by discord.py-self)."""
    return {
        "id": interaction_id,
        "nonce": nonce,
        "channel_id": channel_id,
        "custom_id": custom_id,
        "title": title,
        "components": [
            row(
                {
                    "type": 4,
                    "custom_id": input_id,
                    "style": style,
                    "label": label,
                    "value": value,
                    "required": True,
                    "min_length": 1,
                    "max_length": 4000,
                }
            )
        ],
        "application": {
            "id": bot.id,
            "name": bot.name,
            "icon": bot.avatar,
            "description": "",
            "bot_id": bot.id,
        },
    }


def iframe_modal(
    *,
    interaction_id: str,
    nonce: str,
    channel_id: str,
    bot: BotApp,
    token: str,
    title: str,
    iframe_path: str,
) -> Payload:
    """INTERACTION_IFRAME_MODAL_CREATE data (captcha, Vary Region), named ``MJ::iframe::<token>``."""
    return {
        "id": interaction_id,
        "nonce": nonce,
        "channel_id": channel_id,
        "custom_id": f"MJ::iframe::{token}",
        "title": title,
        "iframe_path": iframe_path,
        "modal_size": 2,
        "application": {"id": bot.id, "name": bot.name, "icon": bot.avatar},
    }
