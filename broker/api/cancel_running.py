"""Cancelling a task that runs on Discord: press the bot's "Cancel Job", let the job end Stopped.

The web records the request on the task first (`properties.cancelRequestedTime`), then asks the
bridge that holds the account to press the ``MJ::CancelJob::ByJobid::<hash>`` button the bot put on
the job's message (`properties.cancelCustomId`). The bot stops the job and edits the message to
``(Stopped)``; the worker that reads it fails the task with failReason ``cancelled`` (and, as for
every failure, frees the slot and sends the hook). The reply does not wait for that: it says the
button was pressed.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from broker.api.context import ApiContext
from broker.bridge_calls import call_bridge, new_call
from broker.errors import BridgeUnavailable, ValidationFailed
from broker.models import ReturnCode, SubmitResult, Task, TaskStatus

__all__ = ["CANCEL_TIMEOUT_SECONDS", "cancel_running"]

#: how long the web waits for the bridge to press the button
CANCEL_TIMEOUT_SECONDS = 20.0
_RUNNING = (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS)


async def cancel_running(ctx: ApiContext, task: Task) -> SubmitResult:
    """Ask the bot to stop `task`'s job; code 1 once the button is pressed, else code 4 or 9."""
    if not task.properties.cancel_custom_id:
        raise ValidationFailed(
            f"task {task.id} cannot be cancelled yet: the bot has not shown the job's Cancel Job "
            "button (the job has not started); try again in a moment"
        )
    account = await ctx.admitter.account_of(task)
    now = ctx.clock()

    def ask(current: Task) -> Task | None:
        if current.status not in _RUNNING or current.properties.cancel_requested_time is not None:
            return None
        props = msgspec.structs.replace(current.properties, cancel_requested_time=now)
        return msgspec.structs.replace(current, properties=props)

    update = await ctx.store.update(task.id, ask)
    if update.task is None or update.task.status not in _RUNNING:
        status = update.task.status if update.task else "gone"
        raise ValidationFailed(f"task {task.id} is {status} and cannot be cancelled")
    try:
        await call_bridge(
            ctx.redis, account.id, new_call("cancel", task_id=task.id, timeout=CANCEL_TIMEOUT_SECONDS)
        )
    except BridgeUnavailable:
        # Not pressed: a later, unrelated "(Stopped)" must not read as the client's cancel.
        await ctx.store.update(task.id, _forget_request(now))
        raise
    return SubmitResult(
        code=ReturnCode.SUCCESS,
        description="Cancel requested: the job is being stopped on Discord (failReason 'cancelled')",
        result=task.id,
    )


def _forget_request(at: int) -> Callable[[Task], Task | None]:
    def mutate(current: Task) -> Task | None:
        if current.properties.cancel_requested_time != at or current.status.is_terminal:
            return None
        props = msgspec.structs.replace(current.properties, cancel_requested_time=None)
        return msgspec.structs.replace(current, properties=props)

    return mutate
