"""What the benches run: the product's processes from a chosen tree, beside a fixed Redis and mjsim.

- `ProductTree`: a checkout of the product (this one, or another git ref in a temporary worktree)
  that web, worker and bridge are started from, so an A/B run changes the product and nothing else.
  `python -m pkg` with the tree as working directory and ``PYTHONPATH`` puts the tree's packages
  first on ``sys.path``; the shared ``.venv`` brings the libraries (its editable install of this
  tree comes after them). `ProductTree.check` proves it on the running processes.
- `Child`: one process with its log, stopped with its whole process group, and its CPU time and
  RSS with its children's (granian serves from child processes).
- `BenchStack`: the embedded Valkey and mjsim (always from this tree: the same Discord for both
  sides), then web, worker(s) and bridge from the product tree, one config, one `HookSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psutil
import yaml

from bench.hooks import HookSink
from broker import keys
from broker.redis_client import connect
from broker.redis_server import EmbeddedRedis, free_port

__all__ = ["ROOT", "SECRET", "BenchStack", "Child", "ProductTree", "Shape", "cpu_seconds"]

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789"
#: a module each product process imports from its tree, to find its bytecode there
_PRODUCT = {"broker", "workers", "discord_bridge"}
_IMPORTED_BY = {
    "web": "broker/api/app.py",
    "worker": "workers/main.py",
    "bridge": "discord_bridge/main.py",
}


class ProductTree:
    """A product checkout: `label` names it in the figures (``after`` is this tree, ``before`` a ref).

    Every process started from it writes its bytecode under its own ``PYTHONPYCACHEPREFIX``
    (``<pycache>/<process name>/<absolute source path>``), so which files each process imported
    can be read afterwards: that is how `check` proves where a process ran its code from.

    :param path: the tree's root (holds ``broker/``, ``workers/``, ``discord_bridge/``).
    :param label: how the figures name this side.
    :param ref: what it was checked out from, for the report.
    """

    def __init__(self, path: Path, *, label: str, ref: str) -> None:
        self.path = path
        self.label = label
        self.ref = ref
        self.pycache = Path(tempfile.mkdtemp(prefix=f"mjb-bench-pyc-{label}-"))

    @classmethod
    def current(cls) -> ProductTree:
        return cls(ROOT, label="after", ref="working tree")

    @classmethod
    @contextlib.contextmanager
    def checkout(cls, ref: str) -> Iterator[ProductTree]:
        """`ref` in a temporary git worktree (detached), removed again on exit."""
        path = Path(tempfile.mkdtemp(prefix="mjb-bench-baseline-")) / "tree"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
        try:
            yield cls(path, label="before", ref=ref)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)
            subprocess.run([*git, "worktree", "prune"], check=False)

    def env(self, base: Mapping[str, str], process: str) -> dict[str, str]:
        """`base` with the tree first on ``sys.path`` and `process`'s own bytecode folder."""
        # The caller's PYTHON* variables are dropped: a PYTHONPATH would come before the tree, and
        # PYTHONDONTWRITEBYTECODE (set on some machines) would hide the bytecode `check` reads.
        env = {k: v for k, v in base.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = str(self.path)
        env["PYTHONPYCACHEPREFIX"] = str(self.pycache / process)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def check(self, children: Mapping[str, Child]) -> str:
        """Prove that the processes in `children` run this tree's code; raises when one does not.

        For each: every process of it (granian's workers included) has the tree as working
        directory; its bytecode folder holds the tree's copy of a module it must import
        (`_IMPORTED_BY`, or ``broker/__init__.py``); and it holds no product module from anywhere
        else (another checkout, or the editable install's tree).
        """
        for name, child in children.items():
            for process in child.processes():
                with contextlib.suppress(psutil.Error):
                    if Path(process.cwd()) != self.path:
                        raise RuntimeError(f"{name} (pid {process.pid}) runs in {process.cwd()}")
            mirror = self.pycache / name
            compiled = [Path("/", *p.relative_to(mirror).parts) for p in mirror.rglob("*.pyc")]
            wanted = self.path / _IMPORTED_BY.get(name.rstrip("0123456789"), "broker/__init__.py")
            if not any(c.parent == wanted.parent and c.name.startswith(wanted.stem + ".") for c in compiled):
                raise RuntimeError(f"{self.label}: {name} did not import {wanted}")
            foreign = [
                c for c in compiled
                if not c.is_relative_to(self.path)
                and not {"site-packages", ".venv"} & set(c.parts)
                and _PRODUCT & set(c.parts)
            ]  # fmt: skip
            if foreign:
                raise RuntimeError(f"{self.label}: {name} imported {foreign[0]} from outside {self.path}")
        return f"{', '.join(children)} ran in {self.path} and imported product code from it alone"


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class Child:
    """One child process of a bench, in its own process group, logging to ``<log_dir>/<name>.log``."""

    def __init__(
        self, name: str, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.cwd = cwd
        self.env = dict(env)
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def processes(self) -> list[psutil.Process]:
        """The process and its descendants (granian's workers), as far as they are alive."""
        if self.popen is None or self.popen.poll() is not None:
            return []
        try:
            root = psutil.Process(self.popen.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its live descendants."""
        used = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                used += cpu_seconds(process)
        return used

    def rss_bytes(self) -> int:
        total = 0
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def stop(self, grace: float = 5.0) -> None:
        if self.popen is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _sim_account(n: int) -> dict[str, str]:
    """Account `n` of mjsim's accounts file: a token of this bench process, ids of their own range."""
    ids = {"user_id": 0, "guild_id": 10**16, "channel_id": 2 * 10**16}
    account = {name: str(1_400_000_000_000_000_000 + offset + n) for name, offset in ids.items()}
    return {**account, "token": f"bench-{os.getpid()}-{n}", "username": f"bench{n}"}


class Shape(msgspec.Struct, frozen=True, kw_only=True):
    """How large and how fast a `BenchStack` is; the defaults are the pipeline bench's."""

    #: mjsim accounts, configured as a0..aN-1, each with these queue limits and timeout
    accounts: int = 10
    core_size: int = 3
    queue_size: int = 1000
    timeout_minutes: float = 5.0
    #: mjsim's timing (0 = no waiting)
    job_seconds: float = 0.0
    speed: float = 0.0
    progress_steps: int = 1
    #: worker processes sharing the streams' consumer groups
    worker_processes: int = 1
    #: the embedded Valkey's fsync policy, and `redis.durability` ("" leaves the key out, so that
    #: trees older than the key accept the config): see `bench/durability_bench.py`
    appendfsync: str = "always"
    durability: str = ""


class BenchStack:
    """Valkey, mjsim, and the product's web, worker(s) and bridge, all on loopback.

    :param root: a temporary directory for config, logs, Redis data and the ledger.
    :param product: the tree web, worker and bridge run from (`ProductTree.current()` by default).
    :param shape: accounts, queue limits, mjsim's timing, worker processes.
    """

    def __init__(self, root: Path, *, product: ProductTree | None = None, shape: Shape = Shape()) -> None:
        self.root = root
        self.product = product or ProductTree.current()
        self.shape = shape
        logs = root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(port=free_port(), data_dir=root / "redis", appendfsync=shape.appendfsync)
        self.hooks = HookSink()
        self.web_url = f"http://127.0.0.1:{free_port()}"
        self.sim_url = f"http://127.0.0.1:{free_port()}"
        self.config_path = root / "config.yaml"
        self.sim_accounts = [_sim_account(n) for n in range(shape.accounts)]
        (root / "mjsim.accounts.json").write_text(json.dumps(self.sim_accounts))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("MJBROKER_")}
        base_env["MJBROKER_CONFIG"] = str(self.config_path)
        sim_port = self.sim_url.rsplit(":", 1)[1]
        self.mjsim = Child(
            "mjsim",
            [sys.executable, "-m", "mjsim", "--port", sim_port, "--accounts", str(shape.accounts),
             "--accounts-file", str(root / "mjsim.accounts.json"), "--seed", "7", "--speed", str(shape.speed),
             "--job-seconds", str(shape.job_seconds), "--progress-steps", str(shape.progress_steps)],
            cwd=ROOT, env=base_env, log_dir=logs,
        )  # fmt: skip
        commands = {
            "web": ["broker.api", "--port", self.web_url.rsplit(":", 1)[1]],
            **{
                "worker" + (str(n) if n > 1 else ""): ["workers", "--log-level", "WARNING"]
                for n in range(1, shape.worker_processes + 1)
            },
            "bridge": ["discord_bridge"],
        }
        self.services = {
            name: Child(name, [sys.executable, "-m", *command], cwd=self.product.path,
                        env=self.product.env(base_env, name), log_dir=logs)
            for name, command in commands.items()
        }  # fmt: skip
        self.http: aiohttp.ClientSession | None = None

    def config(self) -> dict[str, Any]:
        """A config both the current product and older trees accept (no key newer than the baseline)."""
        sim = self.sim_url
        accounts = [
            {"id": f"a{i}", "guild_id": a["guild_id"], "channel_id": a["channel_id"], "token": a["token"],
             "core_size": self.shape.core_size, "queue_size": self.shape.queue_size,
             "timeout_minutes": self.shape.timeout_minutes,
             "queue_timeout_minutes": self.shape.timeout_minutes * 3}
            for i, a in enumerate(self.sim_accounts)
        ]  # fmt: skip
        ws = sim.replace("http://", "ws://") + "/"
        redis: dict[str, Any] = {"url": self.redis.url, "data_dir": str(self.root / "redis")}
        if self.shape.durability:
            redis["durability"] = self.shape.durability
        return {
            "redis": redis,
            "discord": {"rest_url": f"{sim}/api/v9", "gateway_url": ws, "cdn_url": sim, "inpaint_url": sim},
            # allow_private_addresses (deprecated; url_guard.allow replaces it) lets hooks reach the
            # loopback sink and is the one spelling an older baseline tree accepts as well
            "hooks": {"allow_private_addresses": True, "request_timeout_seconds": 5, "give_up_minutes": 1},
            "tasks": {"retention_days": 1, "ledger_path": str(self.root / "ledger.db"), "sweep_seconds": 1},
            "bridge": {"lease_seconds": 3.0, "acquire_seconds": 0.5, "reconcile_seconds": 1.0},
            "api_keys": [{"name": "bench", "secret": SECRET}],
            "accounts": accounts,
        }

    async def start(self, services: Sequence[str] | None = None, *, within: float = 30.0) -> None:
        """Start Redis, mjsim and `services` (default: all), then wait for the web (`within` seconds)
        and every account."""
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        await self.hooks.start()
        try:
            self.redis.start()
            self.mjsim.start()
            self.http = aiohttp.ClientSession(headers={"mj-api-secret": SECRET})
            await self._answers(f"{self.sim_url}/_sim/health", self.mjsim)
            names = list(self.services) if services is None else list(services)
            for name in names:
                self.services[name].start()
            if "web" in names:
                await self._answers(f"{self.web_url}/mj/account/list", self.services["web"], within)
            if "bridge" in names:
                await self.wait_online(within=120)
        except BaseException:
            await self.close()  # a stack that did not come up leaves no process behind
            raise

    async def close(self) -> None:
        for child in [*reversed(self.services.values()), self.mjsim]:
            child.stop()
        self.redis.stop()
        await self.hooks.stop()
        if self.http is not None:
            await self.http.close()

    def running(self) -> dict[str, Child]:
        return {name: child for name, child in self.services.items() if child.popen is not None}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each process: redis, mjsim, the product's, and this bench's."""
        used = {name: child.cpu_seconds() for name, child in self.running().items()}
        used["mjsim"] = self.mjsim.cpu_seconds()
        if self.redis.process is not None:
            used["redis"] = cpu_seconds(psutil.Process(self.redis.process.pid))
        used["bench"] = cpu_seconds(psutil.Process())
        return used

    async def _answers(self, url: str, child: Child, within: float = 30.0) -> None:
        assert self.http is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{child.name} did not answer {url} within {within}s:\n{child.tail()}")

    async def wait_online(self, within: float = 30.0) -> None:
        """Until every account's live status says ONLINE (the bridge holds it)."""
        redis = connect(self.redis.url)
        names = [keys.account_status(f"a{i}") for i in range(self.shape.accounts)]
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                async with redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hget(name, "state")
                    states = await pipe.execute()
                if all(state == b"ONLINE" for state in states):
                    return
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
        bridge = self.services["bridge"]
        raise RuntimeError(f"accounts not ONLINE within {within}s:\n{bridge.tail()}")

    async def sim_settings(self, **settings: float) -> None:
        """Change mjsim's timing (`/_sim/settings`)."""
        assert self.http is not None
        async with self.http.patch(f"{self.sim_url}/_sim/settings", json=settings) as response:
            response.raise_for_status()
