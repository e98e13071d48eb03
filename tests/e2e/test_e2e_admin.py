"""The admin API on the whole stack: its changes reach a running bridge and worker without a restart.

An account created through the API is taken by the running bridge and serves a task through
mjsim; a reconnect opens a new gateway session (mjsim counts one more IDENTIFY); a
banned word added refuses prompts with code 24; a revoked key gets 401; a new hook secret signs
the worker's next deliveries; and config.yaml keeps the operator's comments through all of it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml
from e2e_support import Stack

from broker import keys
from workers.delivery import sign

ADMIN_SECRET = "e2e-admin-secret-Rk5Wm"
ADMIN = {"mj-api-secret": ADMIN_SECRET}
NEW_HOOK_SECRET = "rotated-hook-secret-Tq8"


class AdminStack(Stack):
    """A stack whose config.yaml holds account a0 only (mjsim knows a1 too), an admin key, and an
    operator's comments."""

    def config(self) -> dict[str, Any]:
        document = super().config()
        document["accounts"] = document["accounts"][:1]
        document["api_keys"].append({"name": "ops", "secret": ADMIN_SECRET, "role": "admin"})
        return document

    def write_config(self) -> None:
        lines = ["# operator: keep this header"]
        for line in yaml.safe_dump(self.config(), sort_keys=False).splitlines():
            if not line.startswith((" ", "-")):
                lines.append(f"# section {line.split(':')[0]}")
            lines.append(f"{line}  # why {len(lines)}" if line.endswith(":") else line)
        self.config_path.write_text("\n".join(lines) + "\n")


def comments(text: str) -> list[str]:
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


async def _admin(stack: Stack, path: str, body: Any = None) -> dict[str, Any]:
    response = await stack.api.post(path, json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert data["code"] == 1, data
    return data


async def _identifies(stack: Stack, account_index: int) -> int:
    user_id = stack.sim_accounts[account_index]["user_id"]
    return int((await stack.counters())["gateway"]["identifies"].get(user_id, 0))


async def _eventually(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"{what} not within {within}s"
        await asyncio.sleep(0.1)


async def test_admin_changes_reach_the_running_stack_without_a_restart(tmp_path: Path) -> None:
    stack = AdminStack(tmp_path, accounts=2)
    await stack.start(online=["a0"])
    try:
        before = comments(stack.config_path.read_text())
        sim = stack.sim_accounts[1]
        await _admin(
            stack,
            "/mj/admin/accounts",
            {"id": "a1", "guild_id": sim["guild_id"], "channel_id": sim["channel_id"], "token": sim["token"]},
        )
        await stack.wait_accounts_online(["a1"], within=20)
        reply = await stack.post(
            "/mj/submit/imagine", {"prompt": "from a new account", "accountFilter": {"instanceId": "a1"}}
        )
        assert reply["code"] in (1, 22), reply
        task = await stack.wait_task(str(reply["result"]))
        assert task["status"] == "SUCCESS" and task["instanceId"] == "a1"

        # reconnect: the bridge drops a1's session and IDENTIFYs again (not a RESUME)
        identifies = await _identifies(stack, 1)
        assert identifies >= 1
        asked = await _admin(stack, "/mj/admin/accounts/a1/reconnect")
        assert asked["properties"]["bridge"]
        await _eventually(lambda: _more_identifies(stack, identifies), 15, "a new IDENTIFY")
        await stack.wait_accounts_online(["a1"], within=20)
        assert "a1: reconnect asked by an admin" in stack.procs["bridge"].log_path.read_text()
        assert await _key_gone(stack, keys.account_reconnect("a1"))

        # a banned word added is refused at once (the web that wrote the file took it)
        await _admin(stack, "/mj/admin/banned-words", {"words": ["zebracorn"]})
        banned = await stack.post("/mj/submit/imagine", {"prompt": "a zebracorn"})
        assert banned["code"] == 24, banned

        # a client key added works; revoked, it gets 401
        app = {"mj-api-secret": "e2e-app-secret-Lp3Vd9"}
        await _admin(stack, "/mj/admin/api-keys", {"name": "app", "secret": "e2e-app-secret-Lp3Vd9"})
        assert (await stack.api.get("/mj/task/list", headers=app)).status_code == 200
        await _admin(stack, "/mj/admin/api-keys/app/revoke")
        assert (await stack.api.get("/mj/task/list", headers=app)).status_code == 401

        # a new hook secret signs the worker's deliveries once it has read the file (a few seconds)
        await _admin(stack, "/mj/admin/hooks", {"secret": NEW_HOOK_SECRET})
        await _eventually(lambda: _signed_with_new_secret(stack), 30, "a hook signed with the new secret")

        # disabled: the bridge stops the account; enabled again, it comes back
        await _admin(stack, "/mj/admin/accounts/a0/disable")
        refused = await stack.post(
            "/mj/submit/imagine", {"prompt": "pinned", "accountFilter": {"instanceId": "a0"}}
        )
        assert refused["code"] == 3, refused
        await _admin(stack, "/mj/admin/accounts/a0/enable")
        await stack.wait_accounts_online(["a0"], within=20)

        assert comments(stack.config_path.read_text()) == before
        text = stack.config_path.read_text()
        assert "zebracorn" in text and NEW_HOOK_SECRET in text and "e2e-app-secret" not in text
        assert NEW_HOOK_SECRET not in stack.procs["web"].log_path.read_text()
    finally:
        await stack.close()


async def _more_identifies(stack: Stack, than: int) -> bool:
    return await _identifies(stack, 1) > than


async def _key_gone(stack: Stack, key: str) -> bool:
    client = stack.client()
    try:
        return not await client.exists(key)
    finally:
        await client.aclose()


async def _signed_with_new_secret(stack: Stack) -> bool:
    """Submit one task with a hook; True once a delivery carries the new secret's signature."""
    hook = stack.hook_url("admin-hooks")
    reply = await stack.post("/mj/submit/imagine", {"prompt": "signed", "notifyHook": hook})
    assert reply["code"] in (1, 22), reply
    await stack.wait_task(str(reply["result"]))
    for received in stack.receiver.for_path("admin-hooks"):
        timestamp = int(received.headers.get("x-mjbroker-timestamp", "0"))
        if received.headers.get("x-mjbroker-signature") == sign(NEW_HOOK_SECRET, timestamp, received.body):
            return True
    return False
