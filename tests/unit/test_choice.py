"""The pure half of the account choice rules (`broker.choice`): local time, sifting, ordering, reasons."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

from broker.account_status import AccountState
from broker.choice import Chooser, LocalTime, describe, local_time, no_account, order, sift
from broker.config import Account
from broker.eligibility import AccountFilter, candidates
from broker.models import BotType, SpeedMode


def _acct(account_id: str, **kw: object) -> Account:
    return Account(id=account_id, guild_id="1", channel_id=f"c-{account_id}", token="t", **kw)  # type: ignore[arg-type]


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _ids(accounts: list[Account]) -> list[str]:
    return [a.id for a in accounts]


def test_local_time_is_the_operators_day_and_minute() -> None:
    assert local_time(_ms("2026-03-01T14:59:00"), "UTC") == LocalTime(day="2026-03-01", minute=14 * 60 + 59)
    # Tokyo is UTC+9: 15:00 UTC is already the next day there
    assert local_time(_ms("2026-03-01T15:00:00"), "Asia/Tokyo") == LocalTime(day="2026-03-02", minute=0)
    # New York in summer is UTC-4 (the zone's rules, not a fixed offset)
    assert local_time(_ms("2026-07-01T03:30:00"), "America/New_York") == LocalTime(
        day="2026-06-30", minute=23 * 60 + 30
    )


def test_sift_drops_accounts_outside_work_hours_or_known_to_have_reached_their_limit() -> None:
    day = "2026-03-01"
    a1 = _acct("a1", work_hours="09:00-23:00")
    a2 = _acct("a2", daily_limit=50)
    a3 = _acct("a3", work_hours="22:00-06:00")
    at_5 = sift([a1, a2, a3], LocalTime(day=day, minute=5 * 60), frozenset({"a2"}))
    assert _ids(at_5.open) == ["a3"]
    assert at_5.refused == [
        "a1 is outside its work hours (09:00-23:00)",
        "a2 reached its daily limit (50)",
    ]
    at_noon = sift([a1, a2, a3], LocalTime(day=day, minute=12 * 60))
    assert _ids(at_noon.open) == ["a1", "a2"] and at_noon.refused == [
        "a3 is outside its work hours (22:00-06:00)"
    ]
    # the end minute is excluded
    assert _ids(sift([a1], LocalTime(day=day, minute=23 * 60)).open) == []


def test_a_reached_limit_is_remembered_for_that_day_only_and_forgotten_on_new_settings() -> None:
    chooser = Chooser()
    a1 = _acct("a1", daily_limit=5)
    chooser.reached(a1, "2026-03-01")
    assert chooser.sift([a1], LocalTime(day="2026-03-01", minute=0)).open == []
    assert _ids(chooser.sift([a1], LocalTime(day="2026-03-02", minute=0)).open) == ["a1"]
    chooser.forget()  # the limit may have been raised
    assert _ids(chooser.sift([a1], LocalTime(day="2026-03-01", minute=0)).open) == ["a1"]


def test_round_robin_rotates_each_candidate_set_on_its_own() -> None:
    chooser = Chooser()
    three = [_acct("a1"), _acct("a2"), _acct("a3")]
    two = three[:2]
    firsts = []
    for _ in range(6):
        firsts.append(chooser.order(three, "round_robin")[0].id)
        chooser.order(two, "round_robin")  # another filter's requests in between do not skew it
    assert firsts == ["a1", "a2", "a3", "a1", "a2", "a3"]
    assert _ids(order(three, "round_robin", rng=random.Random(), turn=4)) == ["a2", "a3", "a1"]


def test_weight_draws_the_first_in_proportion_and_weight_zero_last() -> None:
    rng = random.Random(7)
    accounts = [_acct("a1", weight=1), _acct("a2", weight=3), _acct("a0", weight=0)]
    firsts = Counter(order(accounts, "weight", rng=rng)[0].id for _ in range(4000))
    assert firsts["a0"] == 0
    assert abs(firsts["a2"] / 4000 - 0.75) < 0.03
    # the whole order is a permutation, the zero weight at its end
    assert all(order(accounts, "weight", rng=rng)[-1].id == "a0" for _ in range(100))


def test_random_is_a_shuffle_and_least_busy_keeps_the_order_for_the_load_sort() -> None:
    accounts = [_acct(f"a{n}") for n in range(5)]
    shuffled = order(accounts, "random", rng=random.Random(1))
    assert sorted(_ids(shuffled)) == _ids(accounts) and _ids(shuffled) != _ids(accounts)
    assert order(accounts, "least_busy", rng=random.Random(1)) == accounts


def test_pick_says_which_accounts_are_paused() -> None:
    picked = Chooser().pick(
        [_acct("a1"), _acct("a2")], [AccountState.PAUSED.encode(), None], None, "least_busy"
    )
    assert _ids(picked.open) == ["a2"] and picked.refused == ["a1 is PAUSED"]


def test_no_account_names_each_accounts_reason() -> None:
    accounts = [
        _acct("a1", enabled=False),
        _acct("a2", bots=(BotType.MID_JOURNEY,)),
        _acct("a3"),
        _acct("a4", modes=(SpeedMode.FAST,), remix=True),
        _acct("a5", daily_limit=50, remix=True),
    ]
    error = no_account(
        accounts,
        candidates,
        BotType.NIJI_JOURNEY,
        AccountFilter(remix=True),
        [SpeedMode.RELAX],
        ["a5 reached its daily limit (50)"],  # a5 fits; the admission refused it
    )
    assert error.code == 3
    assert error.message == (
        "no usable account for NIJI_JOURNEY in mode RELAX: a1 is disabled, a2 does not run NIJI_JOURNEY, "
        "a3 does not match the accountFilter, a4 has no RELAX mode, a5 reached its daily limit (50)"
    )


def test_describe_lists_ten_reasons_at_most() -> None:
    assert describe("none", []) == "none: no account is configured"
    text = describe("none", [f"a{n} is PAUSED" for n in range(13)])
    assert text.endswith("a9 is PAUSED and 3 more") and "a10" not in text
