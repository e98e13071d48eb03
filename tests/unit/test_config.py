"""config.yaml -> Settings: defaults, ${VAR} expansion, one-line errors, the shipped file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.config import ConfigError, ProxyEnvironment, config_path, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_loads_with_two_demo_accounts() -> None:
    settings = load_settings(ROOT / "config.yaml", environ={})
    assert [a.id for a in settings.accounts] == ["a1", "a2"]
    assert settings.discord.rest_url == "http://127.0.0.1:8081/api/v9"
    assert not settings.api_keys


def test_env_references_are_expanded() -> None:
    doc = {"api_keys": [{"name": "k", "secret": "${MY_SECRET}"}]}
    assert parse_settings(doc, {"MY_SECRET": "s3"}).api_keys[0].secret == "s3"


@pytest.mark.parametrize(
    ("doc", "env", "message"),
    [
        (
            {"api_keys": [{"name": "k", "secret": "${NOPE}"}]},
            {},
            "api_keys[0].secret: environment variable NOPE",
        ),
        (
            {"accounts": [{"id": "a", "guild_id": 1, "channel_id": 2, "token": "t", "core_size": "x"}]},
            {},
            "accounts[0].core_size",
        ),
        (
            {"accounts": [{"id": "a", "guild_id": 1, "channel_id": 2, "token": "t", "core_size": 0}]},
            {},
            "accounts[0].core_size",
        ),
        ({"server": {"bogus": 1}}, {}, "server"),
        ([1, 2], {}, "top level"),
    ],
)
def test_bad_config_fails_in_one_line_with_the_key_path(
    doc: object, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(bad, environ={})


def test_watcher_follows_the_file_and_keeps_the_last_good_settings(tmp_path: Path) -> None:
    from broker.config_watcher import ConfigWatcher

    path = tmp_path / "config.yaml"
    path.write_text("banned_words: [one]\n")
    watcher = ConfigWatcher(path, load_settings(path), every=0.0)
    assert watcher.current().banned_words == ("one",)
    path.write_text("banned_words: [two]\n")
    os.utime(path, (1, 1))  # a new mtime even within the filesystem's clock resolution
    assert watcher.current().banned_words == ("two",)
    path.write_text("banned_words: {not: [a list\n")
    os.utime(path, (2, 2))
    assert watcher.current().banned_words == ("two",)  # a broken edit is ignored


def test_config_path_is_the_argument_then_the_environment_then_the_working_directory() -> None:
    env = {"MJBROKER_CONFIG": "/etc/mjbroker.yaml"}
    assert config_path("given.yaml", env) == Path("given.yaml")
    assert config_path(None, env) == Path("/etc/mjbroker.yaml")
    assert config_path(None, {}) == Path("config.yaml")


def test_hook_proxies_come_from_the_environment_only_when_the_setting_is_on() -> None:
    environ = {"HTTP_PROXY": "http://upper:3128", "http_proxy": "http://lower:3128", "NO_PROXY": "lan"}
    assert parse_settings({}, environ).hooks.env_proxy == ProxyEnvironment()
    hooks = parse_settings({"hooks": {"use_env_proxy": True}}, environ).hooks
    assert hooks.env_proxy == ProxyEnvironment(http="http://lower:3128", no_proxy="lan")  # lower case wins
    with_password = {"HTTPS_PROXY": "http://me:pr0xy-pw@proxy:3128"}
    assert "pr0xy-pw" in parse_settings({"hooks": {"use_env_proxy": True}}, with_password).secrets()
    # the file cannot name a proxy of its own: the environment's replaces it
    written = {"hooks": {"use_env_proxy": True, "env_proxy": {"http": "http://file:1"}}}
    assert parse_settings(written, {}).hooks.env_proxy == ProxyEnvironment()


@pytest.mark.parametrize(
    ("scheme", "host", "proxy"),
    [
        ("http", "hooks.example.com", "http://p:1"),
        ("https", "hooks.example.com", "http://p:2"),
        ("http", "internal.test", None),
        ("http", "a.internal.test", None),
        ("http", "notinternal.test", "http://p:1"),
        ("http", "lan", None),
        ("http", "10.0.0.5", None),
        ("http", "10.0.0.50", "http://p:1"),
    ],
)
def test_no_proxy_names_hosts_domains_and_addresses(scheme: str, host: str, proxy: str | None) -> None:
    env = ProxyEnvironment(http="http://p:1", https="http://p:2", no_proxy="lan, .internal.test,10.0.0.5")
    assert env.proxy_for(scheme, host) == proxy
    assert ProxyEnvironment(http="http://p:1", no_proxy="*").proxy_for("http", "anything") is None
    assert ProxyEnvironment(http="http://p:1").proxy_for("https", "x") is None  # no HTTPS_PROXY


def test_the_deprecated_private_addresses_flag_is_warned_about_once_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from broker import config

    config._warn_deprecated_private_addresses.cache_clear()
    with caplog.at_level("WARNING", logger="broker.config"):
        for _ in range(3):  # start, then two reloads
            parse_settings({"hooks": {"allow_private_addresses": True}}, {})
    assert sum("deprecated" in r.getMessage() for r in caplog.records) == 1


def test_accounts_may_be_a_mapping_of_choice_and_list() -> None:
    account = {
        "id": "a",
        "guild_id": 1,
        "channel_id": 2,
        "token": "t",
        "daily_limit": 5,
        "work_hours": "9:00-17:00",
    }
    settings = parse_settings(
        {"accounts": {"choice": "weight", "list": [account]}, "timezone": "Asia/Shanghai"}
    )
    assert settings.account_choice == "weight" and settings.accounts[0].daily_limit == 5
    assert parse_settings({"accounts": [account]}).account_choice == "least_busy"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"accounts": {"choice": "best", "list": []}}, "accounts.choice"),
        ({"accounts": {"rule": "weight"}}, "accounts.rule: unknown key"),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown timezone"),
        (
            {"accounts": [{"id": "a", "guild_id": 1, "channel_id": 2, "token": "t", "work_hours": "9-5"}]},
            "work_hours",
        ),
        (
            {"accounts": [{"id": "a", "guild_id": 1, "channel_id": 2, "token": "t", "daily_limit": -1}]},
            "daily_limit",
        ),
        ({"api_keys": [{"name": "k", "secret": "s", "role": "root"}]}, "role"),
    ],
)
def test_choice_rules_and_limits_are_checked(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(document)
