"""The text of a bot message: the ``**prompt** - <@user> (status)`` line, the seed DM, and job hashes.

Grammar of a job line (reference/discord-protocol.md §4.2)::

    [opener] **<prompt>** - [words] <@user> [(N%) | (Waiting to start) | (paused) | (Stopped)]
        (<mode>[, stealth])

where the legacy opener is ``Upscaling image #N with`` / ``Making variations for image #N with [prompt]``
and the words name the action (``Image #N``, ``Upscaled (Subtle) by``, ``Variations (Strong) by``, ``Zoom Out
by``, ``Pan Left by``...). Hashes follow §4.3.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from broker.discord import IFRAME_PREFIX, SPEED_WORDS
from broker.models import SpeedMode, TaskAction

__all__ = [
    "GUID",
    "ContentLine",
    "SeedDm",
    "extract_hash",
    "hash_from_custom_ids",
    "seed_dm",
    "split_content",
]

_HEX_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: a job uuid anywhere in a text
GUID: Final = re.compile(_HEX_UUID)
_GUID_BEFORE = re.compile(f"({_HEX_UUID})$")
_MENTION = re.compile(r"<@[!&]?([^<>\s]*)>")
#: legacy openers before the prompt: "Upscaling image #1 with **P**", "Making variations for image #2 with"
#: (older bots wrote "Making variations for image #1 with prompt **P**": novicezk's VariationMessageHandler)
_OPENER = re.compile(r"\s*(?P<verb>[^*#]*?)\s*image #(?P<n>\d+) with(?: prompt)?\s*$", re.IGNORECASE)
_IMAGE_N = re.compile(r"Image #(\d+)", re.IGNORECASE)
_VERB = re.compile(r"(Upscal(?:ed|ing|e)|Variations?|Vary|Remix|Zoom|Pan)\b", re.IGNORECASE)
#: ``[text](url)`` links in the tail; their text may itself be ``(Open on website ...)``
_LINK = re.compile(r"\[[^\]]*\]\([^)]*\)")
_GROUP = re.compile(r"\(([^()]*)\)")
_PERCENT = re.compile(r"\s*(\d{1,3})\s*%\s*")
_SPEED_WORD = "|".join(sorted(SPEED_WORDS, key=len, reverse=True))
_MODE = re.compile(rf"\s*({_SPEED_WORD})\s*(,\s*stealth\s*)?", re.IGNORECASE)
_STATUS: Final[dict[str, str]] = {
    "waiting to start": "Waiting to start",
    "paused": "paused",
    "stopped": "Stopped",
}
_SEED = re.compile(r"\*\*\s*seed\s*\*\*\s*:?\s*(\d+)", re.IGNORECASE)
_JOB_ID = re.compile(r"\*\*\s*Job ID\s*\*\*\s*:?\s*([0-9a-fA-F-]{36})", re.IGNORECASE)
#: first three letters of a `_VERB` match
_VERB_ACTION: Final[dict[str, TaskAction]] = {
    "ups": TaskAction.UPSCALE,
    "var": TaskAction.VARIATION,
    "rem": TaskAction.VARIATION,
    "zoo": TaskAction.ZOOM,
    "pan": TaskAction.PAN,
}


class ContentLine(msgspec.Struct, frozen=True):
    """The parts of ``[prefix]**P** - [words] <@U> (tail...)``."""

    prompt: str
    action: TaskAction | None
    index: int | None
    user_id: str | None
    progress: int | None
    status: str | None
    mode: SpeedMode | None
    stealth: bool
    #: a legacy ``Upscaling image #N with **P**`` opener: a start without a status
    opener: bool


def split_content(content: str) -> ContentLine | None:
    """The job line of a message's content, or None when the content is not one."""
    start = content.find("**")
    if start < 0:
        return None
    # The prompt may itself contain ``**``: close at the last ``** - `` (the separator before the
    # mention), or at the last ``**`` when there is no separator ("Upscaling image #1 with **P**").
    end = content.rfind("** - ")
    prefix = content[:start]
    opener = _OPENER.match(prefix) if prefix else None
    if end >= start + 2:
        rest = content[end + 5 :]
    else:
        end = content.rfind("**")
        if end < start + 2 or opener is None:
            return None
        rest = content[end + 2 :]
    if prefix.strip() and opener is None:
        # Bold text inside prose ("Done! **Fast mode** ...") is not a job message.
        return None
    prompt = content[start + 2 : end].strip()

    action: TaskAction | None = None
    index: int | None = None
    if opener:
        action, index = _verb_action(opener.group("verb")), int(opener.group("n"))

    mention = _MENTION.search(rest)
    if mention:
        head, tail, user_id = rest[: mention.start()], rest[mention.end() :], mention.group(1) or None
    else:
        head, tail, user_id = rest, rest, None
    if action is None:
        action, index = _action_from_words(head)

    progress: int | None = None
    status: str | None = None
    mode: SpeedMode | None = None
    stealth = False
    if "[" in tail:
        tail = _LINK.sub(" ", tail)
    for group in _GROUP.findall(tail):
        m = _PERCENT.fullmatch(group)
        if m:
            progress = int(m.group(1))
            continue
        known = _STATUS.get(group.strip().lower())
        if known:
            status = known
            continue
        m = _MODE.fullmatch(group)
        if m:
            mode = SPEED_WORDS[m.group(1).lower()]
            stealth = m.group(2) is not None
    return ContentLine(
        prompt=prompt,
        action=action,
        index=index,
        user_id=user_id,
        progress=progress,
        status=status,
        mode=mode,
        stealth=stealth,
        opener=opener is not None,
    )


