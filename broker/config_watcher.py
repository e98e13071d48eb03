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

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def current(self) -> Settings:
        now = time.monotonic()
        if now - self._checked < self.every:
            return self._settings
        self._checked = now
        mtime = self._stat()
        if mtime == self._mtime:
            return self._settings
        self._mtime = mtime
        try:
            self._settings = load_settings(self.path)
        except ConfigError as exc:
            log.error("config reload ignored: %s", exc)
        else:
            log.info("config reloaded from %s: %d accounts", self.path, len(self._settings.accounts))
        return self._settings
