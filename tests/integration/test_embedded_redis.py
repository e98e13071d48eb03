"""The embedded Valkey: a password per checkout, durable acknowledgements, and its supervisor."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from redis.exceptions import AuthenticationError, RedisError

from broker.config import RedisSettings, load_settings
from broker.models import Task, TaskAction
from broker.redis_client import NotDurable, RedisRefused, connect, preflight
from broker.redis_server import EmbeddedRedis, free_port
from broker.store import TaskStore

ROOT = Path(__file__).resolve().parents[2]


def _config(path: Path, *, port: int, data_dir: Path) -> Path:
    """A checkout's config.yaml: the embedded server on `port`, its data (and password) in `data_dir`."""
    path.write_text(yaml.safe_dump({"redis": {"url": "", "embedded_port": port, "data_dir": str(data_dir)}}))
    return path


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(port=free_port(), data_dir=tmp_path / "checkout-a" / "redis")
    server.start()
    yield server
    server.stop()


async def test_the_password_is_kept_private_and_every_process_of_the_checkout_reads_it(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    password_file = own_server.data_dir / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((own_server.data_dir / "valkey.conf").stat().st_mode) == 0o600
    settings = load_settings(_config(tmp_path / "a.yaml", port=own_server.port, data_dir=own_server.data_dir))
    assert own_server.password in settings.secrets()
    client = connect(settings.redis_url, settings.redis)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_the_password_is_not_on_the_servers_command_line(own_server: EmbeddedRedis) -> None:
    # `ps` shows every process's command line to every user of the host
    assert own_server.process is not None
    cmdline = Path(f"/proc/{own_server.process.pid}/cmdline").read_bytes()
    assert own_server.password.encode() not in cmdline
    assert b"requirepass" not in cmdline


async def test_a_client_without_the_password_is_refused(own_server: EmbeddedRedis) -> None:
    client = connect(f"redis://127.0.0.1:{own_server.port}/0")
    try:
        with pytest.raises(AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


def test_a_worker_started_with_another_checkouts_config_is_refused(
    own_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # Checkout B: same port (a worker left running from it), its own data dir and so its own password.
    other = _config(tmp_path / "b.yaml", port=own_server.port, data_dir=tmp_path / "checkout-b" / "redis")
    env = {**os.environ, "MJBROKER_CONFIG": str(other)}
    done = subprocess.run(
        [sys.executable, "-m", "workers"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "refused this process's password" in done.stderr, done.stderr[-2000:]
    assert "checkout-b" in done.stderr  # says which password file it used
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert own_server.password not in done.stderr + done.stdout


async def test_preflight_refuses_local_durability_on_a_server_without_appendonly(
    own_server: EmbeddedRedis,
) -> None:
    client = connect(own_server.url)
    try:
        await client.config_set("appendonly", "no")
        with pytest.raises(RedisRefused, match="appendonly off"):
            await preflight(client, RedisSettings(durability="local"))
        # and a durable write fails instead of being acknowledged as durable
        store = TaskStore(client, retention_seconds=60)
        with pytest.raises(NotDurable):
            await store.create(Task(id="1", action=TaskAction.IMAGINE, prompt="p"), durable=True)
        none = connect(own_server.url, RedisSettings(durability="none"))
        try:
            await preflight(none, RedisSettings(durability="none"))
        finally:
            await none.aclose()
    finally:
        await client.aclose()


def test_the_supervisor_restarts_valkey_when_it_dies(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "redis"
    config = _config(tmp_path / "config.yaml", port=port, data_dir=data_dir)
    log_path = tmp_path / "supervisor.log"
    log = log_path.open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "broker.redis_server"],
        cwd=ROOT,
        env={**os.environ, "MJBROKER_CONFIG": str(config)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    client = redis.Redis.from_url(load_settings(config).redis_url)
    try:
        # the pid the supervisor watches (it says so once the server answers it)
        (first,) = _log_lines(log_path, r"listening on .* \(pid (\d+)\)", count=1)
        assert _server_pid(client, within=20) == int(first)
        client.set("kept", "1")
        os.kill(int(first), signal.SIGKILL)
        _log_lines(log_path, r"embedded Valkey exited \(code -9\); restart #(\d+) in", count=1)
        second = _server_pid(client, within=20, other_than=int(first))
        assert client.get("kept") == b"1"  # back from its AOF
        assert supervisor.poll() is None
    finally:
        client.close()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(15) == 0
    with pytest.raises(ProcessLookupError):  # the supervisor stopped its server too
        os.kill(second, 0)


def _log_lines(path: Path, pattern: str, *, count: int, within: float = 20) -> list[str]:
    """The first group of the first `count` matches of `pattern` in the log, once there are that many."""
    deadline = time.monotonic() + within
    while True:
        found = re.findall(pattern, path.read_text())
        if len(found) >= count:
            return list(found[:count])
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


def _server_pid(client: redis.Redis, *, within: float, other_than: int = 0) -> int:
    """The pid of the server answering `client`, once one other than `other_than` answers."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            pid = int(client.info("server")["process_id"])
            if pid != other_than:
                return pid
        except (RedisError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no server answered within {within}s")
