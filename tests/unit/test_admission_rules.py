"""The pure half of admission: speed modes, candidate accounts and their order."""

from __future__ import annotations

from broker.account_status import AccountState, usable
from broker.config import Account
from broker.eligibility import AccountFilter, candidates, order_by_load, wanted_modes
from broker.ids import IdSource
from broker.models import BotType, SpeedMode
from broker.modes import modes_in_prompt


def _acct(account_id: str, **kw: object) -> Account:
    return Account(id=account_id, guild_id="1", channel_id=f"c-{account_id}", token="t", **kw)  # type: ignore[arg-type]


def test_modes_come_from_prompt_then_prefix_then_filter() -> None:
    assert modes_in_prompt("a cat --relax --v 6") == [SpeedMode.RELAX]
    assert modes_in_prompt("a--fast cat") == []
    flt = AccountFilter(modes=[SpeedMode.TURBO, SpeedMode.FAST])
    assert wanted_modes(None, flt, "x --relax") == [SpeedMode.RELAX]
    assert wanted_modes(SpeedMode.FAST, flt, "x") == [SpeedMode.FAST]
    assert wanted_modes(None, flt, "x") == [SpeedMode.TURBO, SpeedMode.FAST]
    assert wanted_modes(None, None, "x") == []


def test_candidates_respect_enable_bots_filter_and_modes() -> None:
    accounts = [
        _acct("a1"),
        _acct("a2", enabled=False),
        _acct("a3", bots=(BotType.MID_JOURNEY,)),
        _acct("a4", modes=(SpeedMode.RELAX,), remix=True, remark="vip"),
    ]
    ids = lambda found: [a.id for a in found]  # noqa: E731
    assert ids(candidates(accounts, bot_type=BotType.MID_JOURNEY, account_filter=None, modes=[])) == [
        "a1",
        "a3",
        "a4",
    ]
    assert ids(candidates(accounts, bot_type=BotType.NIJI_JOURNEY, account_filter=None, modes=[])) == [
        "a1",
        "a4",
    ]
    pinned = AccountFilter(instance_id="c-a3")
    assert ids(candidates(accounts, bot_type=BotType.MID_JOURNEY, account_filter=pinned, modes=[])) == ["a3"]
    assert ids(
        candidates(accounts, bot_type=BotType.MID_JOURNEY, account_filter=AccountFilter(remix=True), modes=[])
    ) == ["a4"]
    assert ids(
        candidates(
            accounts, bot_type=BotType.MID_JOURNEY, account_filter=AccountFilter(remark="vip"), modes=[]
        )
    ) == ["a4"]
    assert (
        ids(candidates(accounts, bot_type=BotType.MID_JOURNEY, account_filter=None, modes=[SpeedMode.TURBO]))
        == []
    )


def test_order_is_preferred_mode_then_least_loaded_then_config_order() -> None:
    a1, a2, a3 = _acct("a1"), _acct("a2"), _acct("a3", modes=(SpeedMode.RELAX,))
    loads = {"a1": 5, "a2": 1, "a3": 0}
    assert [a.id for a in order_by_load([a1, a2, a3], loads)] == ["a3", "a2", "a1"]
    assert [a.id for a in order_by_load([a1, a2, a3], loads, [SpeedMode.FAST])] == ["a2", "a1", "a3"]
    assert [a.id for a in order_by_load([a1, a2], {"a1": 1, "a2": 1})] == ["a1", "a2"]


def test_paused_and_disabled_accounts_are_unusable() -> None:
    assert usable(None)  # no status written yet
    assert usable(AccountState.ONLINE.encode()) and usable(AccountState.CONNECTING)
    assert not usable(AccountState.PAUSED.encode()) and not usable(AccountState.DISABLED.lower())


def test_ids_are_16_digits_and_unique_within_a_millisecond() -> None:
    source = IdSource(clock=lambda: 1_700_000_000_000)
    ids = [source() for _ in range(1500)]
    assert len(set(ids)) == 1500
    assert all(len(i) == 16 and i.isdigit() for i in ids)
