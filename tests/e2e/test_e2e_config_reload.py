"""config.yaml edits reach a running bridge: accounts added start, removed stop, others carry on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from e2e_support import Stack

from broker import keys


def _pin(account_id: str) -> dict[str, object]:
    return {"accountFilter": {"instanceId": account_id}}


async def _state(stack: Stack, account_id: str) -> tuple[str, str]:
    client = stack.client()
    try:
        state, reason = await client.hmget(keys.account_status(account_id), ["state", "reason"])
    finally:
        await client.aclose()
    return (state or b"").decode(), (reason or b"").decode()


async def _exists(stack: Stack, key: str) -> bool:
    client = stack.client()
    try:
        return bool(await client.exists(key))
    finally:
        await client.aclose()


async def _wait_state(stack: Stack, account_id: str, wanted: str, within: float = 20) -> str:
    async with asyncio.timeout(within):
        while True:
            state, reason = await _state(stack, account_id)
            if state == wanted:
                return reason
            await asyncio.sleep(0.1)


async def test_config_reload_adds_and_removes_accounts_without_touching_the_others(tmp_path: Path) -> None:
    stack = Stack(tmp_path, accounts=3, account_overrides={2: {"enabled": False}})
    await stack.start(online=["a0", "a1"])
    try:
        # The bridge took a0 and a1 in one tick, which would have taken a2 too if it were enabled.
        assert not await _exists(stack, keys.account_lease("a2"))
        assert (await _state(stack, "a2"))[0] != "ONLINE"
        # a2 switched on, a0 switched off, a1 left as it is
        stack.account_overrides = {0: {"enabled": False}}
        stack.write_config()
        await stack.wait_accounts_online(["a2"])
        reason = await _wait_state(stack, "a0", "DISABLED")
        assert "config" in reason
        assert (await _state(stack, "a1"))[0] == "ONLINE"
        # a1's session was not restarted: the bridge took the account once
        log = stack.procs["bridge"].log_path.read_text(errors="replace")
        assert log.count("starts the session of account a1") == 1, log[-2000:]
        reply = await stack.post(
            "/mj/submit/imagine",
            {"prompt": "still working after a reload", "accountFilter": {"instanceId": "a1"}},
        )
        task = await stack.wait_task(str(reply["result"]))
        assert task["status"] == "SUCCESS"
        # The web process follows the file too (within its 2 s check): a2 takes work, a0 none.
        for _ in range(50):  # up to 10 s
            reply = await stack.post("/mj/submit/imagine", {"prompt": "new account", **_pin("a2")})
            if reply["code"] in (1, 22):
                break
            await asyncio.sleep(0.2)
        assert reply["code"] in (1, 22), reply
        task = await stack.wait_task(str(reply["result"]))
        assert task["status"] == "SUCCESS" and task["instanceId"] == "a2"
        refused = await stack.post("/mj/submit/imagine", {"prompt": "old account", **_pin("a0")})
        assert refused["code"] == 3, refused
    finally:
        await stack.close()
