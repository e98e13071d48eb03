"""`/mj/admin/banned-words`: list, add and remove banned words, written into config.yaml.

Submits check the words in force (`broker.banned`), so an added word refuses prompts (code 24) as
soon as the web process has the file: at once in the one that wrote it, within 2 s in the others.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post

from broker.api.admin_write import done, write
from broker.api.context import context_of
from broker.config_doc import append_entry, list_at, remove
from broker.errors import ValidationFailed
from broker.models import SubmitResult

__all__ = ["ADMIN_WORD_HANDLERS"]

AnyRequest = Request[Any, Any, Any]

_MAX_WORDS = 1000
_MAX_WORD_CHARS = 200


class Words(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    words: list[str]


def _clean(data: Words) -> list[str]:
    words = list(dict.fromkeys(w.strip() for w in data.words))
    if not words or len(words) > _MAX_WORDS:
        raise ValidationFailed(f"words: give 1 to {_MAX_WORDS} words")
    if any(not w or len(w) > _MAX_WORD_CHARS for w in words):
        raise ValidationFailed(f"words: each must have 1 to {_MAX_WORD_CHARS} characters")
    return words


@get("/mj/admin/banned-words", include_in_schema=False)
async def list_words(request: AnyRequest) -> list[str]:
    return list(context_of(request).settings.banned_words)


@post("/mj/admin/banned-words", status_code=200, include_in_schema=False)
async def add_words(request: AnyRequest, data: Words) -> SubmitResult:
    """Add words (those already listed are left as they are)."""
    words = _clean(data)

    def add(document: Any) -> list[str]:
        entries = list_at(document, "banned_words")
        present = {str(w) for w in entries}
        added = [w for w in words if w not in present]
        for word in added:
            append_entry(entries, word)
        return added

    added = await write(context_of(request), add)
    return done("banned words added", added, words=list(context_of(request).settings.banned_words))


@post("/mj/admin/banned-words/remove", status_code=200, include_in_schema=False)
async def remove_words(request: AnyRequest, data: Words) -> SubmitResult:
    """Remove words; `properties.notFound` lists those that were not there."""
    words = _clean(data)

    def drop(document: Any) -> list[str]:
        entries = list_at(document, "banned_words")
        removed = []
        for word in words:
            for i in range(len(entries) - 1, -1, -1):
                if str(entries[i]) == word:
                    remove(entries, i)
                    removed.append(word)
        return removed

    removed = await write(context_of(request), drop)
    return done(
        "banned words removed",
        removed,
        notFound=[w for w in words if w not in removed],
        words=list(context_of(request).settings.banned_words),
    )


ADMIN_WORD_HANDLERS = [list_words, add_words, remove_words]
