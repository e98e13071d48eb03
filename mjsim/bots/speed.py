"""Speed modes of simulated jobs: which mode a job runs in, how long it takes, and running out of fast hours.

A slash command or a dialog's prompt may carry ``--fast``, ``--relax`` or ``--turbo``, which wins over
the account's mode; a button click has no prompt of its own and runs in the account's mode (the one
``/fast``, ``/relax``, ``/turbo`` set), read when the click arrives. The mode shows in the bot's job
messages as ``(fast)``, ``(relaxed)`` or ``(turbo)``.

Out of fast hours (``fast_exhausted`` through the control API), a FAST or TURBO job is refused with
the embed titled ``Credits exhausted``: the title the real bot uses, as matched by
trueai-org/midjourney-proxy, src/Midjourney.Services/DiscordWebSocketService.cs
(``if (title == "Credits exhausted")``, which marks the account's fast hours used up and switches it
to relax). The description's wording is not in that source (see ``bots.errors``).
"""

from __future__ import annotations

import re

from mjsim.bots.base import InteractionCtx
from mjsim.state import Mode, SimSettings

__all__ = ["duration_factor", "job_mode", "needs_fast_hours"]

_FLAG = re.compile(r"(?<!\S)--(fast|relax|turbo)(?!\S)", re.IGNORECASE)


def job_mode(ctx: InteractionCtx, prompt: str) -> Mode:
    """The mode a job started by `ctx` with `prompt` runs in: the prompt's last flag, else the account's."""
    if ctx.type != 3:  # commands and dialog submits bring their own prompt
        flags = _FLAG.findall(prompt)
        if flags:
            return Mode(flags[-1].lower())
    return ctx.account_mode or ctx.account.mode


def needs_fast_hours(mode: Mode) -> bool:
    return mode is not Mode.RELAX


def duration_factor(settings: SimSettings, mode: Mode) -> float:
    """How much longer than a fast job a job of `mode` takes."""
    if mode is Mode.RELAX:
        return settings.relax_factor
    if mode is Mode.TURBO:
        return settings.turbo_factor
    return 1.0
