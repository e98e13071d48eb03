"""Speed modes: the resolution order, the conflicts that are bad input, and the prompt flag."""

from __future__ import annotations

import pytest

from broker.account_status import AccountFact, AccountState
from broker.config import Account
from broker.errors import ValidationFailed
from broker.models import ReturnCode, SpeedMode
from broker.modes import (
    default_mode_of,
    mode_for,
    requested_modes,
    with_mode_flag,
    without_mode_flags,
)
from discord_bridge.health import verdict_for

F, R, T = SpeedMode.FAST, SpeedMode.RELAX, SpeedMode.TURBO


def _acct(**kw: object) -> Account:
    return Account(id="a", guild_id="1", channel_id="c", token="t", **kw)  # type: ignore[arg-type]


def test_prompt_flag_wins_over_filter_modes() -> None:
    assert requested_modes(None, [T, F], "a cat --relax") == [R]


def test_path_prefix_wins_over_filter_modes() -> None:
    assert requested_modes(R, [T, F], "a cat") == [R]


def test_prompt_flag_that_agrees_with_the_prefix_is_fine() -> None:
    assert requested_modes(R, None, "a cat --relax --v 6") == [R]
    assert requested_modes(T, None, "a cat --TURBO") == [T]


def test_filter_modes_keep_their_order_without_repeats() -> None:
    assert requested_modes(None, [T, F, T], "a cat") == [T, F]


def test_nothing_asked_leaves_it_to_the_account() -> None:
    assert requested_modes(None, None, "a cat") == []
    assert requested_modes(None, [], None) == []


def test_flag_contradicting_the_prefix_is_code_4() -> None:
    with pytest.raises(ValidationFailed, match=r"--fast.*RELAX") as err:
        requested_modes(R, None, "a cat --fast")
    assert err.value.code == ReturnCode.VALIDATION_ERROR


def test_two_different_flags_are_code_4() -> None:
    with pytest.raises(ValidationFailed, match="more than one speed mode"):
        requested_modes(None, None, "a cat --fast --relax")


def test_the_same_flag_twice_is_one_request() -> None:
    assert requested_modes(None, None, "a cat --relax --relax") == [R]


def test_flags_must_stand_alone() -> None:
    assert requested_modes(None, None, "a--fast cat --fastest") == []


def test_default_mode_is_fast_unless_configured() -> None:
    assert default_mode_of(_acct()) == F
    assert default_mode_of(_acct(default_mode=R)) == R


def test_default_mode_outside_the_account_modes_falls_back_to_its_first() -> None:
    assert default_mode_of(_acct(modes=(R,))) == R


def test_mode_for_takes_the_first_wanted_mode_the_account_offers() -> None:
    account = _acct(modes=(F, R))
    assert mode_for(account, [T, R]) == R
    assert mode_for(account, [T]) is None
    assert mode_for(account, []) == F


def test_relax_only_account_serves_relax_and_tasks_that_asked_nothing() -> None:
    account = _acct(modes=(F, R, T))
    assert mode_for(account, [F], relax_only=True) is None
    assert mode_for(account, [T, R], relax_only=True) == R
    assert mode_for(account, [], relax_only=True) == R


def test_flag_is_appended_only_when_missing() -> None:
    assert with_mode_flag("a cat --v 6", R) == "a cat --v 6 --relax"
    assert with_mode_flag("a cat --fast", R) == "a cat --fast"
    assert with_mode_flag("a cat", None) == "a cat"


def test_flags_can_be_taken_out() -> None:
    assert without_mode_flags("a cat --fast --v 6") == "a cat --v 6"
    assert without_mode_flags("a cat") == "a cat"


def _credits_fact() -> AccountFact:
    return AccountFact(kind="notice", title="Credits exhausted", description="no fast hours", at_ms=0)


def test_used_up_fast_hours_make_an_auto_relax_account_relax_only() -> None:
    verdict = verdict_for(_credits_fact(), account_id="a1", auto_relax=True)
    assert verdict is not None and verdict.relax_only
    assert verdict.state == AccountState.ONLINE and not verdict.fail_tasks
    assert "relax only" in verdict.reason


def test_used_up_fast_hours_pause_an_account_without_auto_relax() -> None:
    verdict = verdict_for(_credits_fact(), account_id="a1", auto_relax=False)
    assert verdict is not None and not verdict.relax_only
    assert verdict.state == AccountState.PAUSED and verdict.fail_tasks
