"""Speed modes: which mode a task asks for, which mode an account runs it in, and the prompt flag.

The rule, in order (the first that says something wins):

1. a ``--fast``, ``--relax`` or ``--turbo`` flag in the prompt;
2. the path prefix (``/mj-fast``, ``/mj-relax``, ``/mj-turbo``);
3. ``accountFilter.modes`` (a list in priority order: the first one the account offers);
4. the account's ``default_mode``.

A flag that contradicts the prefix, or two different flags in one prompt, is bad input (code 4): the
client asked for two things at once, and guessing one would spend fast hours it did not want spent.

An account whose fast hours are used up and that relaxes by itself (``auto_relax``) is "relax only":
it offers RELAX alone, and a task that asked nothing runs relaxed there. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from broker.config import Account
from broker.errors import ValidationFailed
from broker.models import SpeedMode

__all__ = [
    "account_modes",
    "default_mode_of",
    "mode_for",
    "modes_in_prompt",
    "requested_modes",
    "with_mode_flag",
    "without_mode_flags",
]

_MODE_FLAG = re.compile(r"(?<!\S)--(fast|relax|turbo)(?!\S)", re.IGNORECASE)


def modes_in_prompt(prompt: str | None) -> list[SpeedMode]:
    """`--fast`, `--relax`, `--turbo` flags of a prompt, in order."""
    if not prompt or "--" not in prompt:
        return []
    return [SpeedMode(m.group(1).upper()) for m in _MODE_FLAG.finditer(prompt)]


def requested_modes(
    prefix: SpeedMode | None, filter_modes: Sequence[SpeedMode] | None, prompt: str | None
) -> list[SpeedMode]:
    """The modes a request accepts, preferred first; empty = the account's default.

    Raises `ValidationFailed` (code 4) for two different flags in the prompt, or a flag that
    contradicts the path prefix.
    """
    flags = list(dict.fromkeys(modes_in_prompt(prompt)))
    if len(flags) > 1:
        raise ValidationFailed(
            "the prompt asks for more than one speed mode ("
            + ", ".join(f"--{m.value.lower()}" for m in flags)
            + "); keep one"
        )
    if flags and prefix is not None and flags[0] != prefix:
        raise ValidationFailed(
            f"the prompt asks for --{flags[0].value.lower()} but the path asks for "
            f"{prefix.value} (/mj-{prefix.value.lower()}); remove the flag or use another path"
        )
    if flags:
        return flags
    if prefix is not None:
        return [prefix]
    return list(dict.fromkeys(filter_modes or []))


def default_mode_of(account: Account, *, relax_only: bool = False) -> SpeedMode:
    """The mode a task that asked for none runs in on `account`."""
    if relax_only:
        return SpeedMode.RELAX
    if account.default_mode in account.modes or not account.modes:
        return account.default_mode
    return account.modes[0]


def account_modes(account: Account, *, relax_only: bool = False) -> tuple[SpeedMode, ...]:
    """The modes `account` can run now: RELAX alone once its fast hours are gone."""
    if relax_only:
        return (SpeedMode.RELAX,) if SpeedMode.RELAX in account.modes else ()
    return account.modes


def mode_for(account: Account, wanted: Sequence[SpeedMode], *, relax_only: bool = False) -> SpeedMode | None:
    """The mode `account` runs a task wanting `wanted` in, or None when it offers none of them."""
    if not wanted:
        mode = default_mode_of(account, relax_only=relax_only)
        return mode if mode in account_modes(account, relax_only=relax_only) else None
    offered = account_modes(account, relax_only=relax_only)
    return next((m for m in wanted if m in offered), None)


def with_mode_flag(prompt: str, mode: SpeedMode | None) -> str:
    """`prompt` with ``--<mode>`` appended, unless it already carries a mode flag (or no mode)."""
    if mode is None or modes_in_prompt(prompt):
        return prompt
    return f"{prompt.rstrip()} --{mode.value.lower()}".strip()


def without_mode_flags(prompt: str) -> str:
    """`prompt` with its ``--fast``/``--relax``/``--turbo`` flags taken out."""
    if not modes_in_prompt(prompt):
        return prompt
    return " ".join(_MODE_FLAG.sub(" ", prompt).split())
