"""Account health: the live status hash, and what the bots' notices mean for the account.

`keys.account_status(account)` is a hash {state, reason, bridge, updated_ms} written by the bridge
that holds the account; web shows it in `/mj/account/*` and admission skips accounts that are not
ONLINE. `classify` is pure: a forwarded dispatch -> a `Verdict` (or None when it says nothing about
the account). A verdict pauses or disables the account and fails its tasks with a reason the user
can act on; a "Queue full" pauses it briefly and leaves its queued tasks waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec
import redis.asyncio as aioredis

from broker import keys
from broker.models import Task, TaskStatus
from broker.store import InvalidTransition, TaskStore
from discord_bridge.forwarder import is_bot_message

__all__ = ["AccountHealth", "AccountState", "Verdict", "classify"]

log = logging.getLogger(__name__)


class AccountState(StrEnum):
    #: the bridge holds the account and is connecting its session
    CONNECTING = "CONNECTING"
    #: connected; tasks are sent
    ONLINE = "ONLINE"
    #: Midjourney wants something from a human (captcha, queue full); nothing is sent until it clears
    PAUSED = "PAUSED"
    #: the token, the subscription or the account itself is unusable; fix config.yaml / the account
    DISABLED = "DISABLED"


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    state: AccountState
    reason: str
    #: fail the account's unfinished tasks (running and queued)
    fail_tasks: bool = True
    #: seconds after which a pause lifts by itself (0 = stays until an operator acts)
    pause_seconds: float = 0.0


def _titles(d: dict[str, Any]) -> list[str]:
    return [str(e.get("title") or "") for e in d.get("embeds") or [] if isinstance(e, dict)]


def classify(t: str, d: Any, *, account_id: str = "") -> Verdict | None:
    """What a dispatch says about the account's health (pure)."""
    if not isinstance(d, dict):
        return None
    who = f'account "{account_id}"' if account_id else "the account"
    if t == "INTERACTION_IFRAME_MODAL_CREATE":
        title = str(d.get("title") or "")
        if "action required" in title.lower() or "/captcha/" in str(d.get("iframe_path") or ""):
            return Verdict(
                state=AccountState.PAUSED,
                reason=(
                    f"Midjourney asks {who} for a captcha ('{title or 'Action required to continue'}'): "
                    "log in to Discord with it, run any command and solve the check, then re-enable it"
                ),
            )
        return None
    if t not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or not is_bot_message(d):
        return None
    for title in _titles(d):
        lowered = title.lower()
        if lowered.startswith("action needed"):
            return Verdict(
                state=AccountState.PAUSED,
                reason=(
                    f"Midjourney paused {who} ('{title}'): open Discord with it, acknowledge the "
                    "moderation notice, then re-enable it"
                ),
            )
        if (
            lowered in ("blocked", "banned")
            or "pending mod message" in lowered
            or "account banned" in lowered
        ):
            return Verdict(
                state=AccountState.DISABLED,
                reason=f"Midjourney blocked {who} ('{title}'): it cannot run jobs any more; use another one",
            )
        if lowered.startswith("subscription") or "plan cancelled" in lowered:
            return Verdict(
                state=AccountState.DISABLED,
                reason=(
                    f"Midjourney says '{title}' for {who}: renew the plan at "
                    "https://www.midjourney.com/account, then re-enable the account"
                ),
            )
        if lowered.startswith("credits exhausted"):
            return Verdict(
                state=AccountState.PAUSED,
                reason=f"{who} has no fast hours left ('{title}'): buy more or switch it to relax mode",
            )
        if lowered.startswith("queue full"):
            return Verdict(
                state=AccountState.PAUSED,
                reason=f"Midjourney's queue for {who} is full; new jobs wait until it drains",
                fail_tasks=False,
                pause_seconds=15.0,
            )
    return None


class AccountHealth:
    """Writes one account's status and applies verdicts to its tasks.

    :param redis: Redis client.
    :param store: task store (failing tasks goes through it).
    :param account_id: the account.
    :param bridge_id: this bridge process, recorded in the status.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        store: TaskStore,
        account_id: str,
        *,
        bridge_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.store = store
        self.account_id = account_id
        self.bridge_id = bridge_id
        self.clock = clock
        self.state = AccountState.CONNECTING
        self.reason = ""
        self.paused_until: float | None = None

    @property
    def sending(self) -> bool:
        """Whether tasks may be sent now (lifts a timed pause when it is over)."""
        if (
            self.state == AccountState.PAUSED
            and self.paused_until is not None
            and self.clock() >= self.paused_until
        ):
            self.state = AccountState.ONLINE
            self.paused_until = None
            self.reason = ""
        return self.state == AccountState.ONLINE

    async def set(self, state: AccountState, reason: str = "", *, pause_seconds: float = 0.0) -> None:
        self.state = state
        self.reason = reason
        self.paused_until = self.clock() + pause_seconds if pause_seconds > 0 else None
        await self.write()

    async def write(self) -> None:
        if (
            self.state == AccountState.PAUSED
            and self.paused_until is not None
            and self.clock() >= self.paused_until
        ):
            self.state, self.reason, self.paused_until = AccountState.ONLINE, "", None
        await self.redis.hset(
            keys.account_status(self.account_id),
            mapping={
                "state": self.state.value,
                "reason": self.reason,
                "bridge": self.bridge_id,
                "updated_ms": int(self.clock() * 1000),
            },
        )

    async def apply(self, verdict: Verdict) -> int:
        """Pause or disable the account per `verdict`; returns how many tasks were failed."""
        log.warning("account %s -> %s: %s", self.account_id, verdict.state, verdict.reason)
        await self.set(verdict.state, verdict.reason, pause_seconds=verdict.pause_seconds)
        if not verdict.fail_tasks:
            return 0
        return await self.fail_unfinished(verdict.reason)

    async def fail_unfinished(self, reason: str) -> int:
        """FAILURE for every unfinished task of the account: running ones and queued ones."""
        ids = [task_id for task_id, _ in await self.store.running(self.account_id)]
        ids += await self.store.waiting(self.account_id)
        failed = 0
        for task_id in ids:
            if await fail_task(self.store, task_id, reason, clock=self.clock):
                failed += 1
        return failed


async def fail_task(
    store: TaskStore, task_id: str, reason: str, *, clock: Callable[[], float] = time.time
) -> bool:
    """Move a task to FAILURE with `reason` unless it is finished already; True when it moved."""
    now = int(clock() * 1000)

    def mutate(task: Task) -> Task | None:
        if task.status.is_terminal or task.status == TaskStatus.MODAL:
            return None
        return msgspec.structs.replace(task, status=TaskStatus.FAILURE, fail_reason=reason, finish_time=now)

    try:
        update = await store.update(task_id, mutate)
    except InvalidTransition:
        return False
    return update.changed
