"""Edits of config.yaml: comments and order kept, a write that would not load changes nothing."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from broker.config import ConfigError, load_settings
from broker.config_doc import (
    account_entries,
    append_entry,
    list_at,
    mapping_at,
    new_mapping,
    put,
    remove,
    set_choice,
)
from broker.config_write import edit_config

ROOT = Path(__file__).resolve().parents[2]


def comments(text: str) -> list[str]:
    """Every comment of the file, in order (the part of a line from its `#`)."""
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the shipped config.yaml (its demo accounts, its comments)."""
    path = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config.yaml", path)
    return path


def _add_account(account_id: str, **extra: Any) -> Any:
    def edit(document: Any) -> None:
        entry = {"id": account_id, "guild_id": "1", "channel_id": "2", "token": "tok", **extra}
        account_entries(document).append(new_mapping(entry))

    return edit


def test_edits_keep_every_comment_and_the_list_indentation(shipped: Path) -> None:
    before = shipped.read_text()

    def edit(document: Any) -> None:
        list_at(document, "api_keys").append(
            new_mapping({"name": "ops", "secret": "s" * 20, "role": "admin"})
        )
        list_at(document, "banned_words").append("extra")
        document["hooks"]["secret"] = "hook-secret"

    settings, _ = edit_config(shipped, _add_account("a3"), environ={})
    settings, _ = edit_config(shipped, edit, environ={})
    after = shipped.read_text()
    assert comments(after) == comments(before)
    assert [a.id for a in settings.accounts] == ["a1", "a2", "a3"]
    assert settings.banned_words[-1] == "extra" and settings.api_keys[0].role == "admin"
    # the file's own style: dashes indented under their key, `api_keys: []` now a block list
    assert "\n  - id: a3\n" in after and "api_keys:\n  - name: ops\n" in after
    # untouched lines are byte for byte the same
    kept = [line for line in before.splitlines() if "secret" not in line and "api_keys" not in line]
    assert all(line in after.splitlines() for line in kept)
    assert load_settings(shipped, environ={}) == settings


def test_a_write_that_would_not_load_leaves_the_file_byte_for_byte(shipped: Path) -> None:
    before = shipped.read_bytes()
    mtime = shipped.stat().st_mtime_ns
    for bad in (
        _add_account("a3", work_hours="9-5"),
        _add_account("a3", daily_limit=-1),
        _add_account("a1"),  # id clash
        _add_account("a3", token="${MJB_TEST_UNSET_VARIABLE}"),
        lambda document: set_choice(document, "cheapest"),
    ):
        with pytest.raises(ConfigError):
            edit_config(shipped, bad, environ={})
        assert shipped.read_bytes() == before
    assert shipped.stat().st_mtime_ns == mtime
    assert [p.name for p in shipped.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_an_error_raised_by_the_edit_changes_nothing(shipped: Path) -> None:
    before = shipped.read_bytes()

    def edit(document: Any) -> None:
        document["banned_words"].append("half-done")
        raise LookupError("refused by the caller")

    with pytest.raises(LookupError):
        edit_config(shipped, edit, environ={})
    assert shipped.read_bytes() == before


def test_choice_lifts_a_list_of_accounts_into_the_mapping_form_and_keeps_it(shipped: Path) -> None:
    settings, _ = edit_config(shipped, lambda d: set_choice(d, "weight"), environ={})
    assert settings.account_choice == "weight" and len(settings.accounts) == 2
    settings, _ = edit_config(shipped, _add_account("a3"), environ={})
    text = shipped.read_text()
    assert "accounts:\n" in text and "  choice: weight\n  list:\n    - id: a1\n" in text
    assert [a.id for a in settings.accounts] == ["a1", "a2", "a3"]
    assert comments(text) == comments((ROOT / "config.yaml").read_text())


def test_env_references_are_kept_and_clear_secrets_make_the_file_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# mine\naccounts:\n- id: a1\n  guild_id: '1'\n  channel_id: '2'\n  token: ${TOK_A1}\n")
    os.chmod(path, 0o644)
    env = {"TOK_A1": "secret-from-env"}
    settings, _ = edit_config(path, lambda d: list_at(d, "banned_words").append("x"), environ=env)
    assert settings.accounts[0].token == "secret-from-env"
    assert "token: ${TOK_A1}" in path.read_text() and "secret-from-env" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "\n- id: a1\n" in path.read_text()  # this file writes its dashes at the key's indent
    edit_config(path, _add_account("a2"), environ=env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_writers_in_parallel_threads_lose_no_edit(shipped: Path) -> None:
    def add(word: str) -> None:
        edit_config(shipped, lambda d: list_at(d, "banned_words").append(word), environ={})

    threads = [threading.Thread(target=add, args=(f"word{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    words = load_settings(shipped, environ={}).banned_words
    assert {f"word{i}" for i in range(12)} <= set(words)


SECTIONS = """\
# header
hooks:  # h
  secret: abc
  give_up_minutes: 1   # eol g
# section url_guard
url_guard:  # u
  allow:  # a
  - 127.0.0.1:1
# section banned
banned_words:  # b
- forbiddenword
# section accounts
accounts:  # ac
- id: a0
  guild_id: '1'
  channel_id: '2'
  token: t0
  queue_size: 3  # q
# trailing words
"""


def test_entries_go_above_the_next_sections_comments_and_removing_them_restores_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SECTIONS)

    def add(document: Any) -> None:
        append_entry(list_at(document, "banned_words"), "zebra")
        put(mapping_at(document, "hooks"), "concurrency", 3)
        put(account_entries(document)[0], "core_size", 2)
        append_entry(
            account_entries(document),
            new_mapping({"id": "a1", "guild_id": "3", "channel_id": "4", "token": "t"}),
        )

    edit_config(path, add, environ={})
    text = path.read_text()
    assert "- forbiddenword\n- zebra\n# section accounts\n" in text
    assert "  give_up_minutes: 1   # eol g\n  concurrency: 3\n# section url_guard\n" in text
    assert "  token: t\n# trailing words\n" in text and "  queue_size: 3  # q\n  core_size: 2\n" in text

    def undo(document: Any) -> None:
        remove(account_entries(document), 1)
        remove(list_at(document, "banned_words"), 1)
        remove(mapping_at(document, "hooks"), "concurrency")
        remove(account_entries(document)[0], "core_size")

    edit_config(path, undo, environ={})
    assert path.read_text() == SECTIONS
