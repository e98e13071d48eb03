"""Logging of every process (web, worker, bridge, redis): one format, secrets redacted, JSON on demand.

`setup_logging` is called once at the start of each process. It gives the root logger one handler on
stderr whose format is

- text (the default): ``2026-12-01 23:10:00,123 INFO broker.store: task 17... IMAGINE ...``;
- JSON with ``LOG_FORMAT=json``: one object per line, ``{"time", "level", "logger", "message"}`` plus
  ``"exc"`` (the traceback as one string) when there is one, for log shippers.

Either way the handler carries `RedactSecrets`, which replaces every configured secret (account
tokens, api keys, the hook secret, the Redis password) by ``***`` in the message and the traceback.
Nothing should ever log a secret; the filter is the defence in depth that makes sure.

Libraries that log a line per routine event are kept at WARNING (discord.py-self's gateway
chatter); ``MJBROKER_LOG_LEVEL`` (or a process's ``--log-level``) sets ours.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = ["TEXT_FORMAT", "JsonFormatter", "RedactSecrets", "granian_log_config", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: libraries whose INFO lines say nothing an operator acts on
_QUIET_LIBRARIES = ("discord",)


class RedactSecrets(logging.Filter):
    """Replaces any configured secret in a log record by `***` (defence in depth: none should be there)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        if any(s in text or s in exc_text for s in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "***")
                exc_text = exc_text.replace(secret, "***")
            record.msg, record.args, record.exc_text = text, None, exc_text or None
        return True


class Stamps:
    """The time of a record as text, the date and seconds part made once per second (strftime was
    half the cost of a line, and the access log writes one per request)."""

    def __init__(self) -> None:
        self._local = (-1, "")
        self._utc = (-1, "")

    def text(self, created: float) -> str:
        """Local time as logging's default `asctime`: ``2026-12-01 23:03:17,741``."""
        second = int(created)
        if second != self._local[0]:
            self._local = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        return f"{self._local[1]},{int((created - second) * 1000):03d}"

    def iso(self, created: float) -> str:
        """UTC, ISO 8601: ``2026-12-01T23:03:17.741Z``."""
        second = int(created)
        if second != self._utc[0]:
            self._utc = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._utc[1]}.{int((created - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT`, with `Stamps` for the time."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._stamps = Stamps()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._stamps.text(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per record and line: time (ISO 8601, UTC), level, logger, message, exc."""

    def __init__(self) -> None:
        super().__init__()
        self._stamps = Stamps()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._stamps.iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return msgspec.json.encode(out).decode()


def wants_json(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``LOG_FORMAT=json`` asks for JSON lines."""
    return environ.get("LOG_FORMAT", "text").strip().lower() == "json"


def _formatter(environ: Mapping[str, str]) -> logging.Formatter:
    return JsonFormatter() if wants_json(environ) else TextFormatter()


def setup_logging(
    secrets: Sequence[str] = (),
    *,
    level: str | int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Configure the root logger of this process: format from ``LOG_FORMAT``, secrets redacted.

    Safe to call again (a web process builds its app after granian's start): it replaces the
    formatter and the redaction of the handler it installed, and adds none twice. When someone else
    configured the root (pytest's capture), its handlers only get the redaction.

    :param secrets: values to redact (`broker.config.Settings.secrets`).
    :param level: the level of our loggers (default ``MJBROKER_LOG_LEVEL`` or INFO).
    """
    root = logging.getLogger()
    ours: list[logging.Handler] = [h for h in root.handlers if getattr(h, "mjbroker", False)]
    if not ours and not root.handlers:
        stream = logging.StreamHandler()
        stream.mjbroker = True  # type: ignore[attr-defined]
        root.addHandler(stream)
        ours = [stream]
    redact = RedactSecrets(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(redact)
    if not ours:
        return  # someone else's logging (a test runner's): only the redaction is ours to add
    for handler in ours:
        handler.setFormatter(_formatter(environ))
    chosen = level if level is not None else environ.get("MJBROKER_LOG_LEVEL", "INFO")
    root.setLevel(chosen.upper() if isinstance(chosen, str) else chosen)
    if root.level >= logging.INFO:
        for name in _QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
    # warnings.warn(...) of libraries goes through the same handler (and its redaction)
    logging.captureWarnings(True)


def granian_log_config() -> dict[str, Any]:
    """granian's `log_dictconfig`: its own lines go through the root handler of `setup_logging`
    (our format, JSON included, and the redaction) instead of granian's own handlers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }
