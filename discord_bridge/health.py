"""Account health: the one writer of an account's live status, and what the bots' notices mean for it.

The bridge that holds an account keeps its state here and writes it to `keys.account_status`
(see `broker.account_status`); web shows it in `/mj/account/*` and admission skips accounts that are
PAUSED or DISABLED. A 429 from Discord makes the account RATE_LIMITED until its `retry_after` is
over: its tasks keep their place (the consumer sends them afterwards) and admission still queues
work for it. Facts come from two places: the bridge itself (connecting, a rejected token, a
session that stopped) and the workers, which parse the bots' messages and report what a bot said as
an `AccountFact`. `verdict_for` is the one rule that says what a fact means for the account: it
pauses or disables the account and fails its tasks with a reason the user can act on; a "Queue full"
pauses it briefly and leaves its queued tasks waiting. "Credits exhausted" (no fast hours left) on
an `auto_relax` account makes it "relax only" instead: still ONLINE, `relax_only` in its status
hash, admission sends it RELAX tasks only, the consumer fails the FAST/TURBO tasks it still holds,
and the runner switches it to /relax.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis

from broker import keys
from broker.account_status import AccountFact, AccountState
from broker.clock import Clock, now_ms
from broker.queues import AccountQueues
from broker.store import TaskStore

__all__ = ["RELAX_ONLY_REASON", "AccountHealth", "Verdict", "verdict_for"]

log = logging.getLogger(__name__)

#: the status reason of an account that used up its fast hours and serves RELAX tasks only
RELAX_ONLY_REASON = (
    "relax only: the fast hours are used up ('Credits exhausted'); the account switched itself to "
    "relax and runs RELAX tasks only until its bridge restarts"
)


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """What a fact does to the account."""

    state: AccountState
    reason: str
    #: fail the account's unfinished tasks (running and queued)
    fail_tasks: bool = True
    #: milliseconds after which a pause lifts by itself (0 = stays until an operator acts)
    pause_ms: int = 0
    #: the account's fast hours are used up and it relaxes by itself: it stays ONLINE for RELAX tasks
    relax_only: bool = False


def verdict_for(fact: AccountFact, *, account_id: str = "", auto_relax: bool = False) -> Verdict | None:
    """What `fact` means for the account, or None when it is about one task only (pure).

    :param auto_relax: the account's `auto_relax`: used-up fast hours make it relax only (the task
        that hit them fails through the worker; the account's other tasks are left alone).
    """
    who = f'account "{account_id}"' if account_id else "the account"
    title = fact.title.strip()
    lowered = title.lower()
    if fact.kind == "captcha":
        return Verdict(
            state=AccountState.PAUSED,
            reason=(
                f"Midjourney asks {who} for a captcha ('{title or 'Action required to continue'}'): "
                "log in to Discord with it, run any command and solve the check, then re-enable it"
            ),
        )
    if lowered.startswith("action needed"):
        return Verdict(
            state=AccountState.PAUSED,
            reason=(
                f"Midjourney paused {who} ('{title}'): open Discord with it, acknowledge the "
                "moderation notice, then re-enable it"
            ),
        )
    if lowered in ("blocked", "banned") or "pending mod message" in lowered or "account banned" in lowered:
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
    if lowered.startswith("credits exhausted") and auto_relax:
        return Verdict(
            state=AccountState.ONLINE,
            reason=RELAX_ONLY_REASON,
            fail_tasks=False,
            relax_only=True,
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
            pause_ms=15_000,
        )
    return None


class AccountHealth:
    """One account's status: kept here, written to Redis, applied to its tasks.

    :param redis: Redis client.
    :param store: task store (tasks fail through `TaskStore.fail`).
    :param queues: account queues (which tasks are unfinished).
    :param account_id: the account.
    :param bridge_id: this bridge process, recorded in the status.
    :param clock: epoch milliseconds.
    :param auto_relax: the account's `auto_relax` (see `verdict_for`).
    :param on_relax_only: called once when the account becomes relax only (switches it to /relax).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        store: TaskStore,
        queues: AccountQueues,
        account_id: str,
        *,
        bridge_id: str,
        clock: Clock = now_ms,
        auto_relax: bool = False,
        on_relax_only: Callable[[], None] | None = None,
    ) -> None:
        self.redis = redis
        self.auto_relax = auto_relax
        self.on_relax_only = on_relax_only
        #: fast hours used up: only RELAX tasks are sent (kept until this bridge lets the account go)
        self.relax_only = False
        self.store = store
        self.queues = queues
        self.account_id = account_id
        self.bridge_id = bridge_id
        self.clock = clock
        self.state = AccountState.CONNECTING
        self.reason = ""
        #: epoch ms when a timed pause or a rate limit lifts, else None
        self.paused_until: int | None = None

    def _lift_expired_pause(self) -> None:
        if (
            self.state in (AccountState.PAUSED, AccountState.RATE_LIMITED)
            and self.paused_until is not None
            and self.clock() >= self.paused_until
        ):
            self.state, self.reason, self.paused_until = AccountState.ONLINE, "", None

    def rate_limit_left_ms(self) -> int:
        """Milliseconds until a rate limit on the account is over (0 when it is not rate limited)."""
        self._lift_expired_pause()
        if self.state != AccountState.RATE_LIMITED or self.paused_until is None:
            return 0
        return max(0, self.paused_until - self.clock())

    async def rate_limited(self, until_ms: int, retry_after: float) -> None:
        """Discord answered 429 and asked for `retry_after` seconds: RATE_LIMITED until `until_ms`.

        Only an ONLINE (or already rate limited) account changes: a pause or a disable says more.
        """
        self._lift_expired_pause()
        if self.state == AccountState.RATE_LIMITED and (self.paused_until or 0) >= until_ms:
            return
        if self.state not in (AccountState.ONLINE, AccountState.RATE_LIMITED):
            return
        log.warning("account %s: rate limited by Discord for %.1f s", self.account_id, retry_after)
        self.state = AccountState.RATE_LIMITED
        self.reason = f"rate limited by Discord for {retry_after:.0f} s; tasks are sent after that"
        self.paused_until = until_ms
        await self.write()

    @property
    def sending(self) -> bool:
        """Whether tasks may be sent now (lifts a timed pause when it is over)."""
        self._lift_expired_pause()
        return self.state == AccountState.ONLINE

    async def set(self, state: AccountState, reason: str = "", *, pause_ms: int = 0) -> None:
        self.state = state
        self.reason = reason
        self.paused_until = self.clock() + pause_ms if pause_ms > 0 else None
        await self.write()

    async def online(self) -> None:
        """The session is up: ONLINE, unless a verdict paused or disabled the account meanwhile."""
        if self.state == AccountState.CONNECTING:
            await self.set(AccountState.ONLINE)

    async def write(self) -> None:
        """Write the status as it stands (also refreshes `updated_ms`, which says the bridge lives)."""
        self._lift_expired_pause()
        await self.redis.hset(
            keys.account_status(self.account_id),
            mapping={
                "state": self.state.value,
                # a pause or a disable says more than "relax only"
                "reason": self.reason or (RELAX_ONLY_REASON if self.relax_only else ""),
                "bridge": self.bridge_id,
                "updated_ms": self.clock(),
                "until_ms": self.paused_until or 0,
                "relax_only": int(self.relax_only),
            },
        )

    async def consider(self, fact: AccountFact) -> int:
        """Apply what a worker reported; returns how many tasks were failed."""
        verdict = verdict_for(fact, account_id=self.account_id, auto_relax=self.auto_relax)
        return 0 if verdict is None else await self.apply(verdict)

    async def apply(self, verdict: Verdict) -> int:
        """Pause or disable the account per `verdict`; returns how many tasks were failed."""
        log.warning("account %s -> %s: %s", self.account_id, verdict.state, verdict.reason)
        if verdict.relax_only:
            if self.relax_only:
                return 0
            self.relax_only = True
            if self.on_relax_only is not None:
                self.on_relax_only()
            await self.write()
            return 0
        await self.set(verdict.state, verdict.reason, pause_ms=verdict.pause_ms)
        if not verdict.fail_tasks:
            return 0
        return await self.fail_unfinished(verdict.reason)

    async def fail_unfinished(self, reason: str) -> int:
        """FAILURE for every unfinished task of the account: running ones and queued ones."""
        failed = 0
        for task_id in await self.queues.unfinished(self.account_id):
            if await self.store.fail(task_id, reason):
                failed += 1
        return failed
