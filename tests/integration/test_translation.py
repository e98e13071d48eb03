"""The translator against a stand-in OpenAI-compatible server, with the cache in real Redis; and
the web's handling of it (promptEn, a translator down, translation.required)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from api_support import AUTH, running_web
from translator_stub import TranslatorStub

from broker.config import TranslationSettings
from broker.redis_server import EmbeddedRedis
from broker.translation import Translator

WORDS = {"一只猫": "a cat", "一只猫 坐在月亮上": "a cat sitting on the moon"}


@pytest.fixture
async def stub() -> AsyncIterator[TranslatorStub]:
    server = TranslatorStub(WORDS)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def settings(stub: TranslatorStub, **extra: object) -> TranslationSettings:
    base: dict[str, object] = {
        "provider": "openai",
        "base_url": stub.base_url,
        "api_key": "sk-test-Vq93kd",
        "timeout_seconds": 2.0,
    }
    return TranslationSettings(**{**base, **extra})  # type: ignore[arg-type]


async def test_prose_is_translated_once_then_served_from_the_cache(
    stub: TranslatorStub, redis: aioredis.Redis
) -> None:
    translator = Translator(settings(stub), redis)
    try:
        prompt = "一只猫 坐在月亮上 --ar 16:9 --no 红色"
        first = await translator.to_english(prompt)
        assert first.text == "a cat sitting on the moon --ar 16:9 --no 红色" and first.error is None
        assert stub.calls[0]["authorization"] == "Bearer sk-test-Vq93kd"
        assert "--ar" not in str(stub.calls[0]["body"]["messages"][1])  # parameters never leave
        again = await translator.to_english(prompt)
        assert again == first and len(stub.calls) == 1
        assert (await translator.to_english("a dog --ar 1:1")).text == "a dog --ar 1:1"
        assert len(stub.calls) == 1  # nothing to translate: no call
    finally:
        await translator.close()


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("down", "unreachable"),
        ("slow", "no answer within 1 s"),
        ("chatty", "not a JSON array"),
        ("params", "adds a parameter"),
    ],
)
async def test_a_failing_translator_leaves_the_prompt_as_written(
    stub: TranslatorStub, redis: aioredis.Redis, mode: str, why: str
) -> None:
    stub.mode = mode
    translator = Translator(settings(stub, timeout_seconds=1.0, retries=1), redis)
    try:
        started = time.monotonic()
        result = await translator.to_english("一只猫 --ar 1:1")
        assert result.text == "一只猫 --ar 1:1"
        assert result.error is not None and why in result.error
        assert "sk-test" not in result.error
        assert time.monotonic() - started < 1.9  # bounded by timeout_seconds, retries included
        assert len(stub.calls) == (2 if mode == "down" else 1)  # a 503 is tried again once
    finally:
        await translator.close()


async def test_the_web_sends_promptEn_and_refuses_only_when_required(
    stub: TranslatorStub, redis_server: EmbeddedRedis
) -> None:
    translation = {"provider": "openai", "base_url": stub.base_url, "timeout_seconds": 1}
    with running_web(redis_server, translation=translation, banned_words=["moon", "禁词"]) as web:
        async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=10) as http:
            # banned words are checked on the English prompt and on the prompt as written
            banned = (await http.post("/mj/submit/imagine", json={"prompt": "一只猫 坐在月亮上"})).json()
            assert banned["code"] == 24 and banned["properties"]["promptEn"] == "a cat sitting on the moon"
            banned = (await http.post("/mj/submit/imagine", json={"prompt": "禁词 --ar 1:1"})).json()
            assert banned["code"] == 24
    required = {**translation, "required": True}
    stub.mode = "down"
    with running_web(redis_server, translation=required) as web:
        async with httpx.AsyncClient(base_url=web.url, headers=AUTH, timeout=10) as http:
            refused = (await http.post("/mj/submit/imagine", json={"prompt": "一只猫"})).json()
            assert refused["code"] == 4 and "translation" in refused["description"]
            assert "sk-" not in refused["description"]
