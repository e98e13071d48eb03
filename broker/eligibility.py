"""Which accounts may take a task, and in what order by load: the request's `accountFilter`, the bot
and the speed modes asked for. Pure functions, no I/O (`broker.admission` reads the live state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from broker.config import Account
from broker.models import BotType, SpeedMode
from broker.modes import requested_modes

__all__ = ["AccountFilter", "candidates", "order_by_load", "wanted_modes"]


class AccountFilter(msgspec.Struct, kw_only=True, rename="camel"):
    """midjourney-proxy's `accountFilter`: which accounts may take the task."""

    #: pin to one account (its config id or its channel id)
    instance_id: str | None = None
    #: speed modes in priority order
    modes: list[SpeedMode] | None = None
    remix: bool | None = None
    niji_remix: bool | None = None
    #: trueai's filter on `remix_auto_submit` (accounts that answer the remix dialog themselves)
    remix_auto_considered: bool | None = None
    remark: str | None = None


def wanted_modes(prefix: SpeedMode | None, flt: AccountFilter | None, prompt: str | None) -> list[SpeedMode]:
    """Requested speed modes, first = preferred (`broker.modes.requested_modes`: the prompt's flag,
    the URL prefix, then accountFilter.modes); empty = each account's default. Code 4 on conflicts."""
    return requested_modes(prefix, flt.modes if flt else None, prompt)


def candidates(
    accounts: Sequence[Account],
    *,
    bot_type: BotType,
    account_filter: AccountFilter | None,
    modes: Sequence[SpeedMode],
) -> list[Account]:
    """Enabled accounts that have the bot and match the filter and at least one wanted mode."""
    flt = account_filter or AccountFilter()
    out = []
    for account in accounts:
        if not account.enabled or bot_type not in account.bots:
            continue
        if flt.instance_id and flt.instance_id not in (account.id, account.channel_id):
            continue
        if flt.remark and flt.remark != account.remark:
            continue
        if flt.remix is not None and flt.remix != account.remix:
            continue
        if flt.niji_remix is not None and flt.niji_remix != account.niji_remix:
            continue
        if flt.remix_auto_considered is not None and flt.remix_auto_considered != account.remix_auto_submit:
            continue
        if modes and not any(m in account.modes for m in modes):
            continue
        out.append(account)
    return out


def order_by_load(
    accounts: Sequence[Account], loads: Mapping[str, int], modes: Sequence[SpeedMode] = ()
) -> list[Account]:
    """Accounts with the preferred mode first, then least loaded (running + waiting); stable on ties."""

    def rank(account: Account) -> tuple[int, int]:
        mode_rank = next((i for i, m in enumerate(modes) if m in account.modes), len(modes))
        return mode_rank, loads.get(account.id, 0)

    return sorted(accounts, key=rank)
