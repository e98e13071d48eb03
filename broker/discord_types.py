"""Discord gateway payloads as msgspec Structs: the fields we read, nothing more (discord.py's ``types/``).

Decode a dispatch's raw ``d`` straight into its shape (``msgspec.json.Decoder(Message)``), or convert
an already-decoded dict with ``msgspec.convert(d, Message)``. Field names are Discord's own.

What was decided about leniency (reference/discord-protocol.md §1.3, §1.4, §4.4):

- Unknown fields are ignored, so Discord may add fields freely; nothing is required, every field has
  a default, and every object or list field also accepts ``null`` (bot edits are partial, and some
  clients send ``"interaction": null`` or ``"message_reference": null``).
- ``nonce`` is ``str | int``: Discord echoes what the client sent, and some clients send a number.
  Every other id is a string, as Discord always sends snowflakes; a number there is malformed.
- Otherwise types are strict (no ``"2"`` for an int, no ``true`` for an int): a payload that does not
  fit is malformed as a whole, and its reader treats it as noise rather than guessing at each field.
- ``components`` nest (rows of buttons; v2 containers deeper), so `Component` holds its own
  ``components``; text inputs of a modal carry their prefilled ``value`` in the same shape.
- The legacy ``interaction`` and the newer ``interaction_metadata`` share the fields read here, so both
  use `MessageInteraction`.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Application",
    "Attachment",
    "Component",
    "Embed",
    "EmbedFooter",
    "EmbedMedia",
    "Emoji",
    "InteractionEvent",
    "Message",
    "MessageDelete",
    "MessageInteraction",
    "MessageReference",
    "ModalCreate",
    "PrivateChannel",
    "Ready",
    "User",
]

# gc=False: decoded payloads never form reference cycles, and untracked structs decode faster.


class User(msgspec.Struct, frozen=True, gc=False):
    """A message author, an interaction's user, a DM recipient or the READY user."""

    id: str | None = None
    username: str | None = None
    bot: bool | None = None


class Emoji(msgspec.Struct, frozen=True, gc=False):
    #: the unicode character, or the custom emoji's name
    name: str | None = None
    id: str | None = None


class Component(msgspec.Struct, frozen=True, gc=False):
    """A row (type 1), button (2), select (3), text input (4) or v2 container; rows hold `components`."""

    type: int | None = None
    custom_id: str | None = None
    label: str | None = None
    style: int | None = None
    emoji: Emoji | None = None
    #: a modal text input's prefilled text
    value: str | None = None
    components: list[Component] | None = None


class EmbedFooter(msgspec.Struct, frozen=True, gc=False):
    text: str | None = None


class EmbedMedia(msgspec.Struct, frozen=True, gc=False):
    url: str | None = None


class Embed(msgspec.Struct, frozen=True, gc=False):
    title: str | None = None
    description: str | None = None
    color: int | None = None
    #: "rich" for bot notices; "link", "image"... for unfurls
    type: str | None = None
    footer: EmbedFooter | None = None
    image: EmbedMedia | None = None


class Attachment(msgspec.Struct, frozen=True, gc=False):
    id: str | None = None
    filename: str | None = None
    url: str | None = None
    proxy_url: str | None = None
    content_type: str | None = None


class MessageInteraction(msgspec.Struct, frozen=True, gc=False):
    """``interaction_metadata`` (or the legacy ``interaction``) of a reply to a command or click."""

    #: the interaction id: INTERACTION_SUCCESS's ``id``
    id: str | None = None
    #: 2 slash command, 3 button, 5 modal submit
    type: int | None = None
    #: the command: imagine, blend, describe, shorten, show, info...
    name: str | None = None


class MessageReference(msgspec.Struct, frozen=True, gc=False):
    """The message a reply (U/V/pan/zoom results) answers."""

    message_id: str | None = None


class _InChannel(msgspec.Struct, frozen=True, gc=False):
    """The object's id and where it happened; every dispatch we read has them."""

    id: str | None = None
    channel_id: str | None = None
    guild_id: str | None = None


class Message(_InChannel, frozen=True, gc=False):
    """MESSAGE_CREATE, and MESSAGE_UPDATE (where any field may be missing)."""

    author: User | None = None
    content: str | None = None
    #: only on the interaction's first reply; str or int, as the client sent it
    nonce: str | int | None = None
    #: 64 ephemeral, 128 loading, 4 suppress embeds
    flags: int | None = None
    embeds: list[Embed] | None = None
    attachments: list[Attachment] | None = None
    components: list[Component] | None = None
    interaction_metadata: MessageInteraction | None = None
    interaction: MessageInteraction | None = None
    message_reference: MessageReference | None = None
    application_id: str | None = None


class MessageDelete(_InChannel, frozen=True, gc=False):
    """MESSAGE_DELETE: the deleted message's id."""


class InteractionEvent(_InChannel, frozen=True, gc=False):
    """INTERACTION_CREATE / INTERACTION_SUCCESS / INTERACTION_FAILURE: the interaction id and nonce."""

    nonce: str | int | None = None


class Application(msgspec.Struct, frozen=True, gc=False):
    id: str | None = None


class ModalCreate(InteractionEvent, frozen=True, gc=False):
    """INTERACTION_MODAL_CREATE and INTERACTION_IFRAME_MODAL_CREATE.

    `id` is the interaction id of the click that opened it (a modal submit names it as ``data.id``).
    """

    custom_id: str | None = None
    title: str | None = None
    #: rows of text inputs (plain modals)
    components: list[Component] | None = None
    application: Application | None = None
    application_id: str | None = None
    #: the editor's path (iframe modals): ``/captcha/...`` for a captcha
    iframe_path: str | None = None


class PrivateChannel(msgspec.Struct, frozen=True, gc=False):
    """A DM channel of READY's ``private_channels``: recipients by id, or as users (both are seen)."""

    id: str | None = None
    recipient_ids: list[str] | None = None
    recipients: list[User] | None = None


class Ready(msgspec.Struct, frozen=True, gc=False):
    """The READY fields the bridge reads: its own user and its DM channels."""

    session_id: str | None = None
    user: User | None = None
    private_channels: list[PrivateChannel] | None = None
