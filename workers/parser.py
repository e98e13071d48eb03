"""Turn one Midjourney/Niji/InsightFace gateway dispatch into a `Change`: pure, no I/O, no clock.

`parse_event(event_type, data)` never raises and always returns a `Change`; anything it does not
understand is `kind="ignore"`. One `_parse_<event>` function per dispatch type, collected in `_PARSERS`.

Kinds (the CLI vocabulary, `python -m workers.parse`):

- ``start``: the first bot message of a job: content status ``(Waiting to start)``, a legacy
  ``Upscaling image #N with **P**`` / ``Making variations for image #N with`` opener, a
  describe/shorten placeholder, or an in-progress (not Stopped) message that still carries the
  interaction `nonce` (only the first reply carries it, §4.4).
- ``progress``: an in-progress message: ``(N%)``, ``(paused)``, ``(Stopped)`` (`status_text` says
  which; "Stopped" ends the job, the worker decides), or ``(Waiting to start)`` seen on an edit.
- ``done``: a finished job posted as a NEW message (MESSAGE_CREATE) whose content has no status:
  imagine/reroll/blend grids, upscales, variations, zoom, pan; InsightFace image replies (swap face).
- ``describe`` / ``shorten``: result embeds; `prompts` holds the numbered prompts.
- ``error``: red/known-title embeds (§4.8), content starting ``Failed`` (e.g. "Failed to process
  your command"), INTERACTION_FAILURE, and the captcha iframe modal (see below).
- ``queued``: the ``Job queued`` embed: not a failure, keep waiting; `error` carries its text.
- ``modal``: INTERACTION_MODAL_CREATE and non-captcha INTERACTION_IFRAME_MODAL_CREATE (Vary Region).
- ``ignore``: everything else, often with useful fields still set (see choices below).

Choices the protocol leaves open, decided here:

- A MESSAGE_UPDATE whose content looks final is ``ignore`` (fields filled in): finals always arrive
  as a new message (§4.1 step 4); later edits of a finished message (button restyles after a
  click) must not finish a task twice. InsightFace replies are the exception: their lifecycle is
  undocumented (§3), so an image on CREATE or UPDATE is ``done``.
- ``done`` does not require an attachment: recorded finals are matched by content alone, and the
  worker decides what a result without an image means.
- The captcha iframe modal (title ``Action required to continue`` or an ``iframe_path`` under
  ``/captcha/``) is an ``error`` titled by the modal, not a ``modal``: no task can submit it, the
  account needs a human (T locks it, §4.8). Other iframe modals (Vary Region) are ``modal``.
- The ✉️ seed DM (``**Job ID**: <uuid>`` / ``**seed** <digits>``, §5.4) is ``ignore`` in the CLI
  vocabulary, with `seed` and `hash` (the job id) set for the worker that asked.
- INTERACTION_CREATE / INTERACTION_SUCCESS are ``ignore`` carrying `nonce` and `interaction_id`:
  the worker links the interaction id to its task (T matches later messages by it, §4.4).
- MESSAGE_DELETE is ``ignore`` with `message_id` set.
- Messages whose author is present but is not one of the three bots are ``ignore`` (our own upload
  messages, other users); a message without an author is parsed, to be lenient with partial events.
- For modals, `custom_ids` is the modal's custom_id followed by its inputs' custom_ids; `prompt` is
  the first prefilled input value; `index`/`action`/`hash` come from the modal custom_id.
- A job message starts with ``**`` (or a legacy opener) and has `` - `` after the prompt; bold words
  inside other prose ("Done! **Fast mode** ...") are not a job.
- `hash` follows §4.3 on the attachment (or the describe embed image) with the query stripped; when
  that gives no full uuid, a uuid from the custom_ids that extends it wins (previews may carry a short
  id; buttons always carry the job uuid).

Actions: from the words between the prompt and the mention (§4.2): ``Image #N``/``Upscaled``/
``Upscaling`` -> UPSCALE, ``Variations``/``Remix`` -> VARIATION, ``Zoom Out`` -> ZOOM, ``Pan X`` -> PAN;
no words -> BLEND if the interaction is ``blend``, REROLL if it came from a button click
(interaction type 3), else IMAGINE. A final blend usually has no interaction and reads as IMAGINE:
the worker keeps its task's own action. Describe/shorten by embed or interaction name, SWAP_FACE by
the InsightFace author.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, Literal

import msgspec

__all__ = [
    "INSIGHT_FACE_BOT_ID",
    "MIDJOURNEY_BOT_ID",
    "NIJI_BOT_ID",
    "Action",
    "BotKind",
    "Change",
    "ErrorInfo",
    "Kind",
    "Mode",
    "ParsedButton",
    "extract_hash",
    "parse_event",
]

MIDJOURNEY_BOT_ID: Final = "936929561302675456"
NIJI_BOT_ID: Final = "1022952195194359889"
INSIGHT_FACE_BOT_ID: Final = "1090660574196674713"

Kind = Literal["start", "progress", "done", "describe", "shorten", "error", "queued", "modal", "ignore"]
Action = Literal[
    "IMAGINE", "UPSCALE", "VARIATION", "REROLL", "ZOOM", "PAN", "BLEND", "DESCRIBE", "SHORTEN", "SWAP_FACE"
]
Mode = Literal["fast", "relax", "turbo"]
#: values match `broker.models.BotType`
BotKind = Literal["MID_JOURNEY", "NIJI_JOURNEY", "INSIGHT_FACE"]

_BOTS: Final[dict[str, BotKind]] = {
    MIDJOURNEY_BOT_ID: "MID_JOURNEY",
    NIJI_BOT_ID: "NIJI_JOURNEY",
    INSIGHT_FACE_BOT_ID: "INSIGHT_FACE",
}


class ParsedButton(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One component with a custom_id, in message order (buttons, select menus)."""

    custom_id: str
    emoji: str = ""
    label: str = ""
    type: int = 2
    style: int = 2


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the bot said went wrong (or, for ``queued``, what it said about the wait)."""

    title: str
    description: str


class Change(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What one gateway event means for a task.

    The first thirteen fields are the CLI line; the rest are for the workers only.
    """

    kind: Kind
    action: Action | None = None
    #: percent from ``(N%)``; None when paused/stopped/waiting or not a progress message
    progress: int | None = None
    #: the bot-normalised prompt between the ``**`` (becomes properties.finalPrompt)
    prompt: str | None = None
    mode: Mode | None = None
    #: N of ``Image #N`` / ``Upscaling image #N`` or of a modal custom_id
    index: int | None = None
    #: job uuid (§4.3), or the seed DM's job id
    hash: str | None = None
    message_id: str | None = None
    nonce: str | None = None
    image_url: str | None = None
    custom_ids: list[str] = msgspec.field(default_factory=list)
    prompts: list[str] = msgspec.field(default_factory=list)
    error: ErrorInfo | None = None
    # ---- not printed by the CLI ----
    #: the dispatch type this came from
    event: str = ""
    #: message `flags`, sent back as `message_flags` when clicking its buttons
    message_flags: int | None = None
    buttons: list[ParsedButton] = msgspec.field(default_factory=list)
    #: INTERACTION_* / modal `d.id`, or the message's interaction_metadata.id / interaction.id
    interaction_id: str | None = None
    #: interaction_metadata.name / interaction.name (imagine, blend, describe, shorten, show, info...)
    interaction_name: str | None = None
    #: 2 slash command, 3 button, 5 modal submit
    interaction_type: int | None = None
    referenced_message_id: str | None = None
    channel_id: str | None = None
    guild_id: str | None = None
    author_id: str | None = None
    bot: BotKind | None = None
    #: the mentioned requesting user, from ``<@U>``
    user_id: str | None = None
    content: str | None = None
    embed_title: str | None = None
    #: raw describe/shorten/notice text
    embed_description: str | None = None
    modal_custom_id: str | None = None
    modal_title: str | None = None
    iframe_path: str | None = None
    #: "Waiting to start", "paused" or "Stopped"
    status_text: str | None = None
    stealth: bool = False
    #: from the ✉️ seed DM; `hash` holds its job id
    seed: str | None = None


