"""Error paths end to end: what Discord and Midjourney refuse, and a gateway that drops mid-job."""

from __future__ import annotations

import asyncio
from typing import Any

from e2e_support import Stack, pin


async def imagine(stack: Stack, prompt: str, account: str) -> str:
    reply = await stack.post(
        "/mj/submit/imagine", {"prompt": prompt, "notifyHook": stack.hook_url("errors"), **pin(account)}
    )
    assert reply["code"] in (1, 22), reply
    return str(reply["result"])


async def account_status(stack: Stack, account: str) -> dict[str, Any]:
    response = await stack.api.get(f"/mj/account/{account}/fetch")
    data: dict[str, Any] = response.json()
    return data


async def wait_account(stack: Stack, account: str, state: str, within: float = 15) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    last: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        last = await account_status(stack, account)
        if last.get("status") == state:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"account {account} not {state}: {last}")


async def test_banned_prompt_at_discord_fails_with_the_bots_reason(stack: Stack) -> None:
    task = await stack.wait_task(await imagine(stack, "a bannedword in the garden", "a0"))
    assert task["status"] == "FAILURE"
    assert "banned" in task["failReason"].lower(), task["failReason"]
    await stack.wait_hook(task["id"], "FAILURE")


async def test_invalid_parameter_fails_with_the_bots_reason(stack: Stack) -> None:
    task = await stack.wait_task(await imagine(stack, "a cat on a mat --foo 3", "a0"))
    assert task["status"] == "FAILURE"
    assert "invalid parameter" in task["failReason"].lower(), task["failReason"]


async def test_captcha_pauses_the_account_and_fails_the_task(stack: Stack) -> None:
    await stack.fault(2, "captcha", on=True)
    task = await stack.wait_task(await imagine(stack, "a captcha test", "a2"))
    assert task["status"] == "FAILURE"
    assert "captcha" in task["failReason"].lower(), task["failReason"]
    account = await wait_account(stack, "a2", "PAUSED")
    assert "captcha" in (account.get("statusReason") or "").lower(), account


async def test_ban_disables_the_account_and_fails_its_running_tasks(stack: Stack) -> None:
    await stack.fault(3, "fail_next_job", error="no_response")
    task_id = await imagine(stack, "a job that never answers", "a3")
    submitted = await stack.wait_task(task_id, ("SUBMITTED", "IN_PROGRESS"))
    # SUBMITTED is written before the POST: ban only once Discord has the interaction, else the
    # POST meets the ban and the account is (rightly) disabled by its 401 instead of the close 4004.
    await stack.wait_interaction(submitted["properties"]["nonce"])
    await stack.fault(3, "ban")
    account = await wait_account(stack, "a3", "DISABLED")
    assert "4004" in (account.get("statusReason") or ""), account
    task = await stack.wait_task(task_id)
    assert task["status"] == "FAILURE"
    assert "disabled" in task["failReason"].lower(), task["failReason"]


async def test_rate_limited_interaction_is_retried_once_after_retry_after(stack: Stack) -> None:
    await stack.fault(4, "rate_limit", count=2, retry_after=0.4)
    task = await stack.wait_task(await imagine(stack, "patience is a virtue", "a4"))
    assert task["status"] == "SUCCESS", task
    counters = await stack.counters()
    assert counters["interactions"]["by_nonce"][task["properties"]["nonce"]] == 1


async def test_gateway_reconnect_and_cut_connection_mid_job_still_succeed(stack: Stack) -> None:
    for kind, params in (("reconnect", {}), ("drop", {})):
        await stack.fault(4, "delay_events", seconds=1.0)
        task_id = await imagine(stack, f"a job across a {kind}", "a4")
        submitted = await stack.wait_task(task_id, ("SUBMITTED", "IN_PROGRESS"))
        # Mid-job: Discord has the interaction, its events are held back a second.
        await stack.wait_interaction(submitted["properties"]["nonce"])
        await stack.fault(4, kind, **params)
        mid = await stack.fetch(task_id)
        assert mid is not None and mid["status"] in ("SUBMITTED", "IN_PROGRESS"), (kind, mid)
        await stack.fault(4, "delay_events", seconds=0)
        task = await stack.wait_task(task_id, within=25)
        assert task["status"] == "SUCCESS", (kind, task)
        counters = await stack.counters()
        assert counters["interactions"]["by_nonce"][task["properties"]["nonce"]] == 1


async def test_hooks_are_signed_and_no_secret_reaches_a_log(stack: Stack) -> None:
    """Runs last in the session: every process has logged a whole suite's worth by now."""
    from e2e_support import HOOK_SECRET, SECRET

    from workers.delivery import sign

    task = await stack.wait_task(await imagine(stack, "a signed delivery", "a0"))
    assert task["status"] == "SUCCESS"
    signed = [r for r in stack.receiver.received if r.task.get("id") == task["id"]]
    assert signed
    for received in signed:
        timestamp = int(received.headers["x-mjbroker-timestamp"])
        assert received.headers["x-mjbroker-signature"] == sign(HOOK_SECRET, timestamp, received.body)
    tokens = [account["token"] for account in stack.sim_accounts]
    for name in ("web", "worker", "bridge"):
        text = stack.procs[name].log_path.read_text(errors="replace")
        leaked = [s for s in (SECRET, HOOK_SECRET, *tokens) if s in text]
        assert leaked == [], f"{name} logged a secret"
