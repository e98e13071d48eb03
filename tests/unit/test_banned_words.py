"""Banned words: whole words of the normalized text, whatever the spelling tricks."""

from __future__ import annotations

import pytest

from broker.banned import BannedWords, fold
from broker.errors import BannedPrompt


def test_banned_words_are_whole_words_and_case_insensitive() -> None:
    banned = BannedWords(["gore", "bad word"])
    assert banned.find("Lots of GORE here") == "GORE"
    assert banned.find("gorement and gored") is None
    assert banned.find("a Bad  word") is None
    assert banned.find("a bad word!") == "bad word"
    assert BannedWords([]).find("gore") is None


@pytest.mark.parametrize(
    ("prompt", "spelled"),
    [
        ("a ｎｓｆｗ picture", "ｎｓｆｗ"),  # full-width
        ("a ns\u200bfw picture", "ns\u200bfw"),  # zero-width space
        ("a n\u200cs\u200dfw picture", "n\u200cs\u200dfw"),  # zero-width non-joiner and joiner
        ("a ns\u2060fw picture", "ns\u2060fw"),  # word joiner
        ("a \ufeffnsfw picture", "nsfw"),  # byte order mark (the spelling is from the first letter)
        ("a ns\u00adfw picture", "ns\u00adfw"),  # soft hyphen
        ("a nѕfw picture", "nѕfw"),  # Cyrillic dze
        ("a пѕfw picture", None),  # Cyrillic pe is no n in any font we map
        ("a NSFW picture", "NSFW"),
        ("a NЅFW picture", "NЅFW"),  # Cyrillic capital dze
        ("a nsfω picture", "nsfω"),  # Greek omega
        ("a νsfw picture", None),  # Greek nu looks like v, not n
        ("a ẃnsfẃ picture", None),
        ("a nsfẃ picture", "nsfẃ"),  # an accent on a Latin letter
        ("a n\u0332s\u0332f\u0332w\u0332 picture", "n\u0332s\u0332f\u0332w"),  # combining underline
        ("a 𝐧𝐬𝐟𝐰 picture", "𝐧𝐬𝐟𝐰"),  # mathematical bold
        ("a ⓝⓢⓕⓦ picture", "ⓝⓢⓕⓦ"),  # circled
        ("nsfw", "nsfw"),
        ("unsfwx and nsfwish", None),  # whole words only
        ("ｎｓｆｗｉｓｈ", None),
        ("nsf\u200bwish", None),
    ],
)
def test_evasions_of_a_banned_word_are_caught(prompt: str, spelled: str | None) -> None:
    assert BannedWords(["nsfw"]).find(prompt) == spelled


def test_words_containing_a_banned_word_pass_in_any_script() -> None:
    banned = BannedWords(["ass", "gore"])
    for prompt in ("a class of bass players", "Gorey mountains", "ｃｌａｓｓｉｃ", "clаss", "мир"):
        assert banned.find(prompt) is None, prompt
    assert banned.find("a big аss") == "аss"  # Cyrillic a


def test_configured_words_are_normalized_too() -> None:
    banned = BannedWords(["ＮＳＦＷ", " Gore ", "\u200b"])
    assert banned.find("so nsfw") == "nsfw"
    assert banned.find("GORE") == "GORE"
    assert banned.find("a\u200bb") is None  # an invisible-only word bans nothing


def test_check_raises_banned_prompt_with_the_spelling() -> None:
    with pytest.raises(BannedPrompt) as caught:
        BannedWords(["nsfw"]).check("a ｎｓｆｗ cat")
    assert caught.value.properties == {"promptEn": "a ｎｓｆｗ cat", "bannedWord": "ｎｓｆｗ"}


def test_fold() -> None:
    assert fold("Straße") == "strasse"
    assert fold("ＡＢＣ") == "abc"
    assert fold("café") == "cafe"
    assert fold("が") == "が"  # a mark on another script stays
    assert fold("ﬁne") == "fine"
    assert fold("Μμ") == "mu"  # Greek capital mu looks like M, small mu like u
