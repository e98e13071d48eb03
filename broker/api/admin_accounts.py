"""`/mj/admin/accounts`: list, fetch, create, update, delete, enable, disable and reconnect accounts.

An account's body is its config.yaml entry (the same keys: `id`, `guild_id`, `channel_id`,
`token`, `core_size`, `daily_limit`, `work_hours`...); every change is written back into config.yaml
(`broker.api.admin_write`). A token is accepted on write and never sent back: every reply shows
`"token": "***"` (or `""` when the account has none). Reconnect is not a change of the file: the
bridge holding the account is asked through Redis (`keys.account_reconnect`) to drop its gateway
session and open a new one.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post

from broker import keys
from broker.api.admin_write import check_keys, done, write
from broker.api.context import ApiContext, context_of
from broker.clock import now_ms
from broker.config import Account
from broker.config_doc import (
    account_entries,
    append_entry,
    find_entry,
    new_mapping,
    put,
    remove,
    set_choice,
)
from broker.errors import AccountNotFound, BridgeUnavailable, ValidationFailed, echo
from broker.models import SubmitResult

__all__ = ["ADMIN_ACCOUNT_HANDLERS", "RECONNECT_TTL_SECONDS"]

AnyRequest = Request[Any, Any, Any]

_FIELDS = frozenset(Account.__struct_fields__)
#: a reconnect asked while its bridge is busy restarting waits this long for it, then lapses
RECONNECT_TTL_SECONDS = 30


def _config_json(account: Account) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(account)
    data["token"] = "***" if account.token else ""
    return data


async def _with_live(ctx: ApiContext, accounts: list[Account]) -> list[dict[str, Any]]:
    if not accounts:
        return []
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for account in accounts:
            pipe.hmget(keys.account_status(account.id), ["state", "reason"])
            pipe.zcard(keys.account_running(account.id))
            pipe.zcard(keys.account_waiting(account.id))
            pipe.get(keys.account_lease(account.id))
        rows: list[Any] = await pipe.execute()
    out = []
    for i, account in enumerate(accounts):
        (state, reason), running, waiting, holder = rows[4 * i : 4 * i + 4]
        entry = _config_json(account)
        entry["live"] = {
            "status": state.decode() if state else None,
            "statusReason": reason.decode() if reason else None,
            "running": int(running),
            "waiting": int(waiting),
            "bridge": holder.decode() if holder else None,
        }
        out.append(entry)
    return out


def _find(ctx: ApiContext, account_id: str) -> Account:
    account = ctx.settings.account(account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account


@get("/mj/admin/accounts", include_in_schema=False)
async def list_accounts(request: AnyRequest) -> list[dict[str, Any]]:
    ctx = context_of(request)
    return await _with_live(ctx, list(ctx.settings.accounts))


@get("/mj/admin/accounts/{account_id:str}", include_in_schema=False)
async def fetch_account(request: AnyRequest, account_id: str) -> dict[str, Any]:
    ctx = context_of(request)
    return (await _with_live(ctx, [_find(ctx, account_id)]))[0]


@post("/mj/admin/accounts", status_code=200, include_in_schema=False)
async def create_account(request: AnyRequest, data: dict[str, Any]) -> SubmitResult:
    ctx = context_of(request)
    check_keys(data, _FIELDS, "account")
    account_id = data.get("id")
    if not isinstance(account_id, str) or not account_id:
        raise ValidationFailed("account: id is required (a string)")

    def add(document: Any) -> None:
        entries = account_entries(document)
        if find_entry(entries, "id", account_id) is not None:
            raise ValidationFailed(f"account {echo(account_id)} already exists")
        append_entry(entries, new_mapping(data))

    await write(ctx, add)
    return done("account created", account_id, account=(await _with_live(ctx, [_find(ctx, account_id)]))[0])


def _edit_entry(account_id: str, change: dict[str, Any]) -> Any:
    def edit(document: Any) -> None:
        entries = account_entries(document)
        index = find_entry(entries, "id", account_id)
        if index is None:
            raise AccountNotFound(account_id)
        entry = entries[index]
        for key, value in change.items():
            if value is None:
                if key in entry:
                    remove(entry, key)  # back to the default
            else:
                put(entry, key, value)

    return edit


@post("/mj/admin/accounts/{account_id:str}/update", status_code=200, include_in_schema=False)
async def update_account(request: AnyRequest, account_id: str, data: dict[str, Any]) -> SubmitResult:
    """Set the keys the body gives (null = back to the default); the others stay as written."""
    ctx = context_of(request)
    check_keys(data, _FIELDS, "account")
    if "id" in data and data["id"] != account_id:
        raise ValidationFailed("an account's id cannot change: delete it and create it again")
    change = {k: v for k, v in data.items() if k != "id"}
    await write(ctx, _edit_entry(account_id, change))
    return done("account updated", account_id, account=(await _with_live(ctx, [_find(ctx, account_id)]))[0])


async def _set_enabled(request: AnyRequest, account_id: str, enabled: bool) -> SubmitResult:
    ctx = context_of(request)
    await write(ctx, _edit_entry(account_id, {"enabled": enabled}))
    word = "enabled" if enabled else "disabled"
    return done(f"account {word}", account_id)


@post("/mj/admin/accounts/{account_id:str}/enable", status_code=200, include_in_schema=False)
async def enable_account(request: AnyRequest, account_id: str) -> SubmitResult:
    return await _set_enabled(request, account_id, True)


@post("/mj/admin/accounts/{account_id:str}/disable", status_code=200, include_in_schema=False)
async def disable_account(request: AnyRequest, account_id: str) -> SubmitResult:
    """The bridge stops its session; its queued tasks stay and time out as the queue timeout says."""
    return await _set_enabled(request, account_id, False)


@post("/mj/admin/accounts/{account_id:str}/delete", status_code=200, include_in_schema=False)
async def delete_account(request: AnyRequest, account_id: str) -> SubmitResult:
    ctx = context_of(request)

    def drop(document: Any) -> None:
        entries = account_entries(document)
        index = find_entry(entries, "id", account_id)
        if index is None:
            raise AccountNotFound(account_id)
        remove(entries, index)

    await write(ctx, drop)
    return done("account deleted", account_id)


@post("/mj/admin/accounts/{account_id:str}/reconnect", status_code=200, include_in_schema=False)
async def reconnect_account(request: AnyRequest, account_id: str) -> SubmitResult:
    """Ask the bridge that holds the account to open a new gateway session (within its tick)."""
    ctx = context_of(request)
    account = _find(ctx, account_id)
    if not account.enabled:
        raise ValidationFailed(f"account {echo(account_id)} is disabled: enable it instead")
    holder = await ctx.redis.get(keys.account_lease(account.id))
    if holder is None:
        raise BridgeUnavailable(f"no bridge holds account {account.id}: is a bridge process running?")
    await ctx.redis.set(keys.account_reconnect(account.id), now_ms(), ex=RECONNECT_TTL_SECONDS)
    return done("reconnect requested", account.id, bridge=holder.decode())


class Choice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    choice: str


@get("/mj/admin/account-choice", include_in_schema=False)
async def account_choice(request: AnyRequest) -> Choice:
    return Choice(choice=context_of(request).settings.account_choice)


@post("/mj/admin/account-choice", status_code=200, include_in_schema=False)
async def set_account_choice(request: AnyRequest, data: Choice) -> SubmitResult:
    """How a new task's account is chosen (`accounts.choice`); an unknown rule is code 4."""

    def edit(document: Any) -> None:
        set_choice(document, data.choice)

    await write(context_of(request), edit)
    return done("account choice changed", data.choice)


ADMIN_ACCOUNT_HANDLERS = [
    account_choice,
    set_account_choice,
    list_accounts,
    fetch_account,
    create_account,
    update_account,
    enable_account,
    disable_account,
    delete_account,
    reconnect_account,
]
