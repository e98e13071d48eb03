"""MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE from the bots: a message's parts, in precedence order.

The seed DM first, then a legacy ``Failed ...`` text, then the first embed (results, notices,
errors), then the job line of the content, then InsightFace's undocumented replies.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from broker.discord import MESSAGE_CREATE, MESSAGE_DELETE, MESSAGE_UPDATE, bot_type_of
from broker.discord_types import Attachment, Component, Message, MessageDelete
from broker.models import BotType, Button, TaskAction
from workers.parser.change import Change, ErrorInfo, Kind
from workers.parser.content import (
    GUID,
    ContentLine,
    extract_hash,
    hash_from_custom_ids,
    seed_dm,
    split_content,
)
from workers.parser.embeds import from_embed
from workers.parser.video import video_action, video_files

__all__ = [
    "component_buttons",
    "parse_message_create",
    "parse_message_delete",
    "parse_message_update",
    "text_nonce",
]

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4")
#: rows hold buttons, v2 containers nest deeper: bounded, so hostile input cannot recurse far
_MAX_DEPTH = 6
_NAME_ACTION = {
    "imagine": TaskAction.IMAGINE,
    "blend": TaskAction.BLEND,
    "describe": TaskAction.DESCRIBE,
    "shorten": TaskAction.SHORTEN,
    "swapid": TaskAction.SWAP_FACE,
}


def text_nonce(nonce: str | int | None) -> str | None:
    """A nonce as a string (Discord echoes what the client sent, number or string); None if empty."""
    if isinstance(nonce, int):
        return str(nonce)
    return nonce or None


def component_buttons(components: Sequence[Component] | None) -> list[Button]:
    """Every component with a custom_id, depth first in message order (buttons, selects, inputs)."""
    out: list[Button] = []
    if components:
        _walk(components, out, 0)
    return out


def _walk(components: Sequence[Component], out: list[Button], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    for comp in components:
        if comp.custom_id:
            out.append(
                Button(
                    custom_id=comp.custom_id,
                    emoji=(comp.emoji.name if comp.emoji else None) or "",
                    label=comp.label or "",
                    type=comp.type or 2,
                    style=comp.style or 2,
                )
            )
        if comp.components is not None:
            _walk(comp.components, out, depth + 1)


def _is_image(attachment: Attachment) -> bool:
    if (attachment.content_type or "").startswith(("image/", "video/")):
        return True
    name = (attachment.filename or attachment.url or "").split("?", 1)[0]
    return name.lower().endswith(_IMAGE_EXT)


def parse_message_create(msg: Message) -> Change:
    return _parse_message(MESSAGE_CREATE, msg)


def parse_message_update(msg: Message) -> Change:
    return _parse_message(MESSAGE_UPDATE, msg)


def parse_message_delete(msg: MessageDelete) -> Change:
    return Change(
        kind="ignore",
        event=MESSAGE_DELETE,
        message_id=msg.id or None,
        channel_id=msg.channel_id or None,
        guild_id=msg.guild_id or None,
    )


def _parse_message(event: str, msg: Message) -> Change:
    author_id = (msg.author.id if msg.author else None) or None
    bot = bot_type_of(author_id)
    if msg.author is not None and bot is None:
        # Our own upload messages, other users: not a bot's. A message without an author is parsed,
        # to be lenient with partial edits.
        return Change(kind="ignore", event=event, message_id=msg.id or None, author_id=author_id)

    created = event == MESSAGE_CREATE
    content = msg.content or ""
    meta, legacy = msg.interaction_metadata, msg.interaction
    interaction_name = (meta.name if meta else None) or (legacy.name if legacy else None)
    interaction_type = meta.type if meta else None
    if interaction_type is None and legacy is not None:
        interaction_type = legacy.type

    buttons = component_buttons(msg.components)
    custom_ids = [b.custom_id for b in buttons]

    image = next((a for a in msg.attachments or () if _is_image(a)), None)
    embed = msg.embeds[0] if msg.embeds else None
    embed_image_url = embed.image.url if embed and embed.image else None

    image_url: str | None = None
    hash_: str | None = None
    if image is not None:
        image_url = image.url or image.proxy_url
        hash_ = extract_hash(image_url or image.filename or "")
    elif embed_image_url:
        image_url = embed_image_url
        hash_ = extract_hash(embed_image_url)
    button_hash = hash_from_custom_ids(custom_ids)
    # Previews may be named by a short id; the buttons always carry the full uuid (§6.5).
    if button_hash and (hash_ is None or (not GUID.fullmatch(hash_) and button_hash.startswith(hash_))):
        hash_ = button_hash

    base = Change(
        kind="ignore",
        event=event,
        hash=hash_,
        message_id=msg.id or None,
        nonce=text_nonce(msg.nonce),
        image_url=image_url,
        custom_ids=custom_ids,
        message_flags=msg.flags,
        buttons=buttons,
        interaction_id=(meta.id if meta else None) or (legacy.id if legacy else None) or None,
        interaction_name=interaction_name,
        interaction_type=interaction_type,
        referenced_message_id=(msg.message_reference.message_id if msg.message_reference else None) or None,
        channel_id=msg.channel_id or None,
        guild_id=msg.guild_id or None,
        author_id=author_id,
        bot=bot,
        content=content,
        embed_title=embed.title if embed else None,
        embed_description=embed.description if embed else None,
        video_urls=video_files(msg.attachments),
    )
    replace = msgspec.structs.replace

    # ✉️ seed DM (§5.4): three lines, no mention; the job id replaces any attachment hash.
    seed = seed_dm(content)
    if seed is not None:
        return replace(base, seed=seed.seed, hash=seed.job_id or hash_, prompt=seed.prompt)

    if content.lstrip().startswith("Failed"):
        # Legacy plain-text failure ("Failed to process your command"), matched by nonce (§4.2).
        title = content.strip().split("\n", 1)[0].strip()
        return replace(base, kind="error", error=ErrorInfo(title=title, description=content.strip()))

    if embed is not None:
        change = from_embed(base, embed, created)
        if change is not None:
            return change

    line = split_content(content)
    if line is not None:
        return _from_content(base, line, created)

    if bot == BotType.INSIGHT_FACE and image is not None:
        # Reply texts are undocumented: an image from the swap bot is the result, on create or edit.
        return replace(base, kind="done", action=TaskAction.SWAP_FACE)
    if bot == BotType.INSIGHT_FACE:
        return replace(base, action=TaskAction.SWAP_FACE)
    return base


def _from_content(base: Change, line: ContentLine, created: bool) -> Change:
    action, index = line.action, line.index
    video = video_action(line.prompt, base.custom_ids) if action is None else None
    if video is not None:
        action, index = video
    if base.bot == BotType.INSIGHT_FACE:
        action = TaskAction.SWAP_FACE
    elif action is None:
        named = _NAME_ACTION.get(base.interaction_name or "")
        if named is not None:
            action = named
        elif base.interaction_type == 3:
            action = TaskAction.REROLL  # plain pattern in reply to a button: the 🔄 button
        else:
            action = TaskAction.IMAGINE

    status = line.status
    kind: Kind
    if status == "Waiting to start" or (line.opener and line.progress is None and status is None):
        kind = "start" if created else "progress"
    elif status is not None or line.progress is not None:
        # Only the interaction's first reply carries the nonce: that message is the job's start.
        kind = "start" if created and base.nonce and status != "Stopped" else "progress"
    else:
        kind = "done" if created else "ignore"
    return msgspec.structs.replace(
        base,
        kind=kind,
        action=action,
        progress=line.progress,
        prompt=line.prompt,
        mode=line.mode,
        index=index,
        user_id=line.user_id,
        status_text=status,
        stealth=line.stealth,
    )
