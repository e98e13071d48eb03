"""`/mj/admin/api-keys`: list, add, revoke and rotate api keys, written into config.yaml.

The door reads the keys in force on every request, so a change applies within the config look of
each web process (at once in the one that wrote it). Secrets are accepted on write and never sent
back; a secret written in clear must be at least `MIN_SECRET_CHARS` long, or be a `${ENV_VAR}`
reference. No change may leave keys without an admin key, nor remove the last key (which would
open the API to anyone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from litestar import Request, get, post

from broker.api.admin_write import done, is_env_ref, write
from broker.api.context import context_of
from broker.config_doc import append_entry, find_entry, list_at, new_mapping, remove
from broker.errors import NotFound, ValidationFailed, echo
from broker.models import SubmitResult

__all__ = ["ADMIN_KEY_HANDLERS", "MIN_SECRET_CHARS"]

AnyRequest = Request[Any, Any, Any]

MIN_SECRET_CHARS = 16


class KeyView(msgspec.Struct, kw_only=True):
    name: str
    role: str


class NewKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    secret: str
    role: Literal["client", "admin"] = "client"


class NewSecret(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    secret: str


def _check_secret(secret: str) -> None:
    if is_env_ref(secret):
        return
    if len(secret) < MIN_SECRET_CHARS or secret != secret.strip():
        raise ValidationFailed(
            f"secret: at least {MIN_SECRET_CHARS} characters without surrounding spaces, "
            "or a ${ENV_VAR} reference"
        )


def _check_admins_left(entries: Any) -> None:
    if len(entries) == 0:
        raise ValidationFailed("the last api key cannot be revoked: with no key the API is open to anyone")
    if not any(isinstance(e, Mapping) and e.get("role") == "admin" for e in entries):
        raise ValidationFailed("this would leave no key with role admin: add another admin key first")


@get("/mj/admin/api-keys", include_in_schema=False)
async def list_keys(request: AnyRequest) -> list[KeyView]:
    return [KeyView(name=k.name, role=k.role) for k in context_of(request).settings.api_keys]


@post("/mj/admin/api-keys", status_code=200, include_in_schema=False)
async def add_key(request: AnyRequest, data: NewKey) -> SubmitResult:
    if not data.name.strip():
        raise ValidationFailed("name: must not be empty")
    _check_secret(data.secret)

    def add(document: Any) -> None:
        entries = list_at(document, "api_keys")
        if find_entry(entries, "name", data.name) is not None:
            raise ValidationFailed(f"api key {echo(data.name)} already exists")
        entry = {"name": data.name, "secret": data.secret}
        if data.role != "client":
            entry["role"] = data.role
        append_entry(entries, new_mapping(entry))
        _check_admins_left(entries)

    await write(context_of(request), add)
    return done("api key added", data.name, role=data.role)


def _named(document: Any, name: str) -> tuple[Any, int]:
    entries = list_at(document, "api_keys")
    index = find_entry(entries, "name", name)
    if index is None:
        raise NotFound(f"api key {echo(name)} not found")
    return entries, index


@post("/mj/admin/api-keys/{name:str}/revoke", status_code=200, include_in_schema=False)
async def revoke_key(request: AnyRequest, name: str) -> SubmitResult:
    def revoke(document: Any) -> None:
        entries, index = _named(document, name)
        remove(entries, index)
        _check_admins_left(entries)

    await write(context_of(request), revoke)
    return done("api key revoked", name)


@post("/mj/admin/api-keys/{name:str}/rotate", status_code=200, include_in_schema=False)
async def rotate_key(request: AnyRequest, name: str, data: NewSecret) -> SubmitResult:
    """Replace the key's secret; the old one stops working as the new one starts."""
    _check_secret(data.secret)

    def rotate(document: Any) -> None:
        entries, index = _named(document, name)
        entries[index]["secret"] = data.secret

    await write(context_of(request), rotate)
    return done("api key rotated", name)


ADMIN_KEY_HANDLERS = [list_keys, add_key, revoke_key, rotate_key]
