"""Prompts in Chinese: English for Midjourney, and Chinese for describe and shorten results.

`translation.provider: openai` means any OpenAI-compatible chat API (OpenAI, new-api, DeepSeek,
Qwen, Ollama, vLLM): one `POST {base_url}/chat/completions` through aiohttp. Only the prose of a
prompt is sent (`broker.prompt_parts`), as a JSON array, and the answer must be a JSON array of as
many strings and nothing else: an answer with words around it, a parameter, a weight or a link of
its own, or (towards English) Chinese left in it, is refused. Parameters cannot be dropped, since
they never leave. Translations are cached in Redis by model, direction and text.

A translation that fails is no error of the task's: `Translated.error` says why and the caller sends
the text as written (or refuses the request, when `translation.required` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from typing import Literal

import aiohttp
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker import keys
from broker.config import TranslationSettings
from broker.prompt_parts import has_cjk, split_prose

__all__ = ["Direction", "Translated", "TranslationRefused", "Translator", "check_answer"]

log = logging.getLogger(__name__)

Direction = Literal["en", "zh"]

_INSTRUCTIONS: dict[Direction, str] = {
    "en": (
        "You translate prompts for the Midjourney image generator into English. The user message is a "
        "JSON array of text pieces of one prompt. Answer with only a JSON array of the same length: "
        "each piece translated into natural, concise English, in the same order. No notes, no "
        "parameters, no quotes around the array, nothing else."
    ),
    "zh": (
        "You translate Midjourney image prompts into Simplified Chinese. The user message is a JSON "
        "array of text pieces. Answer with only a JSON array of the same length: each piece "
        "translated into natural Simplified Chinese, in the same order. Nothing else."
    ),
}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_FORBIDDEN = re.compile(r"(?<!\S)--[A-Za-z]|::|https?://|<[@#]")


class TranslationRefused(Exception):
    """The translator's answer cannot be used; the message says why (no secret, no prompt)."""


class Translated(msgspec.Struct, frozen=True):
    #: the translation, or the text as given when there was nothing to translate or it failed
    text: str
    #: why the translation failed (the text is then as given); None when it worked or was not needed
    error: str | None = None


class _Choice(msgspec.Struct):
    message: dict[str, object]


class _Completion(msgspec.Struct):
    choices: list[_Choice]


def check_answer(answer: str, sent: list[str], direction: Direction) -> list[str]:
    """The translated pieces of a chat answer, or `TranslationRefused` saying what is wrong with it."""
    body = answer.strip()
    fenced = _FENCE.match(body)  # a bare code fence is how many models write JSON; words are not
    if fenced:
        body = fenced.group(1)
    try:
        pieces = json.loads(body)
    except ValueError:
        raise TranslationRefused("the answer is not a JSON array (text around it?)") from None
    if not isinstance(pieces, list) or not all(isinstance(p, str) for p in pieces):
        raise TranslationRefused("the answer is not a JSON array of strings")
    if len(pieces) != len(sent):
        raise TranslationRefused(f"the answer has {len(pieces)} pieces for {len(sent)}")
    for piece, original in zip(pieces, sent, strict=True):
        if not piece.strip():
            raise TranslationRefused("the answer has an empty piece")
        if _FORBIDDEN.search(piece):
            raise TranslationRefused("the answer adds a parameter, weight, link or mention")
        if len(piece) > 4 * len(original) + 200:
            raise TranslationRefused("the answer is far longer than the text")
        if direction == "en" and has_cjk(piece):
            raise TranslationRefused("the answer is not English")
    return [p.strip() for p in pieces]


class Translator:
    """Translates through the configured provider; one per process, closed with `close`.

    :param settings: `translation` of config.yaml.
    :param redis: the process's client, for the cache (None = no cache).
    """

    def __init__(self, settings: TranslationSettings, redis: aioredis.Redis | None) -> None:
        self.settings = settings
        self.redis = redis
        self._http: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.provider != "none"

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def to_english(self, prompt: str) -> Translated:
        """`prompt` with its Chinese prose in English (a prompt without CJK letters is not sent)."""
        return await self._translate(prompt, "en")

    async def to_chinese(self, text: str) -> Translated:
        """A describe or shorten result in Chinese (its parameters and numbering kept)."""
        return await self._translate(text, "zh")

    async def _translate(self, text: str, direction: Direction) -> Translated:
        if not self.enabled or (direction == "en" and not has_cjk(text)):
            return Translated(text)
        prose = split_prose(text, only_cjk=direction == "en")
        sent = prose.prose
        if not sent:
            return Translated(text)
        cache_key = keys.translation(self._digest(direction, sent))
        cached = await self._cached(cache_key)
        if cached is not None:
            return Translated(prose.with_prose(cached))
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                pieces = await self._ask(sent, direction)
        except TimeoutError:
            return self._failed(text, f"no answer within {self.settings.timeout_seconds:g} s")
        except TranslationRefused as exc:
            return self._failed(text, f"answer refused: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            return self._failed(text, f"translator unreachable ({type(exc).__name__})")
        await self._remember(cache_key, pieces)
        return Translated(prose.with_prose(pieces))

    def _failed(self, text: str, why: str) -> Translated:
        log.warning("translation failed: %s", why)
        return Translated(text, error=f"translation failed: {why}")

    def _digest(self, direction: Direction, sent: list[str]) -> str:
        material = json.dumps([self.settings.model, direction, sent], ensure_ascii=False)
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    async def _cached(self, key: str) -> list[str] | None:
        if self.redis is None:
            return None
        try:
            raw = await self.redis.get(key)
        except RedisError:
            return None  # the cache only saves a call
        return msgspec.json.decode(raw, type=list[str]) if raw else None

    async def _remember(self, key: str, pieces: list[str]) -> None:
        if self.redis is None:
            return
        ttl = max(1, int(self.settings.cache_days * 86_400))
        with contextlib.suppress(RedisError):  # the cache only saves a call
            await self.redis.set(key, msgspec.json.encode(pieces), ex=ttl)

    async def _ask(self, sent: list[str], direction: Direction) -> list[str]:
        """One chat completion, tried again (`retries`) when the server fails or cannot be reached."""
        attempts = 1 + max(0, self.settings.retries)
        for attempt in range(attempts):
            try:
                return await self._post(sent, direction)
            except (aiohttp.ClientError, OSError, _ServerFailed):
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _post(self, sent: list[str], direction: Direction) -> list[str]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        body = {
            "model": self.settings.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _INSTRUCTIONS[direction]},
                {"role": "user", "content": json.dumps(sent, ensure_ascii=False)},
            ],
        }
        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        url = f"{self.settings.base_url.rstrip('/')}/chat/completions"
        async with self._http.post(url, json=body, headers=headers) as response:
            if response.status >= 500 or response.status == 429:
                raise _ServerFailed(response.status)
            if response.status != 200:
                raise TranslationRefused(f"the translator answered HTTP {response.status}")
            raw = await response.read()
        try:
            completion = msgspec.json.decode(raw, type=_Completion)
            content = completion.choices[0].message.get("content")
        except (msgspec.DecodeError, IndexError):
            raise TranslationRefused("the translator's reply is not a chat completion") from None
        if not isinstance(content, str):
            raise TranslationRefused("the translator's reply has no text")
        return check_answer(content, sent, direction)


class _ServerFailed(aiohttp.ClientError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
