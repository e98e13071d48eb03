"""Banned words: whole-word matching on text normalized first, so look-alike spellings are caught.

`fold(text)` is the normal form both the configured words and the prompt are compared in:

1. NFC, then each character on its own: NFKC (full-width `ｎ`, ligatures, math letters, circled
   letters become their plain forms);
2. invisible characters dropped: zero-width space/joiners (U+200B..U+200D), word joiner and
   invisible operators (U+2060..U+2064), BOM (U+FEFF), soft hyphen (U+00AD), bidi controls,
   variation selectors and the other default-ignorable code points of `_INVISIBLE`;
3. common confusables mapped to ASCII: Greek and Cyrillic letters that look like Latin ones
   (`ο`/`о` -> o, `а` -> a, `ѕ` -> s, `ν` -> v, `ω` -> w, ...; `_CONFUSABLES`), both cases, before
   case folding (Greek capital `Μ` is M but small `μ` looks like u);
4. case folded (`str.casefold`: `ß` -> ss);
5. accents on a Latin letter dropped (`ẃ` -> w), and combining marks after one (`n̲s̲f̲w̲`); marks on
   other scripts' letters stay (Japanese dakuten, Devanagari vowel signs change the word).

Unicode publishes a full confusables table; we keep a short explicit one because the full table
maps whole scripts onto Latin (Cyrillic `п` -> n, `г` -> r), which would ban ordinary Russian and
Greek words that happen to spell a banned word in look-alikes of no one's font. No library on PyPI
maps confusables to ASCII with that restraint (anyascii transliterates: Greek `ν` -> n, not v).

A banned word matches only as a whole word of the folded text (no letter, digit or underscore
right before or after it), as before, so `class` never matches `ass`. The match is reported as the
prompt spells it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from broker.errors import BannedPrompt

__all__ = ["BannedWords", "fold"]

_INVISIBLE = frozenset(
    [
        0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFEFF, 0xFFA0,
        *range(0x180B, 0x1810),  # Mongolian variation selectors and vowel separator
        *range(0x200B, 0x2010),  # zero-width space, non-joiner, joiner, LRM, RLM
        *range(0x202A, 0x202F),  # bidi embeddings and overrides
        *range(0x2060, 0x2070),  # word joiner, invisible operators, bidi isolates
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0000, 0xE0080),  # tag characters
    ]
)  # fmt: skip

# Look-alikes of Latin letters: Greek (small, capital) and Cyrillic (small, capital), and a few
# Latin letters that read as plain ones. Keys are single characters of any case; values ASCII.
_CONFUSABLES = {
    # Greek
    "α": "a", "Α": "a", "Β": "b", "γ": "y", "ε": "e", "Ε": "e", "Ζ": "z", "η": "n", "Η": "h",
    "ι": "i", "Ι": "i", "κ": "k", "Κ": "k", "Μ": "m", "μ": "u", "ν": "v", "Ν": "n", "ο": "o",
    "Ο": "o", "ρ": "p", "Ρ": "p", "τ": "t", "Τ": "t", "υ": "u", "Υ": "y", "χ": "x", "Χ": "x",
    "ω": "w", "ϲ": "c", "Ϲ": "c", "ϳ": "j", "Ϳ": "j",
    # Cyrillic
    "а": "a", "А": "a", "В": "b", "в": "b", "с": "c", "С": "c", "ԁ": "d", "е": "e", "Е": "e",
    "һ": "h", "Һ": "h", "Н": "h", "н": "h", "і": "i", "І": "i", "ј": "j", "Ј": "j", "К": "k",
    "к": "k", "ӏ": "l", "Ӏ": "l", "М": "m", "м": "m", "о": "o", "О": "o", "р": "p", "Р": "p",
    "ԛ": "q", "Ԛ": "q", "ѕ": "s", "Ѕ": "s", "Т": "t", "т": "t", "ԝ": "w", "Ԝ": "w", "х": "x",
    "Х": "x", "у": "y", "У": "y", "ү": "y", "Ү": "y",
    # Latin letters that read as plain ones
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ʏ": "y", "ᴀ": "a", "ᴄ": "c", "ᴏ": "o",
    "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
}  # fmt: skip


def _is_latin_base(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One character of the input in folded form ("" for an invisible one); marks after a Latin
    letter are dropped by `_fold`, which sees the neighbours."""
    if ord(ch) in _INVISIBLE:
        return ""
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        if ord(c) in _INVISIBLE:
            continue
        c = _CONFUSABLES.get(c, c)
        decomposed = unicodedata.normalize("NFD", c)
        # an accented Latin letter loses its accents; any other letter keeps them
        if _is_latin_base(decomposed[0]):
            c = decomposed[0]
        out.append(c)
    return "".join(out).casefold()


def _fold(text: str) -> tuple[str, list[int]]:
    """(folded text, for each folded character the index of the input character it came from)."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        for c in _fold_char(ch):
            if unicodedata.category(c)[0] == "M" and chars and _is_latin_base(chars[-1]):
                continue
            chars.append(c)
            where.append(i)
    return "".join(chars), where


def fold(text: str) -> str:
    """`text` in the normal form banned words are compared in (see the module docstring)."""
    if text.isascii():
        return text.lower()
    return _fold(unicodedata.normalize("NFC", text))[0]


class BannedWords:
    """Whole-word matcher of the configured words on folded text, compiled once per settings."""

    def __init__(self, words: Iterable[str]) -> None:
        folded = {fold(w.strip()) for w in words}
        cleaned = sorted((w for w in folded if w.strip()), key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in cleaned)) if cleaned else None
        )

    def find(self, text: str | None) -> str | None:
        """The first banned word in `text`, as the text spells it, or None."""
        if self._pattern is None or not text:
            return None
        if text.isascii():
            # the folded text is `text.lower()`: same length, same positions
            match = self._pattern.search(text.lower())
            return text[match.start() : match.end()] if match else None
        source = unicodedata.normalize("NFC", text)
        folded, where = _fold(source)
        match = self._pattern.search(folded)
        if match is None:
            return None
        return source[where[match.start()] : where[match.end() - 1] + 1]

    def check(self, prompt_en: str | None, original: str | None = None) -> None:
        """Refuse (code 24) a banned word in the English prompt or in the prompt as written."""
        word = self.find(prompt_en)
        if word is None and original and original != prompt_en:
            word = self.find(original)
        if word is not None:
            raise BannedPrompt(prompt_en or "", word)
