"""Which accounts may take a new task now, and in what order they are tried (`accounts.choice`).

The pure half of the rules, no I/O: `sift` drops the accounts outside their `work_hours` and those
known to have reached their `daily_limit` today, saying why; `order` arranges the rest by the rule.
The daily count itself is checked and bumped inside the admission script (`broker.queues`), so two
webs cannot both take an account's last task of the day; a refusal there is remembered here
(`Chooser.reached`) so the next submits of the day skip that account without a round trip.

Rules (the preferred speed mode still comes first: `broker.admission.order_by_load` regroups):

- `least_busy`: fewest running + waiting first (the loads are read by the caller);
- `weight`: a weighted shuffle, so the first account is drawn in proportion to `weight` and the
  next ones are tried, in the same kind of draw, when it is full; weight 0 = only when all else is;
- `random`: a uniform shuffle;
- `round_robin`: each account in turn. The turn is kept per web process, not shared through Redis:
  a shared counter would be one more round trip per submit (whose only ones now are the record
  write and the admission script, the account loads and statuses being cached), and with N
  processes each rotating evenly the sum stays even within N tasks.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

import msgspec

from broker.account_status import usable
from broker.config import Account, AccountChoice
from broker.errors import NoAccount
from broker.models import BotType, SpeedMode
from broker.work_hours import WorkHours, parse_work_hours, within

if TYPE_CHECKING:
    from broker.eligibility import AccountFilter

__all__ = [
    "Candidates",
    "Chooser",
    "Fits",
    "LocalTime",
    "Sifted",
    "describe",
    "limit_reason",
    "local_time",
    "no_account",
    "order",
    "sift",
    "why_not",
]

#: reasons listed in one description at most (the rest are counted)
MAX_REASONS = 10
#: candidate sets whose round-robin turn is kept; past it they start again (filters can make many)
MAX_TURNS = 1024


class LocalTime(msgspec.Struct, frozen=True):
    """The operator's wall clock: the day of the daily counts and the minute of the work hours."""

    #: `YYYY-MM-DD`
    day: str
    #: 0..1439
    minute: int


def local_time(now_ms: int, timezone: str) -> LocalTime:
    """`now_ms` in `timezone` (an IANA name, checked by `broker.config`)."""
    moment = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone))
    return LocalTime(day=moment.date().isoformat(), minute=moment.hour * 60 + moment.minute)


@functools.lru_cache(maxsize=256)
def _spans(text: str) -> WorkHours:
    # checked at config load, so it parses; cached since every submit asks
    return parse_work_hours(text)


def closed_reason(account: Account, now: LocalTime, *, reached: bool) -> str | None:
    """Why the account takes no new task at `now` (`reached`: its limit was met today), or None."""
    if account.work_hours and not within(_spans(account.work_hours), now.minute):
        return f"{account.id} is outside its work hours ({account.work_hours})"
    if account.daily_limit and reached:
        return limit_reason(account)
    return None


def limit_reason(account: Account) -> str:
    return f"{account.id} reached its daily limit ({account.daily_limit})"


class Sifted(msgspec.Struct, frozen=True):
    """The accounts open now, in their given order, and a reason for each one closed."""

    open: list[Account]
    refused: list[str]


def sift(accounts: Sequence[Account], now: LocalTime, reached: frozenset[str] = frozenset()) -> Sifted:
    """Drop the accounts outside their work hours and those in `reached` (their limit met today)."""
    open_: list[Account] = []
    refused: list[str] = []
    for account in accounts:
        reason = closed_reason(account, now, reached=account.id in reached)
        if reason is None:
            open_.append(account)
        else:
            refused.append(reason)
    return Sifted(open_, refused)


def order(
    accounts: Sequence[Account], rule: AccountChoice, *, rng: random.Random, turn: int = 0
) -> list[Account]:
    """`accounts` in the order the rule tries them; `least_busy` keeps them (the loads sort later)."""
    out = list(accounts)
    if rule == "weight":
        # Efraimidis-Spirakis: key u^(1/w) (here log u / w), largest first; P(first) = w / sum(w)
        keys = {a.id: _weighted_key(rng, a.weight) for a in out}
        out.sort(key=lambda a: keys[a.id], reverse=True)
    elif rule == "random":
        rng.shuffle(out)
    elif rule == "round_robin" and out:
        start = turn % len(out)
        out = out[start:] + out[:start]
    return out


def _weighted_key(rng: random.Random, weight: int) -> float:
    if weight <= 0:
        return -math.inf
    return math.log(1.0 - rng.random()) / weight  # 1 - random() is in (0, 1]: log is finite


