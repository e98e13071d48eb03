"""The Discord vocabulary shared by bridge, workers and web: bot ids, gateway events, speed modes, buttons.

One owner per rule (STYLE.md §16): which application id is which bot (reference/discord-protocol.md §3),
which dispatches the bridge and the workers care about (§1.4), what the bot's speed-mode words mean
(§4.2) and what each custom_id of the bot's catalogue asks for (§5). The parser, the bridge and the
actions all read them from here. mjsim keeps its own spellings on purpose: it stands in for Discord and
imports nothing of ours (DESIGN.md §5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

import msgspec

from broker.models import BotType, SpeedMode

__all__ = [
    "BOT_IDS",
    "IFRAME_PREFIX",
    "INSIGHTFACE_ID",
    "INTERACTION_CREATE",
    "INTERACTION_EVENTS",
    "INTERACTION_FAILED",
    "INTERACTION_FAILURE",
    "INTERACTION_IFRAME_MODAL_CREATE",
    "INTERACTION_MODAL_CREATE",
    "INTERACTION_SUCCESS",
    "MESSAGE_CREATE",
    "MESSAGE_DELETE",
    "MESSAGE_EVENTS",
    "MESSAGE_UPDATE",
    "MIDJOURNEY_ID",
    "MODAL_EVENTS",
    "NIJI_ID",
    "OUTPAINT_STEPS",
    "SPEED_WORDS",
    "ButtonKind",
    "CustomId",
    "application_id_for",
    "bot_type_of",
    "cancel_button_id",
    "grid_button_id",
    "parse_custom_id",
    "speed_word",
]

# ---------------------------------------------------------------- bots (§3)

MIDJOURNEY_ID: Final = "936929561302675456"
NIJI_ID: Final = "1022952195194359889"
INSIGHTFACE_ID: Final = "1090660574196674713"
#: the bots whose messages the bridge forwards and whose commands it sends
BOT_IDS: Final = frozenset({MIDJOURNEY_ID, NIJI_ID, INSIGHTFACE_ID})

_BOT_TYPES: Final[Mapping[str, BotType]] = {
    MIDJOURNEY_ID: BotType.MID_JOURNEY,
    NIJI_ID: BotType.NIJI_JOURNEY,
    INSIGHTFACE_ID: BotType.INSIGHT_FACE,
}


def bot_type_of(application_id: str | None) -> BotType | None:
    """Which of our bots an author or application id is; None for anyone else."""
    return _BOT_TYPES.get(application_id or "")


def application_id_for(bot_type: BotType | str | None) -> str:
    """The application id to send a task's interactions to; Midjourney unless it is Niji or InsightFace."""
    if bot_type == BotType.NIJI_JOURNEY:
        return NIJI_ID
    if bot_type == BotType.INSIGHT_FACE:
        return INSIGHTFACE_ID
    return MIDJOURNEY_ID


# ---------------------------------------------------------------- gateway dispatches (§1.4)

MESSAGE_CREATE: Final = "MESSAGE_CREATE"
MESSAGE_UPDATE: Final = "MESSAGE_UPDATE"
MESSAGE_DELETE: Final = "MESSAGE_DELETE"
INTERACTION_CREATE: Final = "INTERACTION_CREATE"
INTERACTION_SUCCESS: Final = "INTERACTION_SUCCESS"
#: Discord's docs spell the failure INTERACTION_FAILURE, discord.py-self INTERACTION_FAILED: both come
INTERACTION_FAILURE: Final = "INTERACTION_FAILURE"
INTERACTION_FAILED: Final = "INTERACTION_FAILED"
INTERACTION_MODAL_CREATE: Final = "INTERACTION_MODAL_CREATE"
#: Vary (Region)'s editor, and the captcha that stops an account
INTERACTION_IFRAME_MODAL_CREATE: Final = "INTERACTION_IFRAME_MODAL_CREATE"

#: the bot's messages: what the workers parse
MESSAGE_EVENTS: Final = frozenset({MESSAGE_CREATE, MESSAGE_UPDATE, MESSAGE_DELETE})
#: the gateway's interaction events, every one of them scoped to the session that sent the interaction
INTERACTION_EVENTS: Final = frozenset(
    {
        INTERACTION_CREATE,
        INTERACTION_SUCCESS,
        INTERACTION_FAILED,
        INTERACTION_FAILURE,
        INTERACTION_MODAL_CREATE,
        INTERACTION_IFRAME_MODAL_CREATE,
    }
)
#: the bot answered a click with a dialog
MODAL_EVENTS: Final = frozenset({INTERACTION_MODAL_CREATE, INTERACTION_IFRAME_MODAL_CREATE})

# ---------------------------------------------------------------- speed modes (§4.2)

#: the words the bot writes in a job message's tail, ``(fast)``, ``(relaxed, stealth)``..., lower-cased
SPEED_WORDS: Final[Mapping[str, SpeedMode]] = {
    "fast": SpeedMode.FAST,
    "relaxed": SpeedMode.RELAX,
    "relax": SpeedMode.RELAX,
    "turbo": SpeedMode.TURBO,
}


