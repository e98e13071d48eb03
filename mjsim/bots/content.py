"""Job specs and the exact content strings and button sets of Midjourney messages (§4.2, §5)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from mjsim.formats import button, file_prompt_words, row
from mjsim.state import Account, JobRecord, Mode

__all__ = [
    "KNOWN_PARAMS",
    "JobSpec",
    "blend_spec",
    "content_for",
    "final_filename",
    "grid_components",
    "mode_label",
    "pan_label",
    "progress_components",
    "single_components",
    "unknown_params",
]

Payload = dict[str, Any]

#: Parameters the bot accepts; anything else is "Invalid parameter".
KNOWN_PARAMS = frozenset(
    [
        "ar",
        "aspect",
        "v",
        "version",
        "niji",
        "s",
        "stylize",
        "q",
        "quality",
        "c",
        "chaos",
        "seed",
        "sameseed",
        "style",
        "raw",
        "no",
        "iw",
        "tile",
        "weird",
        "w",
        "zoom",
        "fast",
        "relax",
        "turbo",
        "video",
        "sref",
        "cref",
        "sw",
        "cw",
        "stop",
        "repeat",
        "r",
        "p",
        "personalize",
        "draft",
        "exp",
        "oref",
        "ow",
        "motion",
        "hd",
        "test",
        "testp",
        "creative",
        "uplight",
        "upbeta",
        "upanime",
        "loop",
        "end",
        "bs",
        "profile",
        "public",
        "stealth",
    ]
)

_PARAM = re.compile(r"(?:^|\s)--([A-Za-z]+)")


def unknown_params(prompt: str) -> list[str]:
    return [f"--{p}" for p in _PARAM.findall(prompt) if p.lower() not in KNOWN_PARAMS]


@dataclass
class JobSpec:
    """What a job will produce, fixed when the interaction is accepted."""

    kind: str  #: imagine | blend | variation | upscale | upscale_hd | zoom | pan
    prompt: str  #: normalised
    command: str = "imagine"  #: for embed footers
    label: str | None = None  #: "Variations (Strong)", "Zoom Out", "Pan Left", "Upscaled (Subtle)", ...
    index: int | None = None  #: U1..U4
    grid: bool = True
    reply_to: Payload | None = None  #: source message (type 19 results)
    parent_hash: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def follow_up(
        cls,
        parent: JobRecord,
        source: Payload | None,
        kind: str,
        label: str | None,
        *,
        grid: bool,
        prompt: str | None = None,
        index: int | None = None,
    ) -> JobSpec:
        """A job started from a button or modal on ``parent``'s message ``source``, replying to it."""
        return cls(
            kind=kind,
            prompt=prompt or parent.prompt,
            label=label,
            index=index,
            grid=grid,
            reply_to=source,
            parent_hash=parent.hash,
        )


def blend_spec(options: dict[str, Any]) -> JobSpec:
    """/blend: the images become short links in the prompt, as the bot echoes them."""
    urls = [str(options[k]) for k in sorted(options) if k.startswith("image")]
    links = [f"<https://s.mj.run/{hashlib.sha1(u.encode()).hexdigest()[:11]}>" for u in urls]
    dims = str(options.get("dimensions") or "--ar 1:1")
    return JobSpec(kind="blend", prompt=f"{' '.join(links)} {dims}", command="blend")


_PAN_DIRS = {"left": "Left", "right": "Right", "up": "Up", "down": "Down"}


def pan_label(direction: str) -> str:
    """The label of a pan result: ``Pan Left`` for ``left``; an unknown direction reads as Left."""
    return f"Pan {_PAN_DIRS.get(direction, 'Left')}"


def final_filename(username: str, prompt: str, job_hash: str) -> str:
    """``<user>_<prompt words>_<hash>.png``, the file name of a finished image."""
    user = re.sub(r"[^A-Za-z0-9_]", "_", username)
    return f"{user}_{file_prompt_words(prompt) or 'image'}_{job_hash}.png"


def mode_label(account: Account) -> str:
    return account.mode.label + (", stealth" if account.stealth else "")


def content_for(spec: JobSpec, account: Account, status: str | int, *, mode: Mode | None = None) -> str:
    """``status``: "start", a percentage, "final" or "stopped"; `mode`: the job's (else the account's)."""
    mention = f"<@{account.user_id}>"
    label = mode_label(account) if mode is None else mode.label + (", stealth" if account.stealth else "")
    p = spec.prompt
    if spec.kind == "upscale":
        if status == "final":
            return f"**{p}** - Image #{spec.index} {mention}"
        tail = "(Waiting to start)" if status == "start" else f"({status}%) ({label})"
        if status == "stopped":
            tail = "(Stopped)"
        return f"Upscaling image #{spec.index} with **{p}** - {mention} {tail}"
    head = f"**{p}** - " + (f"{spec.label} by {mention}" if spec.label else mention)
    if status == "start":
        return f"{head} (Waiting to start)"
    if status == "final":
        return f"{head} ({label})"
    if status == "stopped":
        return f"{head} (Stopped)"
    return f"{head} ({status}%) ({label})"