#: whether `broker.admission.candidates` keeps an account (with the request's filter?, modes?)
Fits = Callable[[Account, bool, bool], bool]


def why_not(account: Account, fits: Fits, bot_type: BotType, modes: Sequence[SpeedMode]) -> str | None:
    """Why `candidates` leaves the account out (None: it does not), asked step by step, so its
    rules stay written once."""
    if fits(account, True, True):
        return None
    if not account.enabled:
        return f"{account.id} is disabled"
    if not fits(account, False, False):
        return f"{account.id} does not run {bot_type}"
    if not fits(account, True, False):
        return f"{account.id} does not match the accountFilter"
    return f"{account.id} has no {'/'.join(modes)} mode"


class Candidates(Protocol):
    """`broker.admission.candidates`: the accounts that may take a task of the bot, filter, modes."""

    def __call__(
        self,
        accounts: Sequence[Account],
        *,
        bot_type: BotType,
        account_filter: AccountFilter | None,
        modes: Sequence[SpeedMode],
    ) -> list[Account]: ...


def no_account(
    accounts: Sequence[Account],
    candidates: Candidates,
    bot_type: BotType,
    account_filter: AccountFilter | None,
    modes: Sequence[SpeedMode],
    refused: Sequence[str],
) -> NoAccount:
    """Code 3 saying why each account may not take the task: those `candidates` leaves out, and
    the `refused` ones (paused, outside work hours, daily limit)."""

    def fits(account: Account, with_filter: bool, with_modes: bool) -> bool:
        flt, wanted = (account_filter if with_filter else None), (modes if with_modes else ())
        return bool(candidates([account], bot_type=bot_type, account_filter=flt, modes=wanted))

    reasons = [r for r in (why_not(a, fits, bot_type, modes) for a in accounts) if r] + list(refused)
    # in the config's order (each reason starts with its account's id, which has no space)
    place = {a.id: i for i, a in enumerate(accounts)}
    reasons.sort(key=lambda r: place.get(r.split(" ", 1)[0], len(place)))
    what = f"no usable account for {bot_type}" + (f" in mode {modes[0]}" if modes else "")
    return NoAccount(describe(what, reasons))


def describe(what: str, reasons: Sequence[str]) -> str:
    """`NoAccount`'s description: `what` and why each account was left out."""
    if not reasons:
        return f"{what}: no account is configured"
    shown = ", ".join(reasons[:MAX_REASONS])
    more = len(reasons) - MAX_REASONS
    return f"{what}: {shown}" + (f" and {more} more" if more > 0 else "")


class Chooser:
    """The per-process state of the rules: the random source, the round-robin turns, and the
    accounts this process saw refuse for their daily limit, by day.

    :param rng: the random source of `weight` and `random` (tests pass a seeded one).
    """

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._turns: dict[tuple[str, ...], int] = {}
        #: account id -> the day its limit was found reached
        self._reached: dict[str, str] = {}

    def forget(self) -> None:
        """New settings: a limit may have been raised."""
        self._reached.clear()

    def reached(self, account: Account, day: str) -> str:
        """The admission refused: the account's count met its limit on `day` (its reason is returned).

        The next submits of that day skip it without a round trip."""
        self._reached[account.id] = day
        return limit_reason(account)

    def sift(self, accounts: Sequence[Account], now: LocalTime) -> Sifted:
        reached = frozenset(a for a, day in self._reached.items() if day == now.day)
        return sift(accounts, now, reached)

    def pick(
        self,
        accounts: Sequence[Account],
        states: Sequence[bytes | None],
        now: LocalTime | None,
        rule: AccountChoice,
    ) -> Sifted:
        """Of the candidate `accounts` (with their live `states`), those usable and open `now`
        (None: none has work hours or a daily limit), in the rule's order; and why the others not."""
        refused = [
            f"{a.id} is {s.decode()}" for a, s in zip(accounts, states, strict=True) if s and not usable(s)
        ]
        kept = [a for a, s in zip(accounts, states, strict=True) if usable(s)]
        if now is not None:
            sifted = self.sift(kept, now)
            kept, refused = sifted.open, refused + sifted.refused
        return Sifted(self.order(kept, rule), refused)

    def order(self, accounts: Sequence[Account], rule: AccountChoice) -> list[Account]:
        turn = 0
        if rule == "round_robin":
            # a turn per candidate set: requests with different filters do not skew each other
            ids = tuple(a.id for a in accounts)
            if ids not in self._turns and len(self._turns) >= MAX_TURNS:
                self._turns.clear()
            turn = self._turns.get(ids, 0)
            self._turns[ids] = turn + 1
        return order(accounts, rule, rng=self.rng, turn=turn)
