"""A host crash for the embedded Valkey: what its AOF holds beyond the last fsync is dropped.

`TracedRedis` runs the server under strace, which logs every write to and every fsync of the AOF's
incr file (``-P`` keeps only the syscalls on that file, so the server's sockets are not slowed).
At the crash the server is SIGKILLed, the log says how many bytes had been written before the last
fsync that completed, and the file is cut back to that size: the page cache a power cut or a VM
reset would lose. The log is exact for what it counts: an fsync covers the writes completed before
it started (strace prints a syscall's start, marking it ``<unfinished ...>`` when another thread's
syscall comes in between), and an fsync still running at the kill counts for nothing. A real crash
may keep more (the kernel writes dirty pages back on its own after a while): this is the worst case.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import redis

from broker.redis_server import EmbeddedRedis

__all__ = ["AofCut", "TracedRedis", "fsynced_bytes"]

_SYSCALL = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+)")
_WRITES = {"write", "writev", "pwrite64", "pwritev"}
_SYNCS = {"fdatasync", "fsync"}


def fsynced_bytes(trace: str) -> tuple[int, int]:
    """(bytes written, bytes written before the last completed fsync began) from an strace log."""
    written = 0
    synced = 0
    started: dict[str, int] = {}  # thread -> bytes written when its unfinished fsync began
    for line in trace.splitlines():
        match = _SYSCALL.match(line)
        if match is None:
            continue
        thread, resumed, name, rest = match.groups()
        result = _RESULT.search(rest)
        done = result is not None and int(result.group(1)) >= 0
        if (resumed in _WRITES or name in _WRITES) and done:
            written += int(result.group(1))  # type: ignore[union-attr]
        elif name in _SYNCS and "<unfinished ...>" in rest:
            started[thread] = written
        elif name in _SYNCS and done:
            synced = max(synced, written)  # nothing happened between its start and its end
        elif resumed in _SYNCS and done and thread in started:
            synced = max(synced, started.pop(thread))
    return written, synced


@dataclass(frozen=True)
class AofCut:
    """What the crash took: the incr file's size at the kill and what was kept of it."""

    size: int
    kept: int

    @property
    def dropped(self) -> int:
        return self.size - self.kept


class TracedRedis(EmbeddedRedis):
    """The embedded server under strace (see the module); `crash` is the host crash."""

    def __init__(self, *, port: int, data_dir: Path, appendfsync: str, trace: Path) -> None:
        super().__init__(port=port, data_dir=data_dir, appendfsync=appendfsync)
        self.trace = trace
        #: the next start runs under strace (a restart after the crash need not)
        self.traced = True
        self.server_pid = 0

    @property
    def incr_file(self) -> Path:
        """The AOF part that takes the writes (no rewrite runs in the test: see `command`)."""
        return self.aof_dir / "appendonly.aof.1.incr.aof"

    def command(self) -> list[str]:
        # No AOF rewrite: the incr file named above stays the one written.
        args = [*super().command(), "--auto-aof-rewrite-percentage", "0"]
        if not self.traced:
            return args
        strace = shutil.which("strace")
        assert strace is not None, "the crash test needs strace (apt-get install strace)"
        syscalls = "trace=" + ",".join(sorted(_WRITES | _SYNCS))
        return [
            strace,
            "-f",
            "-qq",
            "-y",
            "-e",
            syscalls,
            "-P",
            str(self.incr_file),
            "-o",
            str(self.trace),
            *args,
        ]

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        with redis.Redis.from_url(self.url) as client:
            self.server_pid = int(client.info("server")["process_id"])

    def crash(self) -> AofCut:
        """SIGKILL the server and cut its AOF back to what the last fsync made durable."""
        assert self.traced and self.process is not None
        os.kill(self.server_pid, signal.SIGKILL)
        self.process.wait(10)  # strace ends with its tracee, its log complete
        self.stop()
        size = self.incr_file.stat().st_size
        written, synced = fsynced_bytes(self.trace.read_text(errors="replace"))
        assert written == size, f"the trace saw {written} bytes written, the file has {size}"
        os.truncate(self.incr_file, synced)
        self.traced = False
        return AofCut(size=size, kept=synced)