# ---------------------------------------------------------------- payload access (untrusted JSON)

_NO_MAP: Final[Mapping[str, object]] = {}
_NO_LIST: Final[list[object]] = []


def _map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else _NO_MAP


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else _NO_LIST


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _snowflake(value: object) -> str | None:
    # Discord sends ids as strings, but nonces may be integers on the wire.
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- patterns

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_GUID_BEFORE = re.compile(r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
_MENTION = re.compile(r"<@[!&]?([^<>\s]*)>")
#: legacy openers before the prompt: "Upscaling image #1 with **P**", "Making variations for image #2 with"
_OPENER = re.compile(r"\s*(?P<verb>[^*#]*?)\s*image #(?P<n>\d+) with\s*$", re.IGNORECASE)
_IMAGE_N = re.compile(r"Image #(\d+)", re.IGNORECASE)
_VERB = re.compile(r"(Upscal(?:ed|ing|e)|Variations?|Vary|Remix|Zoom|Pan)\b", re.IGNORECASE)
#: ``[text](url)`` links in the tail; their text may itself be ``(Open on website ...)``
_LINK = re.compile(r"\[[^\]]*\]\([^)]*\)")
_GROUP = re.compile(r"\(([^()]*)\)")
_PERCENT = re.compile(r"\s*(\d{1,3})\s*%\s*")
_MODE = re.compile(r"\s*(fast|relaxed|relax|turbo)\s*(,\s*stealth\s*)?", re.IGNORECASE)
_STATUS: Final[dict[str, str]] = {
    "waiting to start": "Waiting to start",
    "paused": "paused",
    "stopped": "Stopped",
}
_MODES: Final[dict[str, Mode]] = {"fast": "fast", "relaxed": "relax", "relax": "relax", "turbo": "turbo"}
_SEED = re.compile(r"\*\*\s*seed\s*\*\*\s*:?\s*(\d+)", re.IGNORECASE)
_JOB_ID = re.compile(r"\*\*\s*Job ID\s*\*\*\s*:?\s*([0-9a-fA-F-]{36})", re.IGNORECASE)
#: keycap digits 0-9 (optional VS16) and 🔟, the numbering of describe/shorten prompts
_KEYCAP = re.compile("^(?:[0-9#*]\ufe0f?\u20e3|\U0001f51f)\\s*")
_SHORTENED_HEADER = re.compile(r"^#*\s*shortened\s+(?:prompts|options)", re.IGNORECASE | re.MULTILINE)
#: custom_ids whose number is the picked image/prompt (remix, pan and describe modals)
_MODAL_INDEX = (
    re.compile(r"^MJ::RemixModal::[^:]+::(\d+)"),
    re.compile(r"^MJ::PanModal::[^:]+::[^:]+::(\d+)"),
    re.compile(r"^MJ::Picreader::Modal::(\d+)$", re.IGNORECASE),
    re.compile(r"^MJ::AnimateModal::[^:]+::(\d+)"),
)
_MODAL_ACTION: Final[tuple[tuple[str, Action], ...]] = (
    ("MJ::RemixModal::", "VARIATION"),
    ("MJ::PanModal::", "PAN"),
    ("MJ::OutpaintCustomZoomModal::", "ZOOM"),
)
#: first three letters of a `_VERB` match
_VERB_ACTION: Final[dict[str, Action]] = {
    "ups": "UPSCALE",
    "var": "VARIATION",
    "rem": "VARIATION",
    "zoo": "ZOOM",
    "pan": "PAN",
}
_NAME_ACTION: Final[dict[str, Action]] = {
    "imagine": "IMAGINE",
    "blend": "BLEND",
    "describe": "DESCRIBE",
    "shorten": "SHORTEN",
    "swapid": "SWAP_FACE",
}

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
    }
)
#: T's catch-all: any title containing these words is a failure
_ERROR_WORDS: Final = (
    *("invalid", "error", "denied", "banned", "blocked", "cancel", "exhausted", "failed", "not accepted"),
    *("required", "queue full", "action needed", "could not", "sorry"),
)
_IMAGE_EXT: Final = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4")


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
    guids = _GUID.findall(path)
    if guids:
        return str(guids[-1])
    stem = name.rsplit("_", 1)[-1].split(".", 1)[0]
    return stem or None


