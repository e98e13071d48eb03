"""The embedded Valkey's password: generated once per data directory, read by every process.

The file ``<data_dir>/password`` (mode 0600) is created by whichever process of the checkout needs it
first, server or client, so the start order does not matter. Two processes creating it at once
agree: the file appears complete in one step (written aside, then hard-linked into place, which
fails when it already exists) and the loser reads the winner's. A process of another checkout has
another data directory and so another password: the server refuses it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["PASSWORD_FILE", "embedded_password", "existing_password"]

PASSWORD_FILE = "password"


def embedded_password(data_dir: str | Path) -> str:
    """The password of the embedded server whose data lives in `data_dir`; created when missing."""
    directory = Path(data_dir)
    path = directory / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    directory.mkdir(parents=True, exist_ok=True)
    aside = directory / f".{PASSWORD_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    password = path.read_text(encoding="ascii").strip()
    if not password:
        raise RuntimeError(f"{path} is empty: delete it to have a new password generated")
    return password


def existing_password(data_dir: str | Path) -> str | None:
    """The password if its file exists (nothing is created), for redacting it from logs."""
    try:
        return _read(Path(data_dir) / PASSWORD_FILE)
    except (OSError, RuntimeError):
        return None
