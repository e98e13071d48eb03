"""A prompt cut into what a translator may see and what it must never touch.

Translating a whole Midjourney prompt lets a model "fix" its parameters, drop a weight or rewrite a
link. So only the prose goes out: URLs, `<@mentions>`, `::` weights, the numbered-line keycaps of a
describe result, and every `--parameter` with its value (from the first one to the end of its line,
where Midjourney reads them) stay as written, and the translations are put back in their places.
"""

from __future__ import annotations

import re

__all__ = ["Prose", "has_cjk", "split_prose"]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_KEEP = re.compile(
    r"https?://\S+"  # image prompts and links
    r"|<[@#][!&]?\d+>"  # mentions
    r"|::-?\d*(?:\.\d+)?"  # multi-prompt weights
    r"|[0-9]\ufe0f?\u20e3"  # 1️⃣ .. 4️⃣ of describe results
    r"|(?<!\S)--[A-Za-z][^\n]*"  # parameters and their values, to the end of the line
)


def has_cjk(text: str | None) -> bool:
    """Whether `text` has Chinese, Japanese or Korean letters (punctuation alone does not count)."""
    return bool(text) and _CJK.search(text or "") is not None


class Prose:
    """`text` as kept pieces and prose pieces; `with_prose` puts translated prose back."""

    def __init__(self, pieces: list[str], prose_at: list[int]) -> None:
        self.pieces = pieces
        self.prose_at = prose_at

    @property
    def prose(self) -> list[str]:
        """The pieces to translate, in order (stripped; each has letters)."""
        return [self.pieces[i] for i in self.prose_at]

    def with_prose(self, translated: list[str]) -> str:
        if len(translated) != len(self.prose_at):
            raise ValueError("one translation per prose piece")
        pieces = list(self.pieces)
        for i, text in zip(self.prose_at, translated, strict=True):
            pieces[i] = text
        return "".join(pieces)


def split_prose(text: str, *, only_cjk: bool = True) -> Prose:
    """Cut `text`; with `only_cjk`, prose without CJK letters is kept as it is too."""
    pieces: list[str] = []
    prose_at: list[int] = []

    def add_text(chunk: str) -> None:
        body = chunk.strip()
        if not body or (only_cjk and not has_cjk(body)) or not any(c.isalpha() for c in body):
            pieces.append(chunk)
            return
        start = chunk.index(body)
        pieces.append(chunk[:start])
        prose_at.append(len(pieces))
        pieces.append(body)
        pieces.append(chunk[start + len(body) :])

    at = 0
    for match in _KEEP.finditer(text):
        add_text(text[at : match.start()])
        pieces.append(match.group())
        at = match.end()
    add_text(text[at:])
    return Prose(pieces, prose_at)
