"""mjsim's speed modes: which mode a simulated job runs in, how it shows and how long it takes."""

from __future__ import annotations

import mjsim.bots.content as content
from mjsim.apps import MIDJOURNEY
from mjsim.bots.base import InteractionCtx
from mjsim.bots.speed import duration_factor, job_mode, needs_fast_hours
from mjsim.state import Account, Channel, Mode, SimSettings


def _ctx(type_: int, *, account_mode: Mode | None = None, mode: Mode = Mode.FAST) -> InteractionCtx:
    account = Account(token="t", user_id="42", username="u", guild_id="1", channel_id="2", dm_channels={})
    account.mode = mode
    return InteractionCtx(
        account=account,
        bot=MIDJOURNEY,
        session_id="s",
        nonce="1",
        interaction_id="2",
        channel=Channel(id="2", guild_id="1", name="c", members={"42"}),
        type=type_,
        name="imagine" if type_ == 2 else "",
        account_mode=account_mode,
    )


def test_a_command_flag_wins_over_the_account_mode() -> None:
    assert job_mode(_ctx(2), "a cat --relax") is Mode.RELAX
    assert job_mode(_ctx(2, mode=Mode.RELAX), "a cat --TURBO") is Mode.TURBO
    assert job_mode(_ctx(2, mode=Mode.RELAX), "a cat") is Mode.RELAX


def test_a_click_runs_in_the_account_mode_it_arrived_in() -> None:
    # the parent's prompt may carry a flag: a button ignores it
    assert job_mode(_ctx(3, account_mode=Mode.FAST, mode=Mode.RELAX), "a cat --relax") is Mode.FAST


def test_relax_is_slower_and_only_it_spares_fast_hours() -> None:
    settings = SimSettings()
    assert duration_factor(settings, Mode.RELAX) > 1.0 > duration_factor(settings, Mode.TURBO)
    assert not needs_fast_hours(Mode.RELAX) and needs_fast_hours(Mode.TURBO)


def test_messages_show_the_jobs_mode_not_the_accounts() -> None:
    ctx = _ctx(2)
    spec = content.JobSpec(kind="imagine", prompt="cat --relax")
    assert (
        content.content_for(spec, ctx.account, 50, mode=Mode.RELAX)
        == "**cat --relax** - <@42> (50%) (relaxed)"
    )
    assert (
        content.content_for(spec, ctx.account, "final", mode=Mode.TURBO) == "**cat --relax** - <@42> (turbo)"
    )
