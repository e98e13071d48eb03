"""discord.py-self's log lines, made fit for an operator: no traceback for a routine reconnect, no
warning about voice support the bridge never uses.

- ``discord.client`` logs every gateway reconnect with ``_log.exception("Attempting a reconnect in
  %.2fs")``: an ERROR with the whole traceback of a dropped connection, which happens in normal
  life (Discord restarts gateways; a stack that stops drops them). `ReconnectLine` turns it into one
  WARNING line that names the error; reconnects are counted in ``mjbroker_gateway_reconnects_total``.
- ``discord.client`` warns once that PyNaCl is not installed (voice): the bridge has no voice, so
  the warning is switched off with the library's own class attribute ``VoiceClient.warn_nacl``.

Both through the library's public surface: a `logging.Filter` on its logger and a class attribute.
"""

from __future__ import annotations

import logging

import discord

__all__ = ["ReconnectLine", "quiet_library_logs"]

_RECONNECT = "Attempting a reconnect"


class ReconnectLine(logging.Filter):
    """A reconnect record of ``discord.client`` becomes one WARNING line without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_RECONNECT) and record.exc_info:
            exc = record.exc_info[1]
            reason = f"{type(exc).__name__}: {exc}" if exc is not None else "connection lost"
            record.msg = f"{record.getMessage()} ({reason[:300]})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_library_logs() -> None:
    """Install `ReconnectLine` and switch the voice warning off (once per process; idempotent)."""
    logger = logging.getLogger("discord.client")
    if not any(isinstance(f, ReconnectLine) for f in logger.filters):
        logger.addFilter(ReconnectLine())
    discord.VoiceClient.warn_nacl = False