def _action_from_words(head: str) -> tuple[TaskAction | None, int | None]:
    """Action named by the words between `` - `` and the mention; (None, None) if there are none."""
    words = head.strip()
    if not words:
        return None, None
    m = _IMAGE_N.search(words)
    if m:
        return TaskAction.UPSCALE, int(m.group(1))
    return _verb_action(words), None


def _verb_action(words: str) -> TaskAction | None:
    verb = _VERB.search(words)
    return _VERB_ACTION[verb.group(1).lower()[:3]] if verb else None


# ---------------------------------------------------------------- the ✉️ seed DM (§5.4)


class SeedDm(msgspec.Struct, frozen=True):
    """``**<prompt>**`` / ``**Job ID**: <uuid>`` / ``**seed** <digits>``."""

    seed: str
    job_id: str | None
    prompt: str | None


def seed_dm(content: str) -> SeedDm | None:
    """The seed DM's parts; None when the content has no ``**seed**``."""
    seed = _SEED.search(content)
    if seed is None:
        return None
    job = _JOB_ID.search(content)
    first = content.split("\n", 1)[0].strip()
    prompt = first[2:-2].strip() if first.startswith("**") and first.endswith("**") else None
    return SeedDm(seed=seed.group(1), job_id=job.group(1) if job else None, prompt=prompt)


# ---------------------------------------------------------------- hash (§4.3)


def extract_hash(url: str) -> str | None:
    """Job uuid of an attachment URL or file name, by T's rules after dropping the query string.

    Signed CDN URLs (``?ex=..&is=..&hm=..&``) would defeat the suffix rules, hence the strip.
    """
    path = url.split("?", 1)[0].split("#", 1)[0]
    name = path.rsplit("/", 1)[-1]
    if not name:
        return None
    if name.endswith("_grid_0.webp"):
        return name[: -len("_grid_0.webp")] or None
    for suffix in ("_0_0.png", "_0.mp4"):
        if name.endswith(suffix):
            m = _GUID_BEFORE.search(name[: -len(suffix)])
            if m:
                return m.group(1)
    if name == "0_0.png":
        parts = path.rsplit("/", 2)
        if len(parts) == 3 and parts[1]:
            return parts[1]
    guids = GUID.findall(path)
    if guids:
        return str(guids[-1])
    stem = name.rsplit("_", 1)[-1].split(".", 1)[0]
    return stem or None


def hash_from_custom_ids(custom_ids: list[str]) -> str | None:
    """The first job uuid the custom_ids carry (buttons always carry the full one)."""
    for cid in custom_ids:
        # iframe tokens are opaque and not job ids
        if cid.startswith(IFRAME_PREFIX):
            continue
        m = GUID.search(cid)
        if m:
            return m.group(0)
    return None
