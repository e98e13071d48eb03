"""Describe's "🎉 Imagine all" (`MJ::Job::PicReader::all`) through `/mj/submit/action`.

midjourney-proxy (trueai) runs it as one imagine task per described prompt, each pressing
``MJ::Job::PicReader::<n>`` and answering the bot's modal with its prompt at once, and answers code 1
with the new task ids joined by commas in `result`. mjbroker does the same, and also lists them in
`properties.taskIds`. Each child is admitted on its own, so each follows the account's queue rules.
"""

from __future__ import annotations

import msgspec

from broker.actions import ActionPlan, build_child
from broker.api.context import ApiContext
from broker.config import Account
from broker.errors import QueueFull
from broker.models import ReturnCode, SpeedMode, SubmitResult, Task, TaskStatus

__all__ = ["imagine_all"]


async def imagine_all(
    ctx: ApiContext,
    parent: Task,
    plan: ActionPlan,
    *,
    account: Account,
    state: str | None,
    hook: str | None,
    api_key: str | None,
    mode: SpeedMode | None,
) -> SubmitResult:
    """Admit one auto-submitted imagine per pick; code 1 (22 when one waits) with every id admitted.

    Raises `QueueFull` only when not even the first could be admitted; picks after a full queue are
    left out, and the description says how many ran.
    """
    ids: list[str] = []
    queued = False
    for custom_id, prompt in plan.picks:
        index = int(custom_id.rsplit("::", 1)[1])
        pick = msgspec.structs.replace(plan, prompt=prompt, picks=[], index=index)
        child = build_child(
            parent,
            pick,
            task_id=ctx.admitter.new_id(),
            now=ctx.clock(),
            custom_id=custom_id,
            state=state,
            notify_hook=hook,
            api_key_name=api_key,
        )
        # The modal is answered by the bridge with the prompt (no /mj/submit/modal): not parked.
        child = msgspec.structs.replace(child, status=TaskStatus.NOT_START, request_mode=mode)
        try:
            admitted = await ctx.admitter.submit_followup(child, account=account)
        except QueueFull:
            if not ids:
                raise
            break
        ids.append(admitted.task.id)
        queued = queued or admitted.code == ReturnCode.IN_QUEUE
    wanted = len(plan.picks)
    description = "Submit success" if len(ids) == wanted else f"{len(ids)} of {wanted} submitted, queue full"
    return SubmitResult(
        code=ReturnCode.IN_QUEUE if queued else ReturnCode.SUCCESS,
        description=description,
        result=",".join(ids),
        properties={"discordInstanceId": account.channel_id, "taskIds": ids},
    )
