"""``python -m workers.parse``: gateway events in, parser verdicts out, one JSON line each.

Reads ``{"t": <dispatch type>, "d": <payload>}`` lines on stdin and writes, for every input line and in
order, one line with exactly the keys of `CliLine`, flushed at once so it can sit in a pipe. Lines that
are blank, not JSON, or not an object with ``t``/``d`` give ``kind="ignore"``; nothing stops the loop.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import msgspec

from broker.discord import speed_word
from broker.models import TaskAction
from workers.parser import Change, ErrorInfo, Kind, parse_event

__all__ = ["CliLine", "main", "parse_line", "to_cli"]


class CliLine(msgspec.Struct, kw_only=True, rename="camel"):
    """The printed part of a `Change`; field order is the output key order.

    `mode` is the bot's own word (``fast``, ``relax``, ``turbo``), as the recorded fixtures expect.
    """

    kind: Kind
    action: TaskAction | None
    progress: int | None
    prompt: str | None
    mode: str | None
    index: int | None
    hash: str | None
    message_id: str | None
    nonce: str | None
    image_url: str | None
    custom_ids: list[str]
    prompts: list[str]
    error: ErrorInfo | None


class _Envelope(msgspec.Struct):
    # Decoding straight into this shape rejects non-objects and a non-string ``t`` in one step; ``d``
    # stays raw JSON for `parse_event` to decode into its typed shape.
    t: str | None = None
    d: msgspec.Raw = msgspec.Raw(b"null")


_DECODER = msgspec.json.Decoder(_Envelope)
_ENCODER = msgspec.json.Encoder()
_IGNORE_LINE = b'{"kind":"ignore","action":null,"progress":null,"prompt":null,"mode":null,"index":null,'
_IGNORE_LINE += b'"hash":null,"messageId":null,"nonce":null,"imageUrl":null,"customIds":[],"prompts":[],'
_IGNORE_LINE += b'"error":null}'


def to_cli(change: Change) -> CliLine:
    """The CLI view of a change: the workers' extra fields are left out on purpose."""
    return CliLine(
        kind=change.kind,
        action=change.action,
        progress=change.progress,
        prompt=change.prompt,
        mode=speed_word(change.mode) if change.mode is not None else None,
        index=change.index,
        hash=change.hash,
        message_id=change.message_id,
        nonce=change.nonce,
        image_url=change.image_url,
        custom_ids=change.custom_ids,
        prompts=change.prompts,
        error=change.error,
    )


def parse_line(line: bytes | str) -> bytes:
    """One input line to one output JSON document (no newline). Never raises."""
    try:
        envelope = _DECODER.decode(line)
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        return _IGNORE_LINE
    if envelope.t is None:
        return _IGNORE_LINE
    try:
        return _ENCODER.encode(to_cli(parse_event(envelope.t, envelope.d)))
    except Exception:  # the loop must survive anything; parse_event already guards itself
        return _IGNORE_LINE


def main(stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> int:
    """Filter stdin to stdout until EOF; returns the exit status."""
    src = stdin if stdin is not None else sys.stdin.buffer
    dst = stdout if stdout is not None else sys.stdout.buffer
    # readline, not iteration over a read-ahead buffer: each answer must leave before the next line
    # arrives when a worker drives this interactively.
    try:
        for line in iter(src.readline, b""):
            dst.write(parse_line(line) + b"\n")
            dst.flush()
    except BrokenPipeError:
        # The reader went away: nobody is left to answer, so stop quietly instead of a traceback.
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
