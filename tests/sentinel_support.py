"""A primary, its replicas and three sentinels from the embedded wheel's valkey-server, on loopback.

`SentinelDeployment` is what a `Stack` (``redis=``) or a test runs against in ``redis.mode:
sentinel``: every data node keeps an AOF fsynced on every write (``appendfsync always``, as the
embedded server does) and requires one password; the sentinels watch the primary with a short
``down-after-milliseconds`` and ``failover-timeout``, so a killed primary is replaced within a few
seconds. The sentinels may require their own password (`sentinel_password`), given in the URLs of
`redis_section`, as an operator's config would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisError

from broker.redis_server import find_server_binary, free_port

__all__ = ["SERVICE", "Node", "SentinelDeployment"]

#: the primary's name at the sentinels
SERVICE = "mymaster"


class Node:
    """One valkey-server (data node or sentinel) with its own directory, config file and log."""

    def __init__(self, name: str, root: Path, lines: list[str], *, sentinel: bool) -> None:
        self.name = name
        self.port = free_port()
        self.dir = root / name
        self.sentinel = sentinel
        self.lines = lines
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.dir / "valkey.log"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "node.conf"
        if not config.exists():  # a sentinel rewrites its file: keep what it learned across restarts
            fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                base = [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.dir.resolve()}",
                    f"logfile {self.log_file.resolve()}",
                    "loglevel notice",
                ]
                out.write("\n".join([*base, *self.lines]) + "\n")
        args = [find_server_binary(), str(config.resolve())]
        if self.sentinel:
            args.append("--sentinel")
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(10)
        self.process = None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class SentinelDeployment:
    """A primary + `replicas` replicas + `sentinels` sentinels (quorum 2) on loopback free ports.

    :param root: a directory for the nodes' files.
    :param down_after_ms: how long the primary must be silent before a sentinel thinks it down; much
        shorter and a sentinel on a loaded 2-core host thinks a primary just promoted down before
        its first PING reply, and fails over a second time.
    :param failover_timeout_ms: the sentinels' ``failover-timeout`` (also bounds a leader election).
    :param sentinel_password: when set, the sentinels require it (and use it among themselves).
    """

    def __init__(
        self,
        root: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        sentinel_password: str = "",
    ) -> None:
        self.root = root
        self.password = "data-" + secrets.token_urlsafe(12)
        self.sentinel_password = sentinel_password
        data = ["appendonly yes", "appendfsync always", 'save ""', f"requirepass {self.password}"]
        # a replica (re)joining gets its full copy at once, not after the default 5 s wait for others
        data.append("repl-diskless-sync-delay 0")
        # the tests hold a replica still with DEBUG SLEEP (loopback clients only)
        data.append("enable-debug-command local")
        # a replica that is promoted, or a primary that comes back as a replica, authenticates to
        # whichever node is primary then
        data.append(f"masterauth {self.password}")
        self.data = [Node("data0", root, list(data), sentinel=False)]
        primary_port = self.data[0].port
        for n in range(1, replicas + 1):
            lines = [*data, f"replicaof 127.0.0.1 {primary_port}"]
            self.data.append(Node(f"data{n}", root, lines, sentinel=False))
        watch = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2",
            f"sentinel auth-pass {SERVICE} {self.password}",
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} {replicas}",
        ]
        # what the sentinels would learn from the primary's INFO and each other's hellos (one every
        # 2 s), written down at once so a deployment is ready as soon as it answers
        watch += [f"sentinel known-replica {SERVICE} 127.0.0.1 {node.port}" for node in self.data[1:]]
        if sentinel_password:
            watch += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
        self.sentinels = [Node(f"sentinel{n}", root, list(watch), sentinel=True) for n in range(sentinels)]
        ids = [secrets.token_hex(20) for _ in self.sentinels]
        for node, myid in zip(self.sentinels, ids, strict=True):
            node.lines.append(f"sentinel myid {myid}")
            node.lines += [
                f"sentinel known-sentinel {SERVICE} 127.0.0.1 {other.port} {other_id}"
                for other, other_id in zip(self.sentinels, ids, strict=True)
                if other is not node
            ]

    # -- config ----------------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The sentinels' URLs, with their password when they require one (secrets: never logged)."""
        auth = f":{self.sentinel_password}@" if self.sentinel_password else ""
        return [f"redis://{auth}127.0.0.1:{node.port}" for node in self.sentinels]

    def redis_section(self, **extra: Any) -> dict[str, Any]:
        """The config's ``redis`` section of a process using this deployment."""
        return {
            "mode": "sentinel",
            "urls": self.urls,
            "password": self.password,
            "sentinel_service": SERVICE,
            "durability": "replicated",
            **extra,
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start every node; return once each replica is in sync and each sentinel knows all the
        others and every replica (a failover needs both)."""
        deadline = time.monotonic() + timeout
        for node in self.data:
            node.start()
        self._until(deadline, self._replicas_online, "the replicas are not in sync")
        for node in self.sentinels:
            node.start()
        self._until(deadline, self._sentinels_ready, "the sentinels do not know each other")

    def stop(self, *, kill: bool = False) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop(kill=kill)

    def kill_primary(self) -> Node:
        """SIGKILL the current primary (as the sentinels name it); returns its node."""
        node = self.primary()
        node.stop(kill=True)
        return node

    def primary(self) -> Node:
        """The data node the sentinels name primary now."""
        host, port = self._ask_sentinels(lambda s: s.sentinel_get_master_addr_by_name(SERVICE))
        for node in self.data:
            if node.port == int(port):
                return node
        raise AssertionError(f"the sentinels name an unknown primary {host}:{port}")

    def wait_failover(self, old: Node, within: float = 15.0) -> Node:
        """Wait until every sentinel names a primary other than `old` that has a replica in sync."""
        deadline = time.monotonic() + within

        def moved() -> bool:
            named = {self._sentinel(n).sentinel_get_master_addr_by_name(SERVICE) for n in self.sentinels}
            if len(named) != 1:
                return False
            ((_, port),) = named
            return int(port) != old.port and self._replicas_online(port=int(port), want=1)

        self._until(deadline, moved, f"no failover from port {old.port}")
        return self.primary()

    def data_client(self, node: Node) -> redis.Redis:
        """A plain synchronous client of one data node (for checks; close it)."""
        return redis.Redis(port=node.port, password=self.password, socket_timeout=2)

    def tail_all(self) -> str:
        return "\n".join(f"== {n.name} ==\n{n.tail()}" for n in [*self.data, *self.sentinels])

    # -- waits -------------------------------------------------------------------------------------

    def _sentinel(self, node: Node) -> redis.Redis:
        return redis.Redis(port=node.port, password=self.sentinel_password or None, socket_timeout=2)

    def _ask_sentinels(self, ask: Any) -> Any:
        errors = []
        for node in self.sentinels:
            if not node.running:
                continue
            client = self._sentinel(node)
            try:
                return ask(client)
            except (RedisError, OSError) as exc:
                errors.append(repr(exc))
            finally:
                client.close()
        raise AssertionError(f"no sentinel answered: {errors}")

    def _replicas_online(self, port: int | None = None, want: int | None = None) -> bool:
        node = next(n for n in self.data if n.port == (port or self.data[0].port))
        client = self.data_client(node)
        try:
            info = client.info("replication")
        finally:
            client.close()
        online = sum(1 for k, v in info.items() if k.startswith("slave") and v.get("state") == "online")
        return online >= (len(self.data) - 1 if want is None else want)

    def _sentinels_ready(self) -> bool:
        for node in self.sentinels:
            client = self._sentinel(node)
            try:
                state = client.sentinel_master(SERVICE)
            finally:
                client.close()
            if state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
            if state["num-slaves"] < len(self.data) - 1:
                return False
        return True

    def _until(self, deadline: float, check: Any, what: str) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError, KeyError):
                if check():
                    return
            time.sleep(0.1)
        raise AssertionError(f"{what} in time:\n{self.tail_all()}")
