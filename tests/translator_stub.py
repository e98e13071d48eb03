"""A small OpenAI-compatible chat server standing in for a translator (the third-party seam).

It answers `POST /v1/chat/completions` by looking each piece of the JSON array it is sent up in
`words` (towards English) or by prefixing it with 中文: (towards Chinese). `mode` makes it misbehave:
"down" (HTTP 503), "slow" (answers after `delay` s), "chatty" (words around the array), "params"
(adds a parameter to a piece).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from broker.redis_server import free_port

__all__ = ["TranslatorStub"]


class TranslatorStub:
    def __init__(self, words: dict[str, str] | None = None) -> None:
        self.words = words or {}
        self.mode = "ok"
        self.delay = 5.0
        self.calls: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({"body": body, "authorization": request.headers.get("Authorization")})
        if self.mode == "down":
            return web.Response(status=503, text="overloaded")
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        pieces = json.loads(user)
        if "into English" in system:
            answer = [self.words.get(p, f"english for {len(p)} letters") for p in pieces]
        else:
            answer = [f"中文:{p}" for p in pieces]
        if self.mode == "params":
            answer[-1] += " --ar 2:3"
        content = json.dumps(answer, ensure_ascii=False)
        if self.mode == "chatty":
            content = f"Sure! Here is the translation: {content}"
        return web.json_response(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        )
