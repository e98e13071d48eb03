"""Edits of config.yaml that keep its comments and order, checked before they replace the file.

The admin API changes the operator's file rather than a copy of its own: config.yaml stays the one
source of truth and every process follows it through its `ConfigWatcher`. One edit is:

1. take an exclusive `fcntl` lock on `<config>.lock` beside the file, so writers of every process
   of this host (two admins, two web processes) take turns, and re-read the file under the lock:
   an edit always applies to the latest version, never to a copy read before another write;
2. load it with ruamel.yaml's round-trip loader (comments, key order, quotes and the list
   indentation the file uses survive) and apply the edit function to that document;
3. check the new text as every process will read it: PyYAML's `safe_load` and `parse_settings`
   with the real environment (`${ENV}` references must resolve). A `ConfigError` leaves the file
   untouched and is raised to the caller (code 4 with its key path);
4. write a temp file in the same directory (the file's mode; owner-only when it holds a secret
   written in clear), fsync it, rename it over config.yaml and fsync the directory. A reader sees
   the old file or the new one, never half of one, and a crash at any point leaves one of them.

Several hosts sharing one config.yaml need it on one shared file system where `flock` works, or
edits sent to one host only: the lock serializes the writers of one host.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import secrets as _secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelError

from broker.config import ConfigError, Settings, parse_settings

__all__ = ["ConfigEdit", "edit_config"]

T = TypeVar("T")

#: an edit: changes the round-trip document in place and returns what the caller wants back
ConfigEdit = Callable[[Any], T]

_ENV_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_DASH = re.compile(r"^( *)- ")
_KEY_OPEN = re.compile(r"^( *)[^#\s][^:]*:\s*(#.*)?$")


def _sequence_offset(text: str) -> int:
    """How far the file indents a block list's dashes under its key (0 or 2, usually)."""
    previous: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        dash = _DASH.match(line)
        if dash and previous is not None:
            key = _KEY_OPEN.match(previous)
            if key:
                return max(0, len(dash.group(1)) - len(key.group(1)))
        previous = line
    return 2


def _yaml(text: str) -> YAML:
    rt = YAML()  # round trip
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a long line
    offset = _sequence_offset(text)
    rt.indent(mapping=2, sequence=offset + 2, offset=offset)
    return rt


def _holds_clear_secret(document: Any) -> bool:
    """Whether an account token, api key secret or the hook secret is written in clear."""
    values: list[Any] = []
    if not isinstance(document, Mapping):
        return False
    accounts = document.get("accounts")
    if isinstance(accounts, Mapping):
        accounts = accounts.get("list")
    for entry in accounts if isinstance(accounts, list) else []:
        if isinstance(entry, Mapping):
            values.append(entry.get("token"))
    keys = document.get("api_keys")
    for entry in keys if isinstance(keys, list) else []:
        if isinstance(entry, Mapping):
            values.append(entry.get("secret"))
    hooks = document.get("hooks")
    if isinstance(hooks, Mapping):
        values.append(hooks.get("secret"))
    return any(isinstance(v, str) and v and not _ENV_ONLY.fullmatch(v.strip()) for v in values)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def edit_config(
    path: str | Path, edit: ConfigEdit[T], *, environ: Mapping[str, str] | None = None
) -> tuple[Settings, T]:
    """Apply `edit` to config.yaml under the lock; returns the new settings and what `edit` returned.

    Blocking (file lock, fsync): async callers run it in a thread. Raises `ConfigError` when the
    file cannot be read or the edited file would not load (the file is then unchanged); whatever
    `edit` raises passes through, with the file unchanged too.
    """
    file = Path(path)
    env = os.environ if environ is None else environ
    lock_path = file.with_name(file.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            try:
                text = file.read_text(encoding="utf-8")
                mode = stat.S_IMODE(file.stat().st_mode)
            except OSError as exc:
                raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
            rt = _yaml(text)
            try:
                document = rt.load(text)
            except RuamelError:
                raise ConfigError(f"{file}: invalid YAML") from None
            if document is None:
                document = rt.load("{}\n")
            result = edit(document)
            out = io.StringIO()
            rt.dump(document, out)
            new_text = out.getvalue()
            try:
                plain = yaml.safe_load(new_text)
            except yaml.YAMLError:
                raise ConfigError("the edited file is not valid YAML") from None
            settings = parse_settings(plain, env)
            if _holds_clear_secret(plain):
                mode &= 0o700
            if new_text != text:
                _write_atomically(file, new_text, mode)
            return settings, result
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
