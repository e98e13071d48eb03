"""A bot message's first embed: describe and shorten results, the ``Job queued`` notice, error embeds.

Error embeds follow reference/discord-protocol.md §4.8: a red colour or a known title (or one with a
failure word in it); link and image unfurls are never bot notices.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from broker.discord import ButtonKind, parse_custom_id
from broker.discord_types import Embed
from broker.models import TaskAction
from workers.parser.change import Change, ErrorInfo, Kind

__all__ = ["from_embed"]

#: keycap digits 0-9 (optional VS16) and 🔟, the numbering of describe/shorten prompts
_KEYCAP: Final = re.compile("^(?:[0-9#*]\ufe0f?\u20e3|\U0001f51f)\\s*")
_SHORTENED_HEADER = re.compile(r"^#*\s*shortened\s+(?:prompts|options)", re.IGNORECASE | re.MULTILINE)
_SHORTEN_BUTTONS: Final = frozenset({ButtonKind.SHORTEN_PICK})
_DESCRIBE_BUTTONS: Final = frozenset(
    {ButtonKind.DESCRIBE_PICK, ButtonKind.DESCRIBE_RETRY, ButtonKind.DESCRIBE_MODAL}
)

_RED: Final = 16711680
_ERROR_TITLES: Final = frozenset(
    {
        # T fails the task (§4.8)
        *("invalid prompt", "invalid parameter", "banned prompt detected", "invalid link", "queue full"),
        *("request cancelled due to output filters", "credits exhausted", "tos not accepted"),
        # T fails the task and disables the account
        *("pending mod message", "blocked", "plan cancelled", "subscription required", "subscription paused"),
        # other clients and the recorded fixtures
        *("action needed to continue", "invalid image", "duplicate images detected", "banned prompt"),
        "could not complete",
        # igolaizola/bulkai pkg/ai/midjourney/midjourney.go parseError (titles it fails a job on)
        *("banned image prompt", "please complete the task", "job action restricted", "empty prompt"),
    }
)
#: T's catch-all: any title containing these words is a failure
_ERROR_WORDS: Final = (
    *("invalid", "error", "denied", "banned", "blocked", "cancel", "exhausted", "failed", "not accepted"),
    *("required", "queue full", "action needed", "could not", "sorry"),
)


def from_embed(base: Change, embed: Embed, created: bool) -> Change | None:
    """Describe/shorten results, queue notices and error embeds; None to fall back to the content.

    `base` already holds the message's fields (custom_ids, interaction name, embed title/description).
    """
    replace = msgspec.structs.replace
    title = base.embed_title or ""
    description = base.embed_description or ""
    color = embed.color
    name = base.interaction_name
    footer = (embed.footer.text if embed.footer else None) or ""
    if embed.type not in (None, "rich"):
        return None  # link/image unfurls are not bot notices
    erroneous = bool(title) and (color == _RED or _is_error_title(title))
    kinds = _button_kinds(base.custom_ids)

    is_shorten = (
        name == "shorten"
        or "shortened prompts" in footer.lower()
        or not kinds.isdisjoint(_SHORTEN_BUTTONS)
        or _SHORTENED_HEADER.search(description) is not None
    )
    if is_shorten and not erroneous:
        return _result(base, "shorten", TaskAction.SHORTEN, _shorten_prompts(description), created)

    is_describe = (
        name == "describe"
        or not kinds.isdisjoint(_DESCRIBE_BUTTONS)
        or (not title and embed.image is not None and _KEYCAP.search(description) is not None)
    )
    if is_describe and not erroneous:
        return _result(base, "describe", TaskAction.DESCRIBE, _numbered_prompts(description), created)

    if title.strip().lower().startswith(_QUEUED_TITLES):
        return replace(base, kind="queued", error=ErrorInfo(title=title, description=description))
    if erroneous or (color == _RED and description):
        return replace(base, kind="error", error=ErrorInfo(title=title or "Error", description=description))
    return _answer_notice(base, embed, title, description)


# ---- every message form (issue 12 part 5): a notice that answers one of our jobs is never ignored ----

#: "Job queued" and its older title ("Your job will start shortly": midjourney/docs FAQs.md)
_QUEUED_TITLES: Final = ("job queued", "your job will start shortly")
#: yellow notices: a warning, not a failure (T: 16776960; N's ErrorMessageHandler: 16239475)
_WARNING_COLOURS: Final = frozenset({16776960, 16239475})
#: replies to account commands: their embeds (``Your info``...) are answers, not job notices
_ACCOUNT_COMMANDS: Final = frozenset(
    {"info", "settings", "fast", "relax", "turbo", "prefer remix", "prefer", "show", "subscribe"}
)


def _answer_notice(base: Change, embed: Embed, title: str, description: str) -> Change | None:
    """An embed the bot sent as the first answer to our interaction (it carries our nonce) instead of
    a job: a yellow one is a notice to wait with (``queued``), any other ends the job with the bot's
    own words (``error``). None for everything else, which falls back to the content."""
    if not base.nonce or not (title or description) or base.interaction_name in _ACCOUNT_COMMANDS:
        return None
    info = ErrorInfo(title=title or "Midjourney", description=description)
    if embed.color in _WARNING_COLOURS:
        return msgspec.structs.replace(base, kind="queued", error=info)
    return msgspec.structs.replace(base, kind="error", error=info)


def _result(base: Change, kind: Kind, action: TaskAction, prompts: list[str], created: bool) -> Change:
    """A describe/shorten result; without prompts yet, the placeholder (a start if it has the nonce)."""
    if prompts:
        return msgspec.structs.replace(base, kind=kind, action=action, prompts=prompts)
    return msgspec.structs.replace(base, kind="start" if created and base.nonce else "ignore", action=action)


def _button_kinds(custom_ids: list[str]) -> set[ButtonKind]:
    return {parsed.kind for parsed in map(parse_custom_id, custom_ids) if parsed is not None}


def _is_error_title(title: str) -> bool:
    lowered = title.strip().lower()
    return lowered in _ERROR_TITLES or any(word in lowered for word in _ERROR_WORDS)


def _numbered_prompts(text: str) -> list[str]:
    """Prompts numbered by keycap emoji, one per line; unnumbered lines continue the previous one.

    A markdown heading ends the list. Without any keycap, every non-empty line is a prompt.
    """
    lines = [line.strip() for line in text.splitlines()]
    if not any(_KEYCAP.match(line) for line in lines):
        return [line for line in lines if line and not line.startswith("#")]
    prompts: list[str] = []
    for line in lines:
        if not line:
            continue
        m = _KEYCAP.match(line)
        if m:
            prompts.append(line[m.end() :].strip())
        elif line.startswith("#"):
            if prompts:
                break
        elif prompts:
            prompts[-1] = f"{prompts[-1]} {line}"
    return [p for p in prompts if p]


def _shorten_prompts(text: str) -> list[str]:
    m = _SHORTENED_HEADER.search(text)
    section = text[m.end() :] if m else text
    lines = section.splitlines()
    if m and lines:
        lines = lines[1:]  # rest of the header line
    prompts: list[str] = []
    for line in lines:
        s = line.strip()
        km = _KEYCAP.match(s)
        if km:
            prompts.append(s[km.end() :].strip())
        elif s.startswith("#") and prompts:
            break
    return [p for p in prompts if p]
