"""Test support for the worker: a real hook receiver, running workers, bridge-like tasks and events."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
import yaml
from aiohttp.abc import AbstractResolver, ResolveResult

from broker.admission import create_and_admit
from broker.clock import now_ms
from broker.config import Account, HookSettings, Settings, TaskSettings, parse_settings
from broker.events import GatewayEvent, publish
from broker.ids import IdSource
from broker.models import ReturnCode, Task, TaskAction, TaskProperties
from broker.queues import AccountQueues
from broker.shutdown import cancel_and_wait
from broker.store import TaskStore
from discord_bridge.consumer import claim
from discord_bridge.payloads import new_nonce
from workers.main import WorkerRuntime, create_worker

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "mj-events.jsonl"
MJ_BOT = {"id": "936929561302675456", "username": "Midjourney Bot", "bot": True}
CHANNEL = "1200000000000000001"
#: the worker heartbeat the session's `redis` fixture writes for tests of the web alone
STAND_IN_WORKER = "tests-stand-in"
USER = "1012345678901234567"

_ids = itertools.count(int(time.time() * 1000) * 1000)
_seq = itertools.count(1)
#: task ids as web draws them, one source for every helper of the process (so none repeats)
new_task_id = IdSource()


def snowflake() -> str:
    """A Discord-side id (message, attachment, interaction)."""
    return str(next(_ids))


# ---------------------------------------------------------------- hook receiver


class Received(msgspec.Struct, kw_only=True):
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def task(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def version(self) -> int:
        return int(self.headers["x-mjbroker-task-version"])


class HookReceiver:
    """A tiny HTTP/1.1 server on loopback that records POSTs; per path mode "ok", "fail", "hang" or
    "redirect <url>"."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts: dict[str, int] = {}
        self.modes: dict[str, str] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._handlers: set[asyncio.Task[None]] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    @property
    def address(self) -> str:
        """This receiver as a ``url_guard.allow`` entry: it listens on loopback."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def for_path(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._handlers.add(me)  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                path = target.lstrip("/")
                async with self._changed:
                    self.attempts[path] = self.attempts.get(path, 0) + 1
                    self._changed.notify_all()
                mode = self.modes.get(path, "ok")
                if mode == "hang":
                    await asyncio.sleep(3600)
                if mode.startswith("redirect "):  # "redirect <url>": a 302 there, nothing recorded
                    location = mode.split(" ", 1)[1].encode()
                    head = b"HTTP/1.1 302 Found\r\nLocation: " + location
                    writer.write(head + b"\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                status = b"500 Internal Server Error" if mode == "fail" else b"200 OK"
                if mode == "ok":
                    async with self._changed:
                        self.received.append(Received(path=path, headers=headers, body=body, at=time.time()))
                        self._changed.notify_all()
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections; ending quietly keeps asyncio's stream callback from
            # logging the cancellation as an error.
            pass
        finally:
            self._handlers.discard(me)  # type: ignore[arg-type]
            writer.close()


class FixedDns(AbstractResolver):
    """Answers each name with the addresses given for it, in that order, every time it is asked (as a
    rebinding DNS would, or getaddrinfo putting ::1 first); counts the lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [
            ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------- settings and workers


def make_settings(
    redis_url: str,
    tmp_path: Path,
    *,
    hooks: HookSettings | None = None,
    accounts: tuple[Account, ...] | None = None,
    sweep_seconds: float = 5.0,
    allow: tuple[str, ...] = (),
) -> Settings:
    """Worker settings; `allow` is ``url_guard.allow`` (a loopback hook receiver must be listed)."""
    base = parse_settings({"redis": {"url": redis_url}, "url_guard": {"allow": list(allow)}}, {})
    return msgspec.structs.replace(
        base,
        hooks=hooks or HookSettings(request_timeout_seconds=2.0),
        tasks=TaskSettings(ledger_path=str(tmp_path / "ledger.db"), sweep_seconds=sweep_seconds),
        accounts=accounts or (Account(id="a1", guild_id="g", channel_id=CHANNEL, token="t"),),
    )


def settings_yaml(settings: Settings) -> str:
    return yaml.safe_dump(msgspec.to_builtins(settings))


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, *, claim_idle_seconds: float = 30.0
) -> AsyncIterator[WorkerRuntime]:
    """The worker the CLI runs, in-process; yields its runtime once the loops run."""
    worker = create_worker(settings, handle_signals=False, claim_idle_seconds=claim_idle_seconds)
    runtime = worker.runtime
    main = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while not runtime._tasks:
                if main.done():
                    main.result()
                await asyncio.sleep(0.01)
        yield runtime
    finally:
        worker.stop()
        done, _ = await asyncio.wait({main}, timeout=20)
        if not done:
            stacks = task_stacks()
            await cancel_and_wait(main)  # rather than left running into the tests that follow
            raise AssertionError(f"the worker did not stop within 20 s:\n{stacks}")
        main.result()  # a worker that crashed fails the test


