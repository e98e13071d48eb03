"""End-to-end harness: every process real, as subprocesses on loopback, plus a local hook receiver.

`Stack` starts, in order: the embedded Redis (AOF under the stack's dir), `python -m mjsim`,
the web app (`python -m broker.api`, granian), `python -m workers` and `python -m discord_bridge`,
all reading one temp config.yaml. Any of them can be SIGKILLed and restarted. The API is called
with httpx, mjsim's control API for faults and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml
from redis.exceptions import RedisError
from workers_support import HookReceiver

from broker import heartbeat, keys
from broker.account_status import AccountState
from broker.config import load_settings
from broker.redis_client import BoundedRedis, open_redis
from broker.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "e2e-secret"
HOOK_SECRET = "e2e-hook-secret"
#: the admin key of the status page (`/admin`) and the admin API
ADMIN_SECRET = "e2e-admin-secret"
TERMINAL = ("SUCCESS", "FAILURE", "CANCEL")

__all__ = ["ADMIN_SECRET", "HOOK_SECRET", "SECRET", "TERMINAL", "HookReceiver", "Proc", "Stack", "tiny_png"]


class RedisDeployment(Protocol):
    """What a stack runs its processes against: the embedded server, or a cluster or a primary
    with sentinels (their tests' own classes)."""

    def start(self) -> None: ...

    def stop(self, *, kill: bool = False) -> None: ...


def tiny_png(seed: int = 0) -> bytes:
    """A small valid PNG, different per seed."""
    import io

    from PIL import Image

    img = Image.new("RGB", (8, 8), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_url(raw: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(raw).decode()


class Proc:
    """One child process with its log file; `kill()` is SIGKILL, `stop()` SIGTERM."""

    def __init__(self, name: str, args: Sequence[str], *, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = list(args)
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n--- start #{self.starts} ---\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # The whole process group: granian's worker processes die with their parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Stack:
    """The whole product on loopback.

    :param root: a temp directory for config, logs, Redis data and the ledger.
    :param accounts: how many mjsim accounts (config ids a0..aN-1).
    :param core_size, queue_size, timeout_minutes: per account.
    :param job_seconds, speed, progress_steps: mjsim timing.
    :param account_overrides: extra config keys per account index (e.g. {0: {"remix": True}}).
    :param durable: acknowledgements wait for the AOF's fsync (the product's default); False is the
        older policy (appendfsync everysec, no WAITAOF), for the crash test's comparison.
    :param web_workers: granian worker processes behind the one web port (one process group).
    :param web_processes: independent web processes, each on its own port (`web`, `web2`, ...;
        `apis` holds a client per port, `api` is the first's).
    :param worker_processes, bridge_processes: processes of each (`worker2`, `bridge2`, ...); the
        bridges split the accounts through their leases.
    :param claim_idle_seconds: the workers' ``--claim-idle-seconds`` (None: their default).
    """

    def __init__(
        self,
        root: Path,
        *,
        accounts: int = 2,
        core_size: int = 3,
        queue_size: int = 10,
        timeout_minutes: float = 1.0,
        job_seconds: float = 0.3,
        speed: float = 0.0,
        progress_steps: int = 2,
        lease_seconds: float = 3.0,
        account_overrides: dict[int, dict[str, Any]] | None = None,
        web_workers: int = 1,
        worker_processes: int = 1,
        web_processes: int = 1,
        bridge_processes: int = 1,
        claim_idle_seconds: float | None = None,
        durable: bool = True,
        redis: RedisDeployment | None = None,
        redis_section: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.mjsim_port = free_port()
        self.web_ports = [free_port() for _ in range(web_processes)]
        self.web_port = self.web_ports[0]
        self.n_accounts = accounts
        self.core_size = core_size
        self.queue_size = queue_size
        self.timeout_minutes = timeout_minutes
        self.lease_seconds = lease_seconds
        self.account_overrides = account_overrides or {}
        self.sim_accounts = [
            {
                "token": f"e2e-token-{i}-{os.getpid()}",
                "user_id": str(1_300_000_000_000_000_000 + i),
                "username": f"e2euser{i}",
                "guild_id": str(1_310_000_000_000_000_000 + i),
                "channel_id": str(1_320_000_000_000_000_000 + i),
            }
            for i in range(accounts)
        ]
        self.durable = durable
        #: may be replaced before `start` (the crash test traces the server's AOF writes); another
        #: deployment (a cluster, a primary under sentinels) comes with its config `redis_section`
        self.redis: RedisDeployment = redis or EmbeddedRedis(
            port=self.redis_port, data_dir=root / "redis", appendfsync="always" if durable else "everysec"
        )
        self.redis_section = redis_section
        self.receiver = HookReceiver()
        self.config_path = root / "config.yaml"
        env = {**os.environ, "MJBROKER_CONFIG": str(self.config_path), "PYTHONUNBUFFERED": "1"}
        env["MJBROKER_WEB_WORKERS"] = str(web_workers)
        env.pop("MJBROKER_LOG_LEVEL", None)
        (root / "mjsim.accounts.json").write_text(json.dumps(self.sim_accounts))
        py = PYTHON
        # E2E_WORKER_LOG=DEBUG logs how every event was matched (logs stay under the stack's root).
        worker_log = os.environ.get("E2E_WORKER_LOG", "INFO")
        worker_args = [py, "-m", "workers", "--log-level", worker_log]
        if claim_idle_seconds is not None:
            worker_args += ["--claim-idle-seconds", str(claim_idle_seconds)]
        self.procs: dict[str, Proc] = {
            "mjsim": Proc(
                "mjsim",
                [py, "-m", "mjsim", "--host", "127.0.0.1", "--port", str(self.mjsim_port),
                 "--accounts", str(accounts), "--accounts-file", str(root / "mjsim.accounts.json"),
                 "--seed", "7", "--speed", str(speed), "--job-seconds", str(job_seconds),
                 "--progress-steps", str(progress_steps)],
                env=env, log_dir=self.logs,
            ),
            "web": Proc(
                "web", [py, "-m", "broker.api", "--port", str(self.web_port)], env=env, log_dir=self.logs
            ),
            # the worker logs JSON (LOG_FORMAT=json), so the suite reads and redacts both formats
            "worker": Proc("worker", worker_args, env={**env, "LOG_FORMAT": "json"}, log_dir=self.logs),
            "bridge": Proc("bridge", [py, "-m", "discord_bridge"], env=env, log_dir=self.logs),
        }  # fmt: skip
        # More worker processes share the streams' consumer groups (named worker2, worker3, ...).
        for n in range(2, worker_processes + 1):
            self.procs[f"worker{n}"] = Proc(f"worker{n}", worker_args, env=env, log_dir=self.logs)
        for n, port in enumerate(self.web_ports[1:], 2):
            self.procs[f"web{n}"] = Proc(
                f"web{n}", [py, "-m", "broker.api", "--port", str(port)], env=env, log_dir=self.logs
            )
        for n in range(2, bridge_processes + 1):
            self.procs[f"bridge{n}"] = Proc(
                f"bridge{n}", [py, "-m", "discord_bridge"], env=env, log_dir=self.logs
            )
        self._services = [name for name in self.procs if name != "mjsim"]
        self.apis = [
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"mj-api-secret": SECRET}, timeout=30
            )
            for port in self.web_ports
        ]
        self.api = self.apis[0]
        self.sim = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.mjsim_port}", timeout=30)

    # -- config ----------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        base = f"http://127.0.0.1:{self.mjsim_port}"
        return {
            # metrics snapshots every 0.2 s, so /metrics shows a task's counts within a test's patience
            "server": {"host": "127.0.0.1", "port": self.web_port, "metrics_interval_seconds": 0.2},
            # the embedded server's settings: every process reads its password from data_dir
            "redis": self.redis_section
            or {
                "url": "",
                "embedded_port": self.redis_port,
                "data_dir": str(self.root / "redis"),
                "durability": "local" if self.durable else "none",
            },
            "discord": {
                "rest_url": f"{base}/api/v9",
                "gateway_url": f"ws://127.0.0.1:{self.mjsim_port}/",
                "cdn_url": base,
                "inpaint_url": base,
            },
            "hooks": {
                "secret": HOOK_SECRET,
                "request_timeout_seconds": 5,
                "give_up_minutes": 1,
            },
            # exactly the simulator (Discord, its CDN) and the hook receiver: the rest of loopback
            # stays refused, as the hostile-input tests check
            "url_guard": {"allow": [f"127.0.0.1:{self.mjsim_port}", self.receiver.address]},
            "tasks": {
                "retention_days": 1,
                "ledger_path": str(self.root / "ledger.db"),
                "sweep_seconds": 1,
            },
            "bridge": {
                "lease_seconds": self.lease_seconds,
                "acquire_seconds": 0.5,
                "reconcile_seconds": 1.0,
                "step_timeout_seconds": 10,
                "request_timeout_seconds": 10,
            },
            "api_keys": [
                {"name": "e2e", "secret": SECRET},
                {"name": "e2e-admin", "secret": ADMIN_SECRET, "role": "admin"},
            ],
            "banned_words": ["forbiddenword"],
            "accounts": [
                {
                    "id": f"a{i}",
                    "guild_id": a["guild_id"],
                    "channel_id": a["channel_id"],
                    "token": a["token"],
                    "core_size": self.core_size,
                    "queue_size": self.queue_size,
                    "timeout_minutes": self.timeout_minutes,
                    "queue_timeout_minutes": max(self.timeout_minutes * 3, 1.0),
                    **self.account_overrides.get(i, {}),
                }
                for i, a in enumerate(self.sim_accounts)
            ],
        }

    def write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        tmp.replace(self.config_path)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, online: Sequence[str] | None = None) -> None:
        """Start every process; wait until the accounts `online` (default: all) are ONLINE."""
        await self.receiver.start()  # first: the config allows its port
        self.write_config()
        self.redis.start()
        self.procs["mjsim"].start()
        await self._wait_http(self.sim, "/_sim/health", "mjsim")
        for name in self._services:
            self.procs[name].start()
        for api in self.apis:
            await self._wait_http(api, "/mj/account/list", "web")
        await self.wait_accounts_online(online)
        await self.wait_worker()

    def client(self) -> BoundedRedis:
        """A Redis client as the stack's processes open theirs (any `redis.mode`)."""
        return open_redis(load_settings(self.config_path))

    async def wait_worker(self, within: float = 30) -> None:
        """Wait until a worker's heartbeat is in Redis (the web answers code 9 until then)."""
        client = self.client()
        try:
            async with asyncio.timeout(within):
                while True:
                    with contextlib.suppress(RedisError, OSError):
                        if await heartbeat.workers_alive(client, now=int(time.time() * 1000)):
                            return
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def close(self) -> None:
        for name in [*reversed(self._services), "mjsim"]:
            self.procs[name].stop(5)
        self.redis.stop()
        await self.receiver.stop()
        for api in self.apis:
            await api.aclose()
        await self.sim.aclose()

    async def _wait_http(self, client: httpx.AsyncClient, path: str, what: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(path)
                if response.status_code < 500:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what} did not answer {path} within {within}s:\n{self.tail_all()}")

    async def wait_accounts_online(self, ids: Sequence[str] | None = None, within: float = 30) -> None:
        ids = list(ids or [f"a{i}" for i in range(self.n_accounts)])
        client = self.client()
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                states = []
                for account_id in ids:
                    with contextlib.suppress(RedisError, OSError):
                        states.append(await client.hget(keys.account_status(account_id), "state"))
                if len(states) == len(ids) and all(s == AccountState.ONLINE.encode() for s in states):
                    return
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        raise AssertionError(f"accounts {ids} not ONLINE within {within}s:\n{self.tail_all()}")

    def kill(self, name: str) -> None:
        """SIGKILL `name` ("redis" or a process of `procs`): a crash, nothing flushed or given back."""
        if name == "redis":
            self.redis.stop(kill=True)
        else:
            self.procs[name].kill()

    def revive(self, name: str) -> None:
        """Start `name` again after `kill`; Redis replays its AOF (whatever reached it)."""
        if name == "redis":
            self.redis.start()
        else:
            self.procs[name].start()

    def restart(self, name: str) -> None:
        """A crash and an immediate restart."""
        self.kill(name)
        self.revive(name)

    def tail_all(self, lines: int = 25) -> str:
        return "\n".join(f"== {n} ==\n{p.tail(lines)}" for n, p in self.procs.items())

    # -- API -------------------------------------------------------------------------------------

    def hook_url(self, path: str = "hook") -> str:
        return self.receiver.url(path)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.api.post(path, json=body)
        assert response.status_code < 500, f"{path}: {response.status_code} {response.text}"
        data: dict[str, Any] = response.json()
        return data

    async def fetch(self, task_id: str) -> dict[str, Any] | None:
        response = await self.api.get(f"/mj/task/{task_id}/fetch")
        if response.status_code != 200 or not response.content:
            return None
        data: dict[str, Any] | None = response.json()
        return data

    async def wait_task(
        self,
        task_id: str,
        statuses: Sequence[str] = TERMINAL,
        *,
        within: float = 20,
        check: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                last = await self.fetch(task_id)
            if last is not None and last.get("status") in statuses and (check is None or check(last)):
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"task {task_id} not in {list(statuses)} within {within}s; last: {json.dumps(last)[:800]}\n"
            f"{self.tail_all()}"
        )

    async def sim_control(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.sim.request(method, path, json=body)
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def fault(self, account_index: int, kind: str, **params: Any) -> Any:
        token = self.sim_accounts[account_index]["token"]
        return await self.sim_control("POST", "/_sim/faults", {"account": token, "kind": kind, **params})

    async def counters(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.sim_control("GET", "/_sim/counters")
        return data

    async def wait_interaction(self, nonce: str, within: float = 10) -> None:
        """Wait until mjsim has received the interaction sent with `nonce`."""
        async with asyncio.timeout(within):
            while not (await self.counters())["interactions"]["by_nonce"].get(nonce):  # noqa: ASYNC110 - polls mjsim, bounded by the timeout
                await asyncio.sleep(0.02)

    def hooks_for(self, task_id: str) -> list[dict[str, Any]]:
        out = []
        for received in self.receiver.received:
            with contextlib.suppress(ValueError, KeyError):
                body = received.task
                if body.get("id") == task_id:
                    out.append(body)
        return out

    async def wait_hook(self, task_id: str, status: str, within: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for body in self.hooks_for(task_id):
                if body.get("status") == status:
                    return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {status} hook for {task_id} within {within}s: {self.hooks_for(task_id)}")


def button_ids(task: dict[str, Any]) -> list[str]:
    return [b.get("customId", "") for b in task.get("buttons") or []]


def find_button(task: dict[str, Any], prefix: str) -> str:
    for custom_id in button_ids(task):
        if custom_id.startswith(prefix):
            return custom_id
    raise AssertionError(f"no button starting {prefix!r} in {button_ids(task)}")


def pin(account: str) -> dict[str, Any]:
    """The body part that pins a task to one account."""
    return {"accountFilter": {"instanceId": account}}


async def submit(stack: Stack, path: str, body: dict[str, Any], *, expect: tuple[int, ...] = (1, 22)) -> str:
    """Submit with the stack's hook receiver; the reply's code must be one of `expect`."""
    reply = await stack.post(path, {"notifyHook": stack.hook_url(), **body})
    assert reply["code"] in expect, reply
    return str(reply["result"])


async def run(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit and wait for SUCCESS (and its hook)."""
    task_id = await submit(stack, path, body)
    task = await stack.wait_task(task_id)
    assert task["status"] == "SUCCESS", task
    await stack.wait_hook(task_id, "SUCCESS")
    return task


async def press(stack: Stack, parent: dict[str, Any], custom_id: str) -> dict[str, Any]:
    """Press a button of `parent` and wait for the child's SUCCESS."""
    return await run(stack, "/mj/submit/action", {"taskId": parent["id"], "customId": custom_id})
