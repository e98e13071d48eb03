"""The simulated bot applications and their slash-command catalogue (real ids and versions)."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["BOTS", "INSIGHTFACE", "MIDJOURNEY", "NIJI", "BotApp", "Command", "command_index"]

Payload = dict[str, Any]

_STR = 3
_ATTACHMENT = 11
_SUB_COMMAND = 1


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One registered slash command."""

    id: str
    version: str
    name: str
    description: str
    options: tuple[Payload, ...] = ()

    def to_payload(self, application_id: str) -> Payload:
        return {
            "id": self.id,
            "application_id": application_id,
            "version": self.version,
            "default_member_permissions": None,
            "type": 1,
            "nsfw": False,
            "name": self.name,
            "description": self.description,
            "dm_permission": True,
            "contexts": [0, 1, 2],
            "integration_types": [0],
            "options": [dict(o) for o in self.options],
        }


class BotApp(msgspec.Struct, frozen=True, kw_only=True):
    """A bot application: its user identity and commands."""

    key: str  #: short name used in config and control API ("midjourney", "niji", "insightface")
    id: str
    name: str
    avatar: str
    commands: tuple[Command, ...]

    def command(self, command_id: str) -> Command | None:
        return next((c for c in self.commands if c.id == command_id), None)

    def user(self) -> Payload:
        return {
            "id": self.id,
            "username": self.name,
            "discriminator": "0" if self.key == "insightface" else "9282",
            "avatar": self.avatar,
            "avatar_decoration": None,
            "display_name": None,
            "global_name": None,
            "public_flags": 589824,
            "bot": True,
        }

    def application(self) -> Payload:
        return {"id": self.id, "name": self.name, "icon": self.avatar, "description": "", "bot_id": self.id}


def _opt(name: str, description: str, type_: int = _STR, *, required: bool = True) -> Payload:
    return {"type": type_, "name": name, "description": description, "required": required}


_PROMPT = _opt("prompt", "The prompt to imagine")
_IMAGE = _opt("image", "The image to describe", _ATTACHMENT, required=False)
_LINK = _opt("link", "Link to the image to describe", required=False)
_BLEND: tuple[Payload, ...] = (
    _opt("image1", "First image to add to the blend", _ATTACHMENT),
    _opt("image2", "Second image to add to the blend", _ATTACHMENT),
    {
        **_opt("dimensions", "The dimensions of the image", required=False),
        "choices": [
            {"name": "Portrait", "value": "--ar 2:3"},
            {"name": "Square", "value": "--ar 1:1"},
            {"name": "Landscape", "value": "--ar 3:2"},
        ],
    },
    _opt("image3", "Third image to add to the blend (optional)", _ATTACHMENT, required=False),
    _opt("image4", "Fourth image to add to the blend (optional)", _ATTACHMENT, required=False),
    _opt("image5", "Fifth image to add to the blend (optional)", _ATTACHMENT, required=False),
)
_PREFER: tuple[Payload, ...] = (
    {"type": _SUB_COMMAND, "name": "remix", "description": "Toggle remix mode.", "options": []},
)


def _mj_commands(ids: dict[str, tuple[str, str]]) -> tuple[Command, ...]:
    spec: dict[str, tuple[str, tuple[Payload, ...]]] = {
        "imagine": ("Create images with Midjourney", (_PROMPT,)),
        "describe": ("Writes a prompt based on your image.", (_IMAGE, _LINK)),
        "blend": ("Blend images together seamlessly!", _BLEND),
        "shorten": ("Analyzes and shortens a prompt.", (_PROMPT,)),
        "show": ("Shows the job view based on job id.", (_opt("job_id", "The job ID of the job"),)),
        "info": ("View information about your profile.", ()),
        "fast": ("Switch to fast mode", ()),
        "relax": ("Switch to relax mode", ()),
        "turbo": ("Switch to turbo mode", ()),
        "settings": ("View and adjust your personal settings.", ()),
        "prefer": ("Sets your preferences.", _PREFER),
    }
    return tuple(
        Command(id=ids[name][0], version=ids[name][1], name=name, description=desc, options=opts)
        for name, (desc, opts) in spec.items()
    )


# turbo and prefer ids are not in the protocol reference: invented, plausibly shaped.
MIDJOURNEY = BotApp(
    key="midjourney",
    id="936929561302675456",
    name="Midjourney Bot",
    avatar="4a79ea7cd151474ff9f6e08339d69380",
    commands=_mj_commands(
        {
            "imagine": ("938956540159881230", "1237876415471554623"),
            "describe": ("1092492867185950852", "1237876415471554625"),
            "blend": ("1062880104792997970", "1237876415471554624"),
            "shorten": ("1121575372539039774", "1247736572414001223"),
            "show": ("1169435442328911902", "1247736572414001224"),
            "info": ("972289487818334209", "1237876415735660565"),
            "fast": ("972289487818334212", "1237876415735660572"),
            "relax": ("972289487818334213", "1237876415735660573"),
            "turbo": ("1095045566128689234", "1237876415735660574"),
            "settings": ("1000850743479255081", "1493662068581077053"),
            "prefer": ("984273800587776053", "1237876415735660567"),
        }
    ),
)

NIJI = BotApp(
    key="niji",
    id="1022952195194359889",
    name="niji・journey Bot",
    avatar="b9d5a7e2a1c9bf3c44b6a4e1e0c7e0a8",
    commands=_mj_commands(
        {
            "imagine": ("1023054140580057099", "1248805223892254774"),
            "blend": ("1061216934374424697", "1248805223892254775"),
            "describe": ("1092683500743831652", "1248805223892254776"),
            "shorten": ("1121575453916942376", "1248805223892254777"),
            "show": ("1023054140580057101", "1248805223892254781"),
            "info": ("1023054140580057102", "1248805223892254782"),
            "fast": ("1023054140580057107", "1248805223925940261"),
            "relax": ("1023054140634579024", "1248805223925940262"),
            "turbo": ("1023054140634579027", "1248805223925940263"),
            "settings": ("1023054140634579025", "1493662157915684906"),
            "prefer": ("1023054140580057104", "1248805223892254779"),
        }
    ),
)

INSIGHTFACE = BotApp(
    key="insightface",
    id="1090660574196674713",
    name="InsightFaceSwap",
    avatar="0f3c2a1b5d6e7f8091a2b3c4d5e6f708",
    commands=(
        Command(
            id="1097018209481261127",
            version="1097018209481261130",
            name="saveid",
            description="Save an identity feature with a name",
            options=(_opt("idname", "ID name"), _opt("image", "Face image", _ATTACHMENT)),
        ),
        Command(
            id="1097030226204184646",
            version="1097030226204184647",
            name="swapid",
            description="Swap faces with a saved identity",
            options=(_opt("idname", "ID name(s)"), _opt("image", "Target image", _ATTACHMENT)),
        ),
    ),
)

#: Every simulated bot, by application id.
BOTS: dict[str, BotApp] = {b.id: b for b in (MIDJOURNEY, NIJI, INSIGHTFACE)}


def command_index(apps: list[BotApp]) -> Payload:
    """Build the ``application-command-index`` response body for the given bots."""
    return {
        "applications": [a.application() for a in apps],
        "application_commands": [c.to_payload(a.id) for a in apps for c in a.commands],
        "version": "1",
    }
