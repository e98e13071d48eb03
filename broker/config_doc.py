"""Finding and changing the parts of a round-trip config.yaml document (see `broker.config_write`).

Pure functions over ruamel.yaml's `CommentedMap` / `CommentedSeq`: no file, no lock. They keep the
form the file uses (`accounts` as a list, or as a mapping of `choice` and `list`), and add what is
missing at the end of its mapping, so the operator's comments and order stay where they were.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from broker.config import ConfigError

__all__ = [
    "account_entries",
    "append_entry",
    "find_entry",
    "list_at",
    "mapping_at",
    "new_mapping",
    "put",
    "remove",
    "set_choice",
]


def new_mapping(values: Mapping[str, Any]) -> CommentedMap:
    """A block mapping of `values`, in their order."""
    out = CommentedMap()
    for key, value in values.items():
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _is_block(node: Any) -> bool:
    return isinstance(node, CommentedMap | CommentedSeq) and len(node) > 0 and not node.fa.flow_style()


def _last_key(node: Any) -> Any:
    return len(node) - 1 if isinstance(node, CommentedSeq) else next(reversed(node))


def _tail(node: Any) -> tuple[list[Any], int] | None:
    """Where ruamel keeps the comment after `node`'s last line: (its comment entry, the slot).

    The comment lines that follow a block (often the heading of the next section) belong to its
    last scalar, however deep: an entry added after it must take them over, or they would end up
    above the new entry instead of below it.
    """
    if not _is_block(node):
        return None
    key = _last_key(node)
    value = node[key]
    if _is_block(value):
        return _tail(value)
    entry = node.ca.items.get(key)
    slot = 0 if isinstance(node, CommentedSeq) else 2
    if entry is None or len(entry) <= slot or entry[slot] is None:
        return None
    return entry, slot


def _take_following_lines(tail: tuple[list[Any], int]) -> Any:
    """Cut the full-line comments off the end-of-line comment that carries them; None if none."""
    entry, slot = tail
    token = entry[slot]
    eol, _, rest = str(token.value).partition("\n")
    if not rest.strip():
        return None
    if not eol.strip():
        entry[slot] = None
        return token
    moved = copy.copy(token)
    token.value = eol + "\n"
    moved.value = "\n" + rest
    return moved


def _attach(container: Any, key: Any, token: Any) -> None:
    value = container[key]
    if _is_block(value):
        _attach(value, _last_key(value), token)
        return
    slot = 0 if isinstance(container, CommentedSeq) else 2
    entry = container.ca.items.get(key)
    if entry is None:
        container.ca.items[key] = [token, None] if slot == 0 else [None, None, token, None]
    elif entry[slot] is None:
        entry[slot] = token
    else:  # after the end-of-line comment already there
        entry[slot].value = str(entry[slot].value) + str(token.value)[1:]


def append_entry(seq: CommentedSeq, value: Any) -> None:
    """Append `value` below the last entry and above the comments that followed it."""
    tail = _tail(seq)
    seq.append(value)
    moved = _take_following_lines(tail) if tail is not None else None
    if moved is not None:
        _attach(seq, len(seq) - 1, moved)


def put(mapping: CommentedMap, key: str, value: Any) -> None:
    """Set `mapping[key]`: in place when it exists, else last, above the comments that followed."""
    if key in mapping:
        mapping[key] = value
        return
    tail = _tail(mapping)
    mapping[key] = value
    moved = _take_following_lines(tail) if tail is not None else None
    if moved is not None:
        _attach(mapping, key, moved)


def remove(container: CommentedMap | CommentedSeq, key: Any) -> None:
    """Delete `container[key]`; the comment lines that followed it stay, under the new last entry."""
    moved = None
    if len(container) > 1 and key == _last_key(container):
        tail = _tail(container)
        moved = _take_following_lines(tail) if tail is not None else None
    del container[key]
    if moved is not None:
        _attach(container, _last_key(container), moved)


def _block(seq: CommentedSeq) -> CommentedSeq:
    # `api_keys: []` is a flow list: entries added to it are written one per line instead
    if seq.fa.flow_style():
        seq.fa.set_block_style()
    return seq


def list_at(parent: Any, key: str) -> CommentedSeq:
    """The list under `parent[key]`, created (empty, at the end of `parent`) when absent or null."""
    value = parent.get(key)
    if value is None:
        value = CommentedSeq()
        parent[key] = value
    if not isinstance(value, CommentedSeq):
        raise ConfigError(f"{key}: expected a list in config.yaml")
    return _block(value)


def mapping_at(parent: Any, key: str) -> CommentedMap:
    """The mapping under `parent[key]`, created when absent or null."""
    value = parent.get(key)
    if value is None:
        value = CommentedMap()
        parent[key] = value
    if not isinstance(value, CommentedMap):
        raise ConfigError(f"{key}: expected a mapping in config.yaml")
    if value.fa.flow_style():
        value.fa.set_block_style()
    return value


def account_entries(document: Any) -> CommentedSeq:
    """The account list, in either form of `accounts` (a list, or `{choice, list}`)."""
    accounts = document.get("accounts")
    if isinstance(accounts, CommentedMap):
        return list_at(accounts, "list")
    return list_at(document, "accounts")


def find_entry(entries: CommentedSeq, field: str, value: str) -> int | None:
    """Index of the first mapping in `entries` whose `field` is `value` (ids compare as text)."""
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping) and str(entry.get(field)) == value:
            return i
    return None


def set_choice(document: Any, choice: str) -> None:
    """Write `accounts.choice`; a file whose `accounts` is a list gets the `{choice, list}` form."""
    accounts = document.get("accounts")
    if isinstance(accounts, CommentedMap):
        put(accounts, "choice", choice)
        return
    entries = accounts if isinstance(accounts, CommentedSeq) else CommentedSeq()
    # A comment above the first account belongs to the `accounts:` line (ruamel keeps it there
    # too): left on the list, it would be written between `list:` and its first dash.
    entries.ca.comment = None
    lifted = CommentedMap()
    lifted["choice"] = choice
    lifted["list"] = entries
    document["accounts"] = lifted