def speed_word(mode: SpeedMode) -> str:
    """The bot's own word for `mode`, as in its ``/fast``, ``/relax``, ``/turbo`` commands."""
    return mode.value.lower()


# ---------------------------------------------------------------- buttons and modals (§5)


class ButtonKind(StrEnum):
    """What a component's custom_id asks the bot for; `parse_custom_id` tells them apart.

    ``<hash>`` is the job uuid; `CustomId.arg` is the number (or word) shown after the name.
    """

    #: ``MJ::JOB::upsample::<1-4>::<hash>``: U1..U4 of a grid
    UPSCALE = "upscale"
    #: ``MJ::JOB::upsample_<v5|v6|v6r1|v7>_<2x|4x>[_subtle|_creative]::1::<hash>::SOLO``
    UPSCALE_HD = "upscale_hd"
    #: ``MJ::JOB::variation::<1-4>::<hash>``: V1..V4 of a grid
    VARIATION = "variation"
    #: ``MJ::JOB::high_variation::1::<hash>::SOLO``: Vary (Strong)
    VARY_STRONG = "vary_strong"
    #: ``MJ::JOB::low_variation::1::<hash>::SOLO``: Vary (Subtle)
    VARY_SUBTLE = "vary_subtle"
    #: ``MJ::JOB::reroll::0::<hash>::SOLO``: 🔄
    REROLL = "reroll"
    #: ``MJ::JOB::pan_<left|right|up|down>::1::<hash>::SOLO``
    PAN = "pan"
    #: ``MJ::JOB::animate_<high|low>::1::<hash>::SOLO``: 🎞️ Animate
    ANIMATE = "animate"
    #: ``MJ::JOB::animate_<high|low>_extend::<N>::<hash>``: Extend of a video result
    ANIMATE_EXTEND = "animate_extend"
    #: ``MJ::JOB::video_virtual_upscale::<N>::<hash>``: U1..U4 of a video result
    VIDEO_UPSCALE = "video_upscale"
    #: ``MJ::Outpaint::<50|75|100>::1::<hash>::SOLO``: Zoom Out 2x / 1.5x / Make Square (`arg` = the step)
    ZOOM_OUT = "zoom_out"
    #: ``MJ::CustomZoom::<hash>``: always opens a modal
    CUSTOM_ZOOM = "custom_zoom"
    #: ``MJ::Inpaint::1::<hash>::SOLO``: Vary (Region), opens the iframe editor
    VARY_REGION = "vary_region"
    #: ``MJ::Job::PicReader::<1-4|all>``: imagine one of describe's prompts
    DESCRIBE_PICK = "describe_pick"
    #: ``MJ::Picread::Retry``: describe again
    DESCRIBE_RETRY = "describe_retry"
    #: ``MJ::Job::PromptAnalyzer::<1-5|ShowDetails>``: imagine one of shorten's prompts
    SHORTEN_PICK = "shorten_pick"
    #: ``MJ::BOOKMARK::<hash>``: ❤️, no result message
    BOOKMARK = "bookmark"
    #: ``MJ::RemixModal::<hash>::<N>::<0|1>``, input ``MJ::RemixModal::new_prompt``
    REMIX_MODAL = "remix_modal"
    #: ``MJ::PanModal::<dir>::<hash>::<N>``, input ``MJ::PanModal::prompt``
    PAN_MODAL = "pan_modal"
    #: ``MJ::OutpaintCustomZoomModal::<hash>``, input ``MJ::OutpaintCustomZoomModal::prompt``
    CUSTOM_ZOOM_MODAL = "custom_zoom_modal"
    #: ``MJ::ImagineModal::<message id>`` (reroll with remix, shorten picks), input ``::new_prompt``
    IMAGINE_MODAL = "imagine_modal"
    #: ``MJ::Picreader::Modal::<N>`` (lower-case r), input ``MJ::Picreader::Modal::PromptField``
    DESCRIBE_MODAL = "describe_modal"
    #: ``MJ::AnimateModal::<hash>::<N>::<low|high>::<0|1>``, input ``MJ::AnimateModal::prompt``
    ANIMATE_MODAL = "animate_modal"
    #: ``MJ::iframe::<token>``: an iframe modal (Vary Region editor or captcha); the token is opaque
    IFRAME = "iframe"
    # ---- the rest of the catalogue (issue 12 part 4) ----
    #: ``MJ::CancelJob::ByJobid::<hash>``: "Cancel Job" on a running job's message; the job ends Stopped
    CANCEL_JOB = "cancel_job"


#: the custom_id prefix of iframe modals; what follows is the editor's token
IFRAME_PREFIX: Final = "MJ::iframe::"
#: ``MJ::Outpaint::<step>``: 50 = Zoom Out 2x, 75 = Zoom Out 1.5x, 100 = Make Square (non-square images)
OUTPAINT_STEPS: Final = frozenset({"50", "75", "100"})


