"""Pure pieces of mjsim: ids, prompt normalisation, content strings, rendering, exports."""

from __future__ import annotations

import mjsim.bots.content as content
from mjsim.cdn import render
from mjsim.formats import file_prompt_words, normalise_prompt
from mjsim.ids import IdFactory
from mjsim.state import Account, Mode


def _account() -> Account:
    return Account(token="t", user_id="42", username="u", guild_id="1", channel_id="2", dm_channels={})


def test_snowflakes_strictly_increase_and_seeded_uuids_repeat() -> None:
    ids = IdFactory(seed=3, clock=lambda: 1_700_000_000.0)
    flakes = [int(ids.snowflake()) for _ in range(5000)]
    assert flakes == sorted(set(flakes))
    assert IdFactory(seed=3).uuid4() == IdFactory(seed=3).uuid4()
    assert IdFactory(seed=3).token() != IdFactory(seed=4).token()


def test_normalise_prompt_wraps_urls_and_dashes() -> None:
    assert normalise_prompt("https://a.b/c.png  cat —ar 2:3") == "<https://a.b/c.png> cat --ar 2:3"
    assert normalise_prompt("<https://a.b/c.png> cat") == "<https://a.b/c.png> cat"
    assert file_prompt_words("<https://a.b/x.png> a red fox --ar 2:3") == "a_red_fox"


def test_content_strings_follow_the_recorded_formats() -> None:
    a = _account()
    spec = content.JobSpec(kind="imagine", prompt="cat")
    assert content.content_for(spec, a, "start") == "**cat** - <@42> (Waiting to start)"
    assert content.content_for(spec, a, 31) == "**cat** - <@42> (31%) (fast)"
    a.mode, a.stealth = Mode.RELAX, True
    assert content.content_for(spec, a, "final") == "**cat** - <@42> (relaxed, stealth)"
    var = content.JobSpec(kind="variation", prompt="cat", label="Variations (Strong)")
    assert content.content_for(var, a, "final") == "**cat** - Variations (Strong) by <@42> (relaxed, stealth)"
    up = content.JobSpec(kind="upscale", prompt="cat", index=2, grid=False)
    assert content.content_for(up, a, "final") == "**cat** - Image #2 <@42>"


def test_button_sets_carry_the_job_hash() -> None:
    h = "5b1c2d3e-1a2b-4c5d-8e9f-0123456789ab"
    grid = [c["custom_id"] for r in content.grid_components(h) for c in r["components"]]
    assert grid[:5] == [
        *(f"MJ::JOB::upsample::{i}::{h}" for i in range(1, 5)),
        f"MJ::JOB::reroll::0::{h}::SOLO",
    ]
    single = [c["custom_id"] for r in content.single_components(h, "cat --v 6.1") for c in r["components"]]
    assert f"MJ::JOB::upsample_v6r1_2x_subtle::1::{h}::SOLO" in single
    assert f"MJ::Outpaint::75::1::{h}::SOLO" in single and f"MJ::CustomZoom::{h}" in single
    assert all(h in i for i in single)


def test_unknown_params_are_reported() -> None:
    assert content.unknown_params("cat --ar 2:3 --foo 1 --v 6") == ["--foo"]


def test_render_is_deterministic_and_small() -> None:
    a = render("a cat|grid|0|", "grid", "png")
    assert a == render("a cat|grid|0|", "grid", "png")
    assert a.startswith(b"\x89PNG") and len(a) < 200_000
    assert render("a cat|grid|0|", "grid", "webp")[8:12] == b"WEBP"


def test_package_exports_are_sorted_and_present() -> None:
    import mjsim
    import mjsim.app
    import mjsim.server

    names = list(mjsim.__all__)
    # Sorted as ruff keeps __all__: CONSTANTS, then Classes, then functions, each alphabetically.
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    assert {"create_app", "start_server", "SimSettings"} <= set(names)
    assert all(hasattr(mjsim, n) for n in names)
    assert mjsim.create_app is mjsim.app.create_app and mjsim.start_server is mjsim.server.start_server
