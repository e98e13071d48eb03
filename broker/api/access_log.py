"""The web's access log: one line per request, written in batches.

A line per request through the standard `logging` machinery (a LogRecord, a formatter, filters, a
locked write and flush) costs about as much as a tenth of a `/fetch`: more than the whole budget of
what observing the web may cost its hot paths. So `AccessLog` builds each line itself, in the very
format of `broker.logs` (text or ``LOG_FORMAT=json``, the same time stamps, logger name
``broker.access``, secrets redacted as `broker.logs.RedactSecrets` does) and writes the lines of
the last `every` seconds to stderr, the stream of `broker.logs`'s handler, with one write. A line
is thus at most `every` seconds late; the app flushes what is left when it stops.

It is on unless ``server.access_log: false``, or the logger ``broker.access`` is set above INFO
(``MJBROKER_LOG_LEVEL=WARNING``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import msgspec

from broker.logs import Stamps

__all__ = ["LOGGER", "AccessLog"]

LOGGER = "broker.access"


class AccessLog:
    """Buffers access lines and writes them to stderr every `every` seconds.

    :param secrets: values replaced by ``***`` (`broker.config.Settings.secrets`).
    :param json: one JSON object per line (``LOG_FORMAT=json``) instead of text.
    :param every: seconds a line may wait to be written with the next ones.
    """

    def __init__(self, *, secrets: Sequence[str], json: bool, every: float = 0.1) -> None:
        self.secrets = [s for s in secrets if len(s) >= 4]
        self.json = json
        self.every = every
        self._stamps = Stamps()
        self._lines: list[str] = []
        self._flush: asyncio.TimerHandle | None = None

    def add(self, message: str) -> None:
        """Log `message` (e.g. ``GET /health 200 0.4ms``) at INFO under ``broker.access``."""
        for secret in self.secrets:
            if secret in message:
                message = message.replace(secret, "***")
        created = time.time()
        if self.json:
            line = msgspec.json.encode(
                {"time": self._stamps.iso(created), "level": "INFO", "logger": LOGGER, "message": message}
            ).decode()
        else:
            line = f"{self._stamps.text(created)} INFO {LOGGER}: {message}"
        self._lines.append(line)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.every, self.flush)

    def flush(self) -> None:
        """Write the buffered lines now."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines = []
            sys.stderr.write(text)
            sys.stderr.flush()
