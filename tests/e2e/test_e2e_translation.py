"""Prompts in Chinese, end to end: every process real, the translator a local stand-in.

The English prompt is what reaches mjsim (the bot echoes it back as finalPrompt), parameters as
written; a describe with `language: "zh"` gets finalZhPrompt before its SUCCESS hook; a translator
that is down leaves every task intact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Stack, data_url, tiny_png
from translator_stub import TranslatorStub

WORDS = {"一只猫 坐在月亮上": "a cat sitting on the moon"}


class TranslatingStack(Stack):
    def __init__(self, root: Path, translator: TranslatorStub) -> None:
        super().__init__(root, accounts=1)
        self.translator = translator

    def config(self) -> dict[str, Any]:
        translation = {"provider": "openai", "base_url": self.translator.base_url, "timeout_seconds": 2}
        return {**super().config(), "translation": translation}


@pytest.fixture(scope="module")
async def translator() -> AsyncIterator[TranslatorStub]:
    stub = TranslatorStub(WORDS)
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, translator: TranslatorStub) -> AsyncIterator[Stack]:
    running = TranslatingStack(tmp_path_factory.mktemp("e2e-tr"), translator)
    try:
        await running.start()
        yield running
    finally:
        await running.close()


async def submit(stack: Stack, path: str, body: dict[str, Any]) -> str:
    reply = await stack.post(path, {**body, "notifyHook": stack.hook_url()})
    assert reply["code"] == 1, reply
    return str(reply["result"])


async def test_a_chinese_prompt_reaches_midjourney_in_english_with_its_parameters(stack: Stack) -> None:
    prompt = "一只猫 坐在月亮上 --ar 16:9 --chaos 10"
    task = await stack.wait_task(await submit(stack, "/mj/submit/imagine", {"prompt": prompt}))
    assert task["status"] == "SUCCESS", task
    assert task["prompt"] == prompt
    english = "a cat sitting on the moon --ar 16:9 --chaos 10"
    assert task["properties"]["promptEn"] == english
    # as sent: the bridge adds the speed mode's flag (README "Speed modes")
    assert task["promptEn"] == f"{english} --fast"
    # the bot's own echo of what it was sent
    assert task["properties"]["finalPrompt"].startswith(english)


async def test_a_describe_in_chinese_has_finalZhPrompt_in_its_success_hook(stack: Stack) -> None:
    body = {"base64": data_url(tiny_png(5)), "language": "zh"}
    task_id = await submit(stack, "/mj/submit/describe", body)
    hook = await stack.wait_hook(task_id, "SUCCESS")
    final, zh = hook["properties"]["finalPrompt"], hook["properties"]["finalZhPrompt"]
    assert final and "中文:" not in final
    assert "中文:" in zh and zh.count("--ar") == final.count("--ar")  # numbering and parameters kept
    assert "finishing" not in hook["properties"]


async def test_a_translator_that_is_down_leaves_every_task_intact(
    stack: Stack, translator: TranslatorStub
) -> None:
    translator.mode = "down"
    try:
        imagined = await submit(stack, "/mj/submit/imagine", {"prompt": "一只狗 在雪中 --ar 1:1"})
        described = await submit(
            stack, "/mj/submit/describe", {"base64": data_url(tiny_png(6)), "language": "zh"}
        )
        imagine, describe = await stack.wait_task(imagined), await stack.wait_task(described)
    finally:
        translator.mode = "ok"
    assert imagine["status"] == "SUCCESS" and imagine["properties"]["promptEn"] == "一只狗 在雪中 --ar 1:1"
    assert "translation failed" in imagine["properties"]["translationError"]
    assert describe["status"] == "SUCCESS" and describe["properties"]["finalPrompt"]
    assert "finalZhPrompt" not in describe["properties"]
    assert "translation failed" in describe["properties"]["translationError"]


async def test_a_video_prompt_in_chinese_goes_in_english(stack: Stack) -> None:
    body = {"prompt": "一只猫 坐在月亮上", "image": data_url(tiny_png(8)), "batchSize": 1}
    task = await stack.wait_task(await submit(stack, "/mj/submit/video", body))
    assert task["status"] == "SUCCESS", task
    assert task["properties"]["promptEn"] == "a cat sitting on the moon"
    assert "a cat sitting on the moon" in task["properties"]["finalPrompt"]
    assert "--video 1" in task["properties"]["finalPrompt"]
