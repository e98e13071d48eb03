"""The benches' hook receiver: every POST answered 204 at once and kept as a `Hook` with its arrival time.

Built for counting, not for faults: it reads only what the benches look at (task id, status,
progress, the version header) and keeps each task's hooks in arrival order, so a bench can tell
when a task first reached a status or a progress. It runs in the bench process, which shares the
machine's cores with the product, so a hook costs one small msgspec decode and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

import msgspec

__all__ = ["Hook", "HookSink", "percent"]

TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCEL"})


class _Body(msgspec.Struct):
    """The fields of a hook body the benches read (midjourney-proxy's task JSON); the rest is skipped."""

    id: str
    status: str = ""
    progress: str | None = None


class Hook(msgspec.Struct, frozen=True):
    """One POST received: task, status, progress, `X-Mjbroker-Task-Version`, `time.time()` at arrival."""

    task_id: str
    status: str
    progress: str
    version: int
    at: float


def percent(progress: str | None) -> int:
    """`"37%"` -> 37; anything else -> -1."""
    text = (progress or "").rstrip("%")
    return int(text) if text.isdigit() else -1


_decode = msgspec.json.Decoder(_Body).decode


class HookSink:
    """A loopback HTTP/1.1 server that keeps every hook, and each task's first terminal one apart.

    `by_task[id]` is that task's hooks in arrival order; `terminal[id]` its first SUCCESS, FAILURE or
    CANCEL hook; `received` counts them all. `changed` is set on every hook, for waiting without
    polling too fast.
    """

    def __init__(self) -> None:
        self.by_task: dict[str, list[Hook]] = defaultdict(list)
        self.terminal: dict[str, Hook] = {}
        self.received = 0
        self.changed = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

    def _keep(self, body: bytes, version: int) -> None:
        try:
            parsed = _decode(body)
        except msgspec.DecodeError:
            return
        hook = Hook(parsed.id, parsed.status, parsed.progress or "", version, time.time())
        self.by_task[hook.task_id].append(hook)
        if hook.status in TERMINAL:
            self.terminal.setdefault(hook.task_id, hook)
        self.received += 1
        self.changed.set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, version = 0, -1
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"x-mjbroker-task-version":
                        version = int(value)
                body = await reader.readexactly(length)
                self._keep(body, version)
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