def _hash_from_custom_ids(custom_ids: list[str]) -> str | None:
    for cid in custom_ids:
        # iframe tokens are opaque and not job ids
        if cid.startswith("MJ::iframe::"):
            continue
        m = _GUID.search(cid)
        if m:
            return m.group(0)
    return None


# ---------------------------------------------------------------- message pieces


class _Content(msgspec.Struct, frozen=True):
    """The parts of ``[prefix]**P** - [words] <@U> (tail...)``."""

    prompt: str
    action: Action | None
    index: int | None
    user_id: str | None
    progress: int | None
    status: str | None
    mode: Mode | None
    stealth: bool
    #: a legacy ``Upscaling image #N with **P**`` opener: a start without a status
    opener: bool


def _split_content(content: str) -> _Content | None:
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

    action: Action | None = None
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
    mode: Mode | None = None
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
            mode = _MODES[m.group(1).lower()]
            stealth = m.group(2) is not None
    return _Content(
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


def _action_from_words(head: str) -> tuple[Action | None, int | None]:
    """Action named by the words between `` - `` and the mention; (None, None) if there are none."""
    words = head.strip()
    if not words:
        return None, None
    m = _IMAGE_N.search(words)
    if m:
        return "UPSCALE", int(m.group(1))
    return _verb_action(words), None


def _verb_action(words: str) -> Action | None:
    verb = _VERB.search(words)
    return _VERB_ACTION[verb.group(1).lower()[:3]] if verb else None


def _walk_components(components: object, out: list[ParsedButton], depth: int = 0) -> None:
    # Rows (type 1) hold buttons; v2 containers nest deeper. Bounded so hostile input cannot recurse.
    if depth > 6:
        return
    for item in _list(components):
        comp = _map(item)
        cid = _str(comp.get("custom_id"))
        if cid:
            emoji = _map(comp.get("emoji"))
            out.append(
                ParsedButton(
                    custom_id=cid,
                    emoji=_str(emoji.get("name")) or "",
                    label=_str(comp.get("label")) or "",
                    type=_int(comp.get("type")) or 2,
                    style=_int(comp.get("style")) or 2,
                )
            )
        inner = comp.get("components")
        if inner is not None:
            _walk_components(inner, out, depth + 1)


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


def _is_error_title(title: str) -> bool:
    lowered = title.strip().lower()
    return lowered in _ERROR_TITLES or any(word in lowered for word in _ERROR_WORDS)


def _is_image(attachment: Mapping[str, object]) -> bool:
    ctype = _str(attachment.get("content_type")) or ""
    if ctype.startswith(("image/", "video/")):
        return True
    name = (_str(attachment.get("filename")) or _str(attachment.get("url")) or "").split("?", 1)[0]
    return name.lower().endswith(_IMAGE_EXT)


# ---------------------------------------------------------------- messages


def _parse_message(event: str, d: Mapping[str, object]) -> Change:
    author = d.get("author")
    author_id = _snowflake(_map(author).get("id"))
    bot = _BOTS.get(author_id or "")
    if isinstance(author, dict) and bot is None:
        return Change(kind="ignore", event=event, message_id=_snowflake(d.get("id")), author_id=author_id)

    created = event == "MESSAGE_CREATE"
    content = _str(d.get("content")) or ""
    nonce = _snowflake(d.get("nonce"))
    meta = _map(d.get("interaction_metadata"))
    legacy = _map(d.get("interaction"))
    interaction_name = _str(meta.get("name")) or _str(legacy.get("name"))
    interaction_type = _int(meta.get("type"))
    if interaction_type is None:
        interaction_type = _int(legacy.get("type"))

    buttons: list[ParsedButton] = []
    _walk_components(d.get("components"), buttons)
    custom_ids = [b.custom_id for b in buttons]

    attachments = [_map(a) for a in _list(d.get("attachments"))]
    image = next((a for a in attachments if _is_image(a)), None)
    embed = _map(next(iter(_list(d.get("embeds"))), None))
    embed_title = _str(embed.get("title"))
    embed_description = _str(embed.get("description"))
    embed_image_url = _str(_map(embed.get("image")).get("url"))

    image_url: str | None = None
    hash_: str | None = None
    if image is not None:
        image_url = _str(image.get("url")) or _str(image.get("proxy_url"))
        hash_ = extract_hash(image_url or _str(image.get("filename")) or "")
    elif embed_image_url:
        image_url = embed_image_url
        hash_ = extract_hash(embed_image_url)
    button_hash = _hash_from_custom_ids(custom_ids)
    # Previews may be named by a short id; the buttons always carry the full uuid (§6.5).
    if button_hash and (hash_ is None or (not _GUID.fullmatch(hash_) and button_hash.startswith(hash_))):
        hash_ = button_hash

    base = Change(
        kind="ignore",
        event=event,
        hash=hash_,
        message_id=_snowflake(d.get("id")),
        nonce=nonce,
        image_url=image_url,
        custom_ids=custom_ids,
        message_flags=_int(d.get("flags")),
        buttons=buttons,
        interaction_id=_snowflake(meta.get("id")) or _snowflake(legacy.get("id")),
        interaction_name=interaction_name,
        interaction_type=interaction_type,
        referenced_message_id=_snowflake(_map(d.get("message_reference")).get("message_id")),
        channel_id=_snowflake(d.get("channel_id")),
        guild_id=_snowflake(d.get("guild_id")),
        author_id=author_id,
        bot=bot,
        content=content,
        embed_title=embed_title,
        embed_description=embed_description,
    )
    replace = msgspec.structs.replace

    # ✉️ seed DM (§5.4): three lines, no mention; the job id replaces any attachment hash.
    seed = _SEED.search(content)
    if seed:
        job = _JOB_ID.search(content)
        first = content.split("\n", 1)[0].strip()
        prompt = first[2:-2].strip() if first.startswith("**") and first.endswith("**") else None
        return replace(base, seed=seed.group(1), hash=job.group(1) if job else hash_, prompt=prompt)

    if content.lstrip().startswith("Failed"):
        # Legacy plain-text failure ("Failed to process your command"), matched by nonce (§4.2).
        title = content.strip().split("\n", 1)[0].strip()
        return replace(base, kind="error", error=ErrorInfo(title=title, description=content.strip()))

    if embed:
        change = _from_embed(base, embed, created)
        if change is not None:
            return change

    parts = _split_content(content)
    if parts is not None:
        return _from_content(base, parts, created)

    if bot == "INSIGHT_FACE" and image is not None:
        # Reply texts are undocumented: an image from the swap bot is the result, on create or edit.
        return replace(base, kind="done", action="SWAP_FACE")
    if bot == "INSIGHT_FACE":
        return replace(base, action="SWAP_FACE")
    return base


def _from_embed(base: Change, embed: Mapping[str, object], created: bool) -> Change | None:
    """Describe/shorten results, queue notices and error embeds; None to fall back to the content."""
    replace = msgspec.structs.replace
    title = base.embed_title or ""
    description = base.embed_description or ""
    color = _int(embed.get("color"))
    name = base.interaction_name
    footer = _str(_map(embed.get("footer")).get("text")) or ""
    if _str(embed.get("type")) not in (None, "rich"):
        return None  # link/image unfurls are not bot notices
    erroneous = bool(title) and (color == _RED or _is_error_title(title))

    is_shorten = (
        name == "shorten"
        or "shortened prompts" in footer.lower()
        or any(c.startswith("MJ::Job::PromptAnalyzer") for c in base.custom_ids)
        or _SHORTENED_HEADER.search(description) is not None
    )
    if is_shorten and not erroneous:
        prompts = _shorten_prompts(description)
        if prompts:
            return replace(base, kind="shorten", action="SHORTEN", prompts=prompts)
        return replace(base, kind="start" if created and base.nonce else "ignore", action="SHORTEN")

    is_describe = (
        name == "describe"
        or any(c.startswith(("MJ::Job::PicReader", "MJ::Picread")) for c in base.custom_ids)
        or (not title and embed.get("image") is not None and _KEYCAP.search(description) is not None)
    )
    if is_describe and not erroneous:
        prompts = _numbered_prompts(description)
        if prompts:
            return replace(base, kind="describe", action="DESCRIBE", prompts=prompts)
        return replace(base, kind="start" if created and base.nonce else "ignore", action="DESCRIBE")

    if title.strip().lower().startswith("job queued"):
        return replace(base, kind="queued", error=ErrorInfo(title=title, description=description))
    if erroneous or (color == _RED and description):
        return replace(base, kind="error", error=ErrorInfo(title=title or "Error", description=description))
    return None


def _from_content(base: Change, parts: _Content, created: bool) -> Change:
    action = parts.action
    if base.bot == "INSIGHT_FACE":
        action = "SWAP_FACE"
    elif action is None:
        named = _NAME_ACTION.get(base.interaction_name or "")
        if named is not None:
            action = named
        elif base.interaction_type == 3:
            action = "REROLL"  # plain pattern in reply to a button: the 🔄 button
        else:
            action = "IMAGINE"

    status = parts.status
    kind: Kind
    if status == "Waiting to start" or (parts.opener and parts.progress is None and status is None):
        kind = "start" if created else "progress"
    elif status is not None or parts.progress is not None:
        # Only the interaction's first reply carries the nonce: that message is the job's start.
        kind = "start" if created and base.nonce and status != "Stopped" else "progress"
    else:
        kind = "done" if created else "ignore"
    return msgspec.structs.replace(
        base,
        kind=kind,
        action=action,
        progress=parts.progress,
        prompt=parts.prompt,
        mode=parts.mode,
        index=parts.index,
        user_id=parts.user_id,
        status_text=status,
        stealth=parts.stealth,
    )


def _parse_message_create(d: Mapping[str, object]) -> Change:
    return _parse_message("MESSAGE_CREATE", d)


def _parse_message_update(d: Mapping[str, object]) -> Change:
    return _parse_message("MESSAGE_UPDATE", d)


def _parse_message_delete(d: Mapping[str, object]) -> Change:
    return Change(
        kind="ignore",
        event="MESSAGE_DELETE",
        message_id=_snowflake(d.get("id")),
        channel_id=_snowflake(d.get("channel_id")),
        guild_id=_snowflake(d.get("guild_id")),
    )


# ---------------------------------------------------------------- interactions


def _interaction(event: str, d: Mapping[str, object]) -> Change:
    return Change(
        kind="ignore",
        event=event,
        nonce=_snowflake(d.get("nonce")),
        interaction_id=_snowflake(d.get("id")),
        channel_id=_snowflake(d.get("channel_id")),
        guild_id=_snowflake(d.get("guild_id")),
    )


def _parse_interaction_create(d: Mapping[str, object]) -> Change:
    return _interaction("INTERACTION_CREATE", d)


def _parse_interaction_success(d: Mapping[str, object]) -> Change:
    return _interaction("INTERACTION_SUCCESS", d)


def _parse_interaction_failure(d: Mapping[str, object]) -> Change:
    return msgspec.structs.replace(
        _interaction("INTERACTION_FAILURE", d),
        kind="error",
        error=ErrorInfo(
            title="Interaction failed",
            description="The bot did not acknowledge the interaction (This interaction failed)",
        ),
    )


def _modal(event: str, d: Mapping[str, object]) -> Change:
    modal_id = _str(d.get("custom_id")) or ""
    inputs: list[ParsedButton] = []
    _walk_components(d.get("components"), inputs)
    prefill: str | None = None
    for row in _list(d.get("components")):
        for field in _list(_map(row).get("components")):
            prefill = prefill or _str(_map(field).get("value")) or None
    index: int | None = None
    for pattern in _MODAL_INDEX:
        m = pattern.match(modal_id)
        if m:
            index = int(m.group(1))
            break
    action = next((a for prefix, a in _MODAL_ACTION if modal_id.startswith(prefix)), None)
    app_id = _snowflake(_map(d.get("application")).get("id")) or _snowflake(d.get("application_id"))
    custom_ids = [modal_id, *(b.custom_id for b in inputs)] if modal_id else [b.custom_id for b in inputs]
    return Change(
        kind="modal",
        event=event,
        action=action,
        prompt=prefill,
        index=index,
        hash=_hash_from_custom_ids([modal_id]),
        nonce=_snowflake(d.get("nonce")),
        custom_ids=custom_ids,
        buttons=inputs,
        interaction_id=_snowflake(d.get("id")),
        channel_id=_snowflake(d.get("channel_id")),
        guild_id=_snowflake(d.get("guild_id")),
        author_id=app_id,
        bot=_BOTS.get(app_id or ""),
        modal_custom_id=modal_id or None,
        modal_title=_str(d.get("title")),
        iframe_path=_str(d.get("iframe_path")),
    )


def _parse_interaction_modal_create(d: Mapping[str, object]) -> Change:
    return _modal("INTERACTION_MODAL_CREATE", d)


def _parse_interaction_iframe_modal_create(d: Mapping[str, object]) -> Change:
    change = _modal("INTERACTION_IFRAME_MODAL_CREATE", d)
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


_PARSERS: Final[dict[str, Callable[[Mapping[str, object]], Change]]] = {
    "MESSAGE_CREATE": _parse_message_create,
    "MESSAGE_UPDATE": _parse_message_update,
    "MESSAGE_DELETE": _parse_message_delete,
    "INTERACTION_CREATE": _parse_interaction_create,
    "INTERACTION_SUCCESS": _parse_interaction_success,
    "INTERACTION_FAILURE": _parse_interaction_failure,
    # discord.py-self knows the event by this name (parse_interaction_failed); accept both spellings.
    "INTERACTION_FAILED": _parse_interaction_failure,
    "INTERACTION_MODAL_CREATE": _parse_interaction_modal_create,
    "INTERACTION_IFRAME_MODAL_CREATE": _parse_interaction_iframe_modal_create,
}


def parse_event(event_type: object, data: object) -> Change:
    """What the dispatch ``{"t": event_type, "d": data}`` means; ``kind="ignore"`` if nothing.

    Never raises: gateway input is untrusted and a parser failure must not stop a worker.
    """
    try:
        return _dispatch(event_type, data)
    except Exception:  # a payload shape no test foresaw is noise, never a crashed worker
        return Change(kind="ignore", event=event_type if isinstance(event_type, str) else "")


def _dispatch(event_type: object, data: object) -> Change:
    """`parse_event` without the safety net, so tests can see any exception it would hide."""
    if not isinstance(event_type, str) or not isinstance(data, dict):
        return Change(kind="ignore")
    parser = _PARSERS.get(event_type)
    if parser is None:
        return Change(kind="ignore", event=event_type)
    return parser(data)