class CustomId(msgspec.Struct, frozen=True):
    """A custom_id of the catalogue: its kind and the number (or word) it carries, "" when none.

    `arg` is the grid index of U/V, the zoom step of Zoom Out, the picked prompt of describe/shorten
    (``all``, ``ShowDetails`` too) and the image index of the remix, pan, describe and animate modals.
    """

    kind: ButtonKind
    arg: str = ""


_JOB_NAMES: Final[Mapping[str, ButtonKind]] = {
    "upsample": ButtonKind.UPSCALE,
    "variation": ButtonKind.VARIATION,
    "high_variation": ButtonKind.VARY_STRONG,
    "low_variation": ButtonKind.VARY_SUBTLE,
    "reroll": ButtonKind.REROLL,
    **dict.fromkeys(("pan_left", "pan_right", "pan_up", "pan_down"), ButtonKind.PAN),
    **dict.fromkeys(("animate_high", "animate_low"), ButtonKind.ANIMATE),
    **dict.fromkeys(("animate_high_extend", "animate_low_extend"), ButtonKind.ANIMATE_EXTEND),
    "video_virtual_upscale": ButtonKind.VIDEO_UPSCALE,
}
_HD_UPSCALE = re.compile(r"upsample_v\d+(?:r\d+)?_(?:2x|4x)(?:_subtle|_creative)?")
#: heads whose kind needs nothing more: (kind, index of the part that is `arg`)
_HEADS: Final[Mapping[str, tuple[ButtonKind, int]]] = {
    "CustomZoom": (ButtonKind.CUSTOM_ZOOM, 0),
    "Inpaint": (ButtonKind.VARY_REGION, 0),
    "BOOKMARK": (ButtonKind.BOOKMARK, 0),
    "RemixModal": (ButtonKind.REMIX_MODAL, 3),
    "PanModal": (ButtonKind.PAN_MODAL, 4),
    "OutpaintCustomZoomModal": (ButtonKind.CUSTOM_ZOOM_MODAL, 0),
    "ImagineModal": (ButtonKind.IMAGINE_MODAL, 0),
    "AnimateModal": (ButtonKind.ANIMATE_MODAL, 3),
    "iframe": (ButtonKind.IFRAME, 0),
}


def parse_custom_id(custom_id: str) -> CustomId | None:
    """The kind of a catalogue custom_id and the number it carries; None for anything else.

    Read by its ``::`` parts, as the bot writes them; the job hash is not checked here.
    """
    parts = custom_id.split("::")
    if len(parts) < 2 or parts[0] != "MJ":
        return None
    head = parts[1]
    name = parts[2] if len(parts) > 2 else ""
    arg = parts[3] if len(parts) > 3 else ""
    if head == "JOB":
        kind = _JOB_NAMES.get(name)
        if kind is None and _HD_UPSCALE.fullmatch(name):
            kind = ButtonKind.UPSCALE_HD
        return CustomId(kind, arg) if kind is not None else None
    if head == "Job":
        if name == "PicReader":
            return CustomId(ButtonKind.DESCRIBE_PICK, arg)
        if name == "PromptAnalyzer":
            return CustomId(ButtonKind.SHORTEN_PICK, arg)
        return None
    if head == "Outpaint":
        return CustomId(ButtonKind.ZOOM_OUT, name) if name in OUTPAINT_STEPS else None
    if head == "CancelJob":
        return CustomId(ButtonKind.CANCEL_JOB) if name == "ByJobid" and len(parts) > 3 else None
    if head == "Picread":
        return CustomId(ButtonKind.DESCRIBE_RETRY) if name == "Retry" else None
    if head.lower() == "picreader" and name.lower() == "modal":
        # Seen spelled both ways (PicReader / Picreader) across bot versions.
        return CustomId(ButtonKind.DESCRIBE_MODAL, arg)
    found = _HEADS.get(head)
    if found is None:
        return None
    kind, at = found
    return CustomId(kind, parts[at] if at and len(parts) > at else "")


#: the grid buttons the legacy ``/change`` presses, as (name, suffix) of ``MJ::JOB::<name>::<N>::<hash>``
_GRID_BUTTONS: Final[Mapping[ButtonKind, tuple[str, str]]] = {
    ButtonKind.UPSCALE: ("upsample", ""),
    ButtonKind.VARIATION: ("variation", ""),
    ButtonKind.REROLL: ("reroll", "::SOLO"),
}


def grid_button_id(kind: ButtonKind, job_hash: str, index: int = 0) -> str:
    """The custom_id of U`index`, V`index` or 🔄 (index 0) of the grid `job_hash`.

    Raises KeyError for other kinds: only the grid's own buttons can be built from a hash.
    """
    name, suffix = _GRID_BUTTONS[kind]
    return f"MJ::JOB::{name}::{index}::{job_hash}{suffix}"


# ---------------------------------------------------------------- cancelling a running job (issue 12)


def cancel_button_id(job_hash: str) -> str:
    """The custom_id of "Cancel Job" on the running job `job_hash` (its start and progress message)."""
    return f"MJ::CancelJob::ByJobid::{job_hash}"