def grid_components(job_hash: str) -> list[Payload]:
    """U1-U4 + reroll, V1-V4 (style 2, as in the recorded grids)."""
    return [
        row(
            *(button(f"MJ::JOB::upsample::{i}::{job_hash}", label=f"U{i}") for i in range(1, 5)),
            button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", emoji="🔄"),
        ),
        row(*(button(f"MJ::JOB::variation::{i}::{job_hash}", label=f"V{i}") for i in range(1, 5))),
    ]


def _upscale_family(prompt: str) -> str:
    m = re.search(r"--(?:v|version|niji)\s+([\d.]+)", prompt)
    version = m.group(1) if m else "6"
    if version.startswith("5"):
        return "v5"
    if version.startswith("7"):
        return "v7"
    if version == "6.1":
        return "v6r1"
    return "v6"


def single_components(job_hash: str, prompt: str) -> list[Payload]:
    """The buttons under an upscaled image."""
    fam = _upscale_family(prompt)
    if fam == "v5":
        ups = [
            button(f"MJ::JOB::upsample_v5_2x::1::{job_hash}::SOLO", label="Upscale (2x)"),
            button(f"MJ::JOB::upsample_v5_4x::1::{job_hash}::SOLO", label="Upscale (4x)"),
        ]
    else:
        ups = [
            button(f"MJ::JOB::upsample_{fam}_2x_subtle::1::{job_hash}::SOLO", label="Upscale (Subtle)"),
            button(f"MJ::JOB::upsample_{fam}_2x_creative::1::{job_hash}::SOLO", label="Upscale (Creative)"),
        ]
    return [
        row(*ups),
        row(
            button(f"MJ::JOB::low_variation::1::{job_hash}::SOLO", label="Vary (Subtle)", emoji="🪄"),
            button(f"MJ::JOB::high_variation::1::{job_hash}::SOLO", label="Vary (Strong)", emoji="🪄"),
            button(f"MJ::Inpaint::1::{job_hash}::SOLO", label="Vary (Region)", emoji="🖌️"),
        ),
        row(
            button(f"MJ::Outpaint::50::1::{job_hash}::SOLO", label="Zoom Out 2x", emoji="🔍"),
            button(f"MJ::Outpaint::75::1::{job_hash}::SOLO", label="Zoom Out 1.5x", emoji="🔍"),
            button(f"MJ::CustomZoom::{job_hash}", label="Custom Zoom", emoji="🔍"),
            *square_button(job_hash, prompt),
        ),
        row(
            button(f"MJ::JOB::pan_left::1::{job_hash}::SOLO", emoji="⬅️"),
            button(f"MJ::JOB::pan_right::1::{job_hash}::SOLO", emoji="➡️"),
            button(f"MJ::JOB::pan_up::1::{job_hash}::SOLO", emoji="⬆️"),
            button(f"MJ::JOB::pan_down::1::{job_hash}::SOLO", emoji="⬇️"),
            button(f"MJ::BOOKMARK::{job_hash}", emoji="❤️"),
        ),
        # -- video (issue 12): 🎞️ Animate, see mjsim.bots.video
        row(
            button(f"MJ::JOB::animate_high::1::{job_hash}::SOLO", label="Animate (High motion)", emoji="🎞️"),
            button(f"MJ::JOB::animate_low::1::{job_hash}::SOLO", label="Animate (Low motion)", emoji="🎞️"),
        ),
    ]


def progress_components(job_hash: str) -> list[Payload]:
    return [row(button(f"MJ::CancelJob::ByJobid::{job_hash}", label="Cancel Job", emoji="✖️"))]


# ---- Make Square and the Outpaint steps (issue 12 part 4) ----

_ASPECT = re.compile(r"--(?:ar|aspect)\s+(\d+)\s*:\s*(\d+)")


def square_button(job_hash: str, prompt: str) -> list[Payload]:
    """ "Make Square" (``MJ::Outpaint::100``), offered under an upscale that is not square."""
    m = _ASPECT.search(prompt)
    if m is None or m.group(1) == m.group(2):
        return []
    return [button(f"MJ::Outpaint::100::1::{job_hash}::SOLO", label="Make Square", emoji="↔️")]


def outpaint_prompt(prompt: str, step: str) -> str:
    """The prompt of an Outpaint job: ``--zoom 2`` (50), ``--zoom 1.5`` (75), or ``--ar 1:1`` (100)."""
    if step == "100":
        return _ASPECT.sub("--ar 1:1", prompt)
    return f"{prompt} --zoom {'2' if step == '50' else '1.5'}"
