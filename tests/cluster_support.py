"""A real Valkey Cluster on loopback, from the embedded wheel: 3 primaries and 3 replicas.

Each node is ``valkey-server --cluster-enabled yes`` with the AOF on (``appendfsync always``), a
password (``requirepass`` and ``masterauth``, in a config file of mode 0600, never on a command
line) and a short ``cluster-node-timeout``, so that a killed primary is replaced by its replica
within a couple of seconds. ``valkey-cli --cluster create ... --cluster-replicas 1`` joins them.
`ValkeyCluster` is what `tests/e2e_support.Stack` takes as its ``redis=`` deployment; `section()`
is its config ``redis:`` section.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from broker.redis_server import find_server_binary, free_port

__all__ = ["ValkeyCluster"]

#: how long a node may be silent before the others fail it over (ms)
NODE_TIMEOUT_MS = 1000


def _cli_binary() -> str:
    return str(Path(find_server_binary()).with_name("valkey-cli"))


class _Node:
    def __init__(self, root: Path, port: int, bus_port: int, password: str) -> None:
        self.port = port
        self.bus_port = bus_port
        self.dir = root / f"node-{port}"
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "valkey.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(f"requirepass {self.password}\nmasterauth {self.password}\n")
        args = [
            find_server_binary(), str(conf.resolve()),
            "--port", str(self.port), "--cluster-port", str(self.bus_port), "--bind", "127.0.0.1",
            "--dir", str(self.dir.resolve()),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--loglevel", "warning", "--logfile", str((self.dir / "valkey.log").resolve()),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

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

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join((self.dir / "valkey.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=2, socket_connect_timeout=1)

    def info(self) -> dict[str, Any]:
        with self.client() as conn:
            info: dict[str, Any] = conn.cluster("INFO")  # redis-py parses it into a dict
        return info

    def role(self) -> str:
        with self.client() as conn:
            return str(conn.info("replication")["role"])


class ValkeyCluster:
    """Three primaries with one replica each, on loopback; `start`/`stop` as a Stack's deployment.

    :param root: a directory for the nodes' data and logs.
    """

    def __init__(self, root: Path, *, primaries: int = 3) -> None:
        self.root = root
        self.password = secrets.token_hex(16)
        self.nodes = [_Node(root, free_port(), free_port(), self.password) for _ in range(primaries * 2)]
        self.primaries = primaries
        self._created = False

    @property
    def urls(self) -> list[str]:
        return [f"redis://{node.name}" for node in self.nodes]

    def section(self, **extra: Any) -> dict[str, Any]:
        """The config's ``redis:`` section for this cluster."""
        return {"mode": "cluster", "urls": self.urls, "password": self.password, **extra}

    def start(self) -> None:
        """Start every node not running; the first time, create the cluster (on other ports once
        more if that fails: a port picked free may be taken meanwhile on a busy host), later empty
        it (a new Stack starts from nothing); return once every node reports cluster_state ok."""
        if not self._created:
            try:
                self._start()
            except (AssertionError, subprocess.SubprocessError) as exc:
                tails = {n.name: n.log_tail() for n in self.nodes}
                self.shutdown()
                self.nodes = [_Node(self.root, free_port(), free_port(), self.password) for _ in self.nodes]
                self._created = False
                print(f"Valkey cluster did not form ({exc}); again on other ports. Node logs: {tails}")
            else:
                return
        self._start()

    def _start(self) -> None:
        if self._created:
            self.wait_ok()
            for node in self.live_primaries():
                with node.client() as conn:
                    conn.flushall()
        for node in self.nodes:
            if not node.alive:
                node.start()
        self._wait(lambda: all(self._answers(n) for n in self.nodes), "nodes answering")
        if not self._created:
            env = {**os.environ, "REDISCLI_AUTH": self.password, "VALKEYCLI_AUTH": self.password}
            subprocess.run(
                [_cli_binary(), "--cluster", "create", *(n.name for n in self.nodes),
                 "--cluster-replicas", "1", "--cluster-yes"],
                env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )  # fmt: skip
            self._created = True
        self.wait_ok()

    def stop(self, *, kill: bool = False) -> None:
        """Nothing: the cluster outlives the Stacks that use it (`shutdown` ends it)."""

    def shutdown(self) -> None:
        """Stop every node (the session fixture's teardown)."""
        for node in self.nodes:
            node.stop()

    def wait_ok(self, within: float = 30) -> None:
        """Wait until every running node says cluster_state ok and every slot has a live primary."""

        def ok() -> bool:
            with contextlib.suppress(redis.RedisError, OSError):
                return (
                    all(n.info().get("cluster_state") == "ok" for n in self.nodes if n.alive)
                    and len(self.live_primaries()) == self.primaries
                )
            return False

        self._wait(ok, "cluster_state ok", within)

    def live_primaries(self) -> list[_Node]:
        out = []
        for node in self.nodes:
            if node.alive:
                with contextlib.suppress(redis.RedisError, OSError):
                    if node.role() == "master":
                        out.append(node)
        return out

    def kill_primary(self, index: int = 0) -> _Node:
        """SIGKILL the `index`-th live primary (nothing flushed); returns it (for `revive`)."""
        node = self.live_primaries()[index]
        node.stop(kill=True)
        return node

    def shard_of(self, primary: _Node) -> list[_Node]:
        """`primary` and its replicas (those that name it as their primary)."""
        with primary.client() as conn:
            replicas = conn.info("replication")
        ports = {int(v["port"]) for k, v in replicas.items() if k.startswith("slave") and isinstance(v, dict)}
        return [primary, *(n for n in self.nodes if n.port in ports)]

    def kill_shard(self, index: int = 0) -> list[_Node]:
        """SIGKILL a primary and its replica: the cluster cannot serve those slots until `revive_all`."""
        shard = self.shard_of(self.live_primaries()[index])
        for node in shard:
            node.stop(kill=True)
        return shard

    def revive_all(self, nodes: list[_Node]) -> None:
        """Start `nodes` again (from their AOF and nodes.conf) and wait until the cluster is ok."""
        for node in nodes:
            node.start()
        self.wait_ok()

    def promote_replica(self, index: int = 0) -> _Node:
        """``CLUSTER FAILOVER`` on the replica of the `index`-th live primary (a planned failover:
        nothing lost); returns the new primary once the cluster is ok again."""
        old, replica = self.shard_of(self.live_primaries()[index])[:2]
        with replica.client() as conn:
            conn.execute_command("CLUSTER FAILOVER")
        self._wait(lambda: replica.role() == "master" and old.role() == "slave", "the planned failover")
        self.wait_ok()
        return replica

    @staticmethod
    def node_id(node: _Node) -> str:
        with node.client() as conn:
            raw = conn.execute_command("CLUSTER MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def node_at(self, port: int) -> _Node:
        return next(n for n in self.nodes if n.port == int(port))

    def wait_failover(self, killed: _Node, within: float = 30) -> None:
        """Wait until a replica has taken over `killed`'s slots (cluster_state ok everywhere)."""
        self.wait_ok(within)

    def revive(self, node: _Node) -> None:
        """Start a killed node again: it rejoins as a replica of the primary that replaced it."""
        node.start()
        self._wait(lambda: self._answers(node), f"{node.name} answering")

        def replica() -> bool:
            with contextlib.suppress(redis.RedisError, OSError):
                with node.client() as conn:
                    repl = conn.info("replication")
                return repl.get("role") == "slave" and repl.get("master_link_status") == "up"
            return False

        self._wait(replica, f"{node.name} replicating")

    @staticmethod
    def _answers(node: _Node) -> bool:
        with contextlib.suppress(redis.RedisError, OSError), node.client() as conn:
            return bool(conn.ping())
        return False

    @staticmethod
    def _wait(check: Any, what: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"Valkey cluster: no {what} within {within}s")
