"""The settings in force in a running process, re-read when the config file changes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from broker.config import ConfigError, Settings, load_settings

__all__ = ["ConfigWatcher"]

log = logging.getLogger(__name__)


class ConfigWatcher:
    """The settings in force, re-read when the config file changes (looked at every `every` s).

    A file that no longer loads is logged and ignored: the previous settings stay in force. What a
    process built once at start (its Redis connection, hook client options) still needs a restart;
    accounts, api keys, banned words and timeouts follow the file.
    """

    def __init__(self, path: str | Path, settings: Settings, *, every: float = 2.0) -> None:
        self.path = Path(path)
        self.every = every
        self._settings = settings
        self._mtime = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        # A rename (the admin API's writes) gives a new inode even within one mtime tick.
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def current(self) -> Settings:
        now = time.monotonic()
        if now - self._checked < self.every:
            return self._settings
        self._checked = now
        mtime = self._stat()
        if mtime == self._mtime:
            return self._settings
        self._mtime = mtime
        self._load()
        return self._settings

    def reload(self) -> Settings:
        """Read the file now, whatever the time since the last look (after this process wrote it)."""
        self._checked = time.monotonic()
        self._mtime = self._stat()
        self._load()
        return self._settings

    def _load(self) -> None:
        try:
            self._settings = load_settings(self.path)
        except ConfigError as exc:
            log.error("config reload ignored: %s", exc)
        else:
            log.info("config reloaded from %s: %d accounts", self.path, len(self._settings.accounts))
