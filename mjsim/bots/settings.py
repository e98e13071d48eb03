"""An account's Midjourney settings: /settings and its buttons, /fast /relax /turbo, /prefer remix, /info."""

from __future__ import annotations

import logging
from typing import Any

from mjsim.bots.base import BotRuntime, InteractionCtx
from mjsim.formats import button, edited, row
from mjsim.state import Account, Mode

__all__ = ["AccountSettings"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

_MODE_SWITCHED = {
    Mode.FAST: "Done! Your jobs will now consume fast-hours. You can use `/relax` to switch back.",
    Mode.RELAX: "Done! Your jobs now do not consume fast-hours, but might take a little longer. "
    "You can always switch back with `/fast`",
    Mode.TURBO: "Done! Your jobs will now run in turbo mode, using twice the fast-hours.",
}


class AccountSettings:
    """Reads and switches the account flags jobs depend on (mode, remix, variation strength, stealth).

    Every reply is ephemeral: only the invoking session sees it.
    """

    def __init__(self, rt: BotRuntime) -> None:
        self.rt = rt

    async def set_mode(self, ctx: InteractionCtx, mode: Mode) -> None:
        await self.rt.ack(ctx)
        ctx.account.mode = mode
        self._say(ctx, _MODE_SWITCHED[mode])

    async def toggle_remix(self, ctx: InteractionCtx) -> None:
        """/prefer remix."""
        await self.rt.ack(ctx)
        ctx.account.remix = not ctx.account.remix
        text = (
            "Remix mode turned on! You can disable it by running `/prefer remix` again."
            if ctx.account.remix
            else "Remix mode turned off! You can enable it by running `/prefer remix` again."
        )
        ctx.name = "prefer remix"
        self._say(ctx, text)

    async def info(self, ctx: InteractionCtx) -> None:
        await self.rt.ack(ctx)
        a = ctx.account
        lines = [
            "**Subscription**: Pro (Active monthly, renews next on <t:1767225600>)"
            if a.subscription == "active"
            else "**Subscription**: None",
            f"**Job Mode**: {a.mode.value.capitalize()}",
            f"**Visibility Mode**: {'Stealth' if a.stealth else 'Public'}",
            "**Fast Time Remaining**: 29.52/30.0 hours (98.40%)",
            "**Lifetime Usage**: 1234 images (56.78 hours)",
            "**Relaxed Usage**: 120 images (3.21 hours)",
            "**Turbo Usage**: 0 images (0.00 hours)",
            f"**Queued Jobs (fast)**: {len(a.waiters)}",
            "**Queued Jobs (relax)**: 0",
            f"**Running Jobs**: {a.running or 'None'}",
        ]
        embed = {
            "type": "rich",
            "title": f"Your info - {a.username}",
            "description": "\n".join(lines),
            "color": 0,
        }
        msg = self.rt.new_message(ctx, type_=20, nonce=ctx.nonce, embeds=[embed], extra=ctx.refs())
        self.rt.ephemeral(ctx, msg)
        self.rt.ephemeral_update(ctx, {**msg, "edited_timestamp": msg["timestamp"]})

    async def show(self, ctx: InteractionCtx) -> None:
        """/settings: the current settings as buttons (green = on)."""
        await self.rt.ack(ctx)
        msg = self.rt.new_message(
            ctx,
            type_=20,
            nonce=ctx.nonce,
            content="Adjust your settings here. Current suffix: ```  --v 6.1```",
            components=_components(ctx.account),
            extra=ctx.refs(),
        )
        self.rt.ephemeral(ctx, msg)

    async def click(self, ctx: InteractionCtx, source: Payload, custom_id: str) -> None:
        """A ``MJ::Settings::*`` button: switch the flag, then edit the /settings message in place."""
        a = ctx.account
        key = custom_id.split("::")[2]
        if key == "RemixMode":
            a.remix = not a.remix
        elif key == "HighVariabilityMode":
            a.high_variation = True
        elif key == "LowVariabilityMode":
            a.high_variation = False
        elif key in ("TurboMode", "FastMode", "RelaxMode"):
            a.mode = Mode(key.removesuffix("Mode").lower())
        elif key == "PublicMode":
            a.stealth = False
        elif key == "StealthMode":
            a.stealth = True
        await self.rt.ack(ctx)
        self.rt.ephemeral_update(ctx, edited(source, components=_components(a)))

    def _say(self, ctx: InteractionCtx, text: str) -> None:
        self.rt.ephemeral(
            ctx, self.rt.new_message(ctx, type_=20, nonce=ctx.nonce, content=text, extra=ctx.refs())
        )


def _components(a: Account) -> list[Payload]:
    """The /settings message's rows: version selector, remix and variation, then speed and visibility."""

    def style(on: bool) -> int:
        return 3 if on else 2

    return [
        row(
            {
                "type": 3,
                "custom_id": "MJ::Settings::VersionSelector",
                "options": [
                    {"label": "Midjourney Model V6.1", "value": "6.1", "default": True},
                    {"label": "Midjourney Model V7", "value": "7", "default": False},
                ],
                "placeholder": "Select a version",
                "min_values": 1,
                "max_values": 1,
            }
        ),
        row(
            button("MJ::Settings::RemixMode", label="Remix mode", style=style(a.remix)),
            button(
                "MJ::Settings::HighVariabilityMode::1",
                label="High Variation Mode",
                style=style(a.high_variation),
            ),
            button(
                "MJ::Settings::LowVariabilityMode::1",
                label="Low Variation Mode",
                style=style(not a.high_variation),
            ),
        ),
        row(
            button("MJ::Settings::TurboMode", label="Turbo mode", style=style(a.mode is Mode.TURBO)),
            button("MJ::Settings::FastMode", label="Fast mode", style=style(a.mode is Mode.FAST)),
            button("MJ::Settings::RelaxMode", label="Relax mode", style=style(a.mode is Mode.RELAX)),
            button("MJ::Settings::PublicMode", label="Public mode", style=style(not a.stealth)),
            button("MJ::Settings::StealthMode", label="Stealth mode", style=style(a.stealth)),
        ),
    ]
