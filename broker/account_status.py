"""An account's live status, and the facts other processes report about it.

One owner: the bridge that holds the account (`discord_bridge.health`) alone decides and writes its
status, the hash `keys.account_status(id)` {state, reason, bridge, updated_ms, until_ms}
(`until_ms`: when a RATE_LIMITED or timed PAUSED state lifts, 0 if it does not by itself). Web reads it to
choose accounts and to show them. The workers, which parse the bots' messages, do not decide what a
message means for the account: they report what the bot said as an `AccountFact` on the account's
fact list (`keys.account_facts(id)`), and the health module turns facts into a status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import msgspec
import redis.asyncio as aioredis

from broker import keys

__all__ = ["AccountFact", "AccountState", "decode_fact", "limited_until", "report_fact", "usable"]

#: facts kept per account while no bridge reads them (a bridge that comes back reads the newest)
_FACTS_KEPT = 100
#: a fact nobody read for this long is stale (the account's session restarted meanwhile)
_FACTS_TTL_MS = 10 * 60_000


class AccountState(StrEnum):
    """What an account can do now."""

    #: a bridge holds the account and is connecting its session (or none holds it yet)
    CONNECTING = "CONNECTING"
    #: connected; tasks are sent
    ONLINE = "ONLINE"
    #: Discord answered 429 to an interaction: tasks keep their place and are sent when the
    #: `retry_after` is over (that wait does not count against their timeout)
    RATE_LIMITED = "RATE_LIMITED"
    #: Midjourney wants something from a human (captcha, notice, no hours) or its queue is full;
    #: nothing is sent until it clears
    PAUSED = "PAUSED"
    #: the token, the subscription or the account itself is unusable; fix config.yaml / the account
    DISABLED = "DISABLED"


_UNUSABLE = frozenset({AccountState.PAUSED.value, AccountState.DISABLED.value})


def usable(state: bytes | str | None) -> bool:
    """Whether admission may choose an account whose status hash says `state` (none yet: yes)."""
    if state is None:
        return True
    text = state.decode() if isinstance(state, bytes) else state
    return text.upper() not in _UNUSABLE


def limited_until(fields: list[bytes | None]) -> int:
    """Epoch ms until which an account is rate limited, from its status hash's [state, until_ms]
    (0 when it is not)."""
    state, until = [*fields, None, None][:2]
    if state != AccountState.RATE_LIMITED.value.encode() or not until:
        return 0
    try:
        return int(until)
    except ValueError:
        return 0


class AccountFact(msgspec.Struct, frozen=True, kw_only=True):
    """Something a bot told an account, as the worker's parser read it."""

    #: "notice": an error or notice embed (its title says what); "captcha": the captcha modal
    kind: Literal["notice", "captcha"]
    title: str
    description: str = ""
    #: the task the message was about, when one matched
    task_id: str | None = None
    #: epoch ms when the bridge received the event
    at_ms: int


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(AccountFact).decode


async def report_fact(redis: aioredis.Redis, account_id: str, fact: AccountFact) -> None:
    """Hand `fact` to the health module of the bridge holding the account (one round trip)."""
    key = keys.account_facts(account_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(key, _encode(fact))
        pipe.ltrim(key, -_FACTS_KEPT, -1)
        pipe.pexpire(key, _FACTS_TTL_MS)
        await pipe.execute()


def decode_fact(raw: bytes) -> AccountFact | None:
    """The fact in a list entry, or None for an entry that is not one."""
    try:
        return _decode(raw)
    except msgspec.DecodeError:
        return None