def task_stacks() -> str:
    """Where every task of the loop waits (for a test that would otherwise hang without a word):
    each task's whole chain of awaits, down to the innermost coroutine (`Task.print_stack` shows
    only the outermost frame of a suspended task)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        state = "cancelling" if task.cancelling() else "pending"
        out.write(f"{state} {task.get_name()}:\n")
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                out.write(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}\n")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return out.getvalue()


async def start_worker_process(
    config_path: Path, *, claim_idle_seconds: float = 1.0
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers",
        "--config",
        str(config_path),
        "--claim-idle-seconds",
        str(claim_idle_seconds),
        "--log-level",
        "WARNING",
        cwd=str(ROOT),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


# ---------------------------------------------------------------- tasks as web + bridge make them


async def submitted_task(
    store: TaskStore,
    *,
    prompt: str | None,
    account: str = "a1",
    action: TaskAction = TaskAction.IMAGINE,
    hook: str | None = None,
    parent_id: str | None = None,
    index: int | None = None,
    core_size: int = 50,
    submit: bool = True,
) -> tuple[Task, str]:
    """Create and admit a task as web does, then claim and 'send' it as the bridge does.

    Returns the task and its nonce (drawn as the bridge draws it, and indexed by its claim).
    """
    now = now_ms()
    task = Task(
        id=new_task_id(),
        action=action,
        prompt=prompt,
        prompt_en=prompt,
        submit_time=now,
        instance_id=account,
        parent_id=parent_id,
        properties=TaskProperties(notify_hook=hook, index=index),
    )
    queues = AccountQueues(store.redis)
    task, admission = await create_and_admit(
        store, queues, task, account, core_size=core_size, queue_size=100
    )
    assert admission.code in (ReturnCode.SUCCESS, ReturnCode.IN_QUEUE)
    nonce = new_nonce()
    if submit:
        task = await bridge_submit(store, task, nonce)
    return task, nonce


async def bridge_submit(store: TaskStore, task: Task, nonce: str) -> Task:
    """Claim `task` for sending with `nonce`, with the bridge's own claim."""
    claimed = await claim(store, task, nonce=nonce, account_id=task.instance_id or "a1", now=now_ms())
    assert claimed is not None, f"task {task.id} could not be claimed"
    return claimed


async def wait_task(
    store: TaskStore, task_id: str, predicate: Callable[[Task], bool], within: float = 10.0
) -> Task:
    async with asyncio.timeout(within):
        while True:
            task = await store.get(task_id)
            if task is not None and predicate(task):
                return task
            await asyncio.sleep(0.01)


async def wait_final(store: TaskStore, task_id: str, within: float = 10.0) -> Task:
    return await wait_task(store, task_id, lambda t: t.status.is_terminal, within)


# ---------------------------------------------------------------- events as the bridge publishes them


async def push(redis: aioredis.Redis, t: str, d: dict[str, Any], *, account: str = "a1") -> str:
    event = GatewayEvent(
        account=account, seq=next(_seq), t=t, d=json.dumps(d).encode(), at=int(time.time() * 1000)
    )
    return await publish(redis, event)


def fixture(case_id: str, **rewrite: Any) -> dict[str, Any]:
    """The `d` of a recorded case, with the given top-level keys replaced (ids, nonce, channel...)."""
    for line in FIXTURES.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        if case["id"] == case_id:
            d: dict[str, Any] = copy.deepcopy(case["d"])
            d.update({"channel_id": CHANNEL, **rewrite})
            return d
    raise KeyError(case_id)


def message(
    content: str,
    *,
    id: str | None = None,
    nonce: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    components: list[dict[str, Any]] | None = None,
    embeds: list[dict[str, Any]] | None = None,
    reference: str | None = None,
    interaction: dict[str, Any] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": id or snowflake(),
        "channel_id": CHANNEL,
        "type": 19 if reference else 0,
        "author": MJ_BOT,
        "content": content,
        "attachments": attachments or [],
        "components": components or [],
        "embeds": embeds or [],
        "flags": 0,
    }
    if nonce:
        d["nonce"] = nonce
    if reference:
        d["message_reference"] = {"message_id": reference, "channel_id": CHANNEL}
    if interaction:
        d["interaction_metadata"] = interaction
        d["interaction"] = interaction
    return d


def image(msg_id: str, name: str) -> list[dict[str, Any]]:
    url = f"https://cdn.discordapp.com/attachments/{CHANNEL}/{msg_id}/{name}?ex=1&is=2&hm=3&"
    return [{"id": snowflake(), "filename": name, "url": url, "content_type": "image/png"}]


def grid_buttons(job: str) -> list[dict[str, Any]]:
    row1 = [
        {"type": 2, "style": 2, "label": f"U{i}", "custom_id": f"MJ::JOB::upsample::{i}::{job}"}
        for i in range(1, 5)
    ]
    row1.append(
        {"type": 2, "style": 2, "emoji": {"name": "🔄"}, "custom_id": f"MJ::JOB::reroll::0::{job}::SOLO"}
    )
    row2 = [
        {"type": 2, "style": 2, "label": f"V{i}", "custom_id": f"MJ::JOB::variation::{i}::{job}"}
        for i in range(1, 5)
    ]
    return [{"type": 1, "components": row1}, {"type": 1, "components": row2}]


def imagine_events(
    prompt: str, nonce: str, job: str, *, start_id: str, final_id: str
) -> list[tuple[str, dict[str, Any]]]:
    """start -> 3 progress edits -> delete -> final grid, as Midjourney sends them for /imagine."""
    mention = f"<@{USER}>"
    events: list[tuple[str, dict[str, Any]]] = [
        ("MESSAGE_CREATE", message(f"**{prompt}** - {mention} (Waiting to start)", id=start_id, nonce=nonce))
    ]
    for pct in (15, 46, 93):
        events.append(
            (
                "MESSAGE_UPDATE",
                message(
                    f"**{prompt}** - {mention} ({pct}%) (fast)",
                    id=start_id,
                    attachments=image(start_id, f"{job}_grid_0.webp"),
                ),
            )
        )
    events.append(("MESSAGE_DELETE", {"id": start_id, "channel_id": CHANNEL}))
    events.append(
        (
            "MESSAGE_CREATE",
            message(
                f"**{prompt}** - {mention} (fast)",
                id=final_id,
                attachments=image(final_id, f"user_{prompt.split()[0]}_{job}.png"),
                components=grid_buttons(job),
            ),
        )
    )
    return events
