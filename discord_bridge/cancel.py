"""The bridge half of cancelling a running job: press the bot's "Cancel Job" on the job's message.

Called through `broker.bridge_calls` (kind ``cancel``) after the web recorded the request on the
task. The click goes to the message that carries the button (the job's start/progress message) with
a fresh nonce, indexed to the task so that whatever the bot answers to the click reaches it; the job's
``(Stopped)`` edit is read by the workers like any other progress edit.
"""

from __future__ import annotations

from broker.discord import application_id_for
from broker.models import TaskStatus
from broker.store import TaskStore
from discord_bridge import payloads
from discord_bridge.rest import DiscordError, RestClient
from discord_bridge.session import Session

__all__ = ["press_cancel"]

_RUNNING = (TaskStatus.SUBMITTED, TaskStatus.IN_PROGRESS)


async def press_cancel(task_id: str, *, store: TaskStore, session: Session, rest: RestClient) -> str:
    """Press Cancel Job for `task_id`; returns the task id. Raises `DiscordError` with the reason."""
    task = await store.get(task_id)
    if task is None:
        raise DiscordError(f"task {task_id} not found")
    if task.status not in _RUNNING:
        raise DiscordError(f"task {task.id} is {task.status}: nothing runs to cancel")
    props = task.properties
    custom_id = props.cancel_custom_id
    message_id = props.progress_message_id
    if not custom_id or not message_id:
        raise DiscordError(f"task {task.id} has no Cancel Job button to press yet")
    session_id = session.session_id
    if not session_id:
        raise DiscordError("the Discord session dropped; nothing was pressed")
    nonce = payloads.new_nonce()
    await store.index("nonce", nonce, task.id)
    account = rest.account
    payload = payloads.button_click(
        application_id=application_id_for(task.bot_type),
        guild_id=account.guild_id,
        channel_id=account.channel_id,
        session_id=session_id,
        nonce=nonce,
        message_id=message_id,
        message_flags=int(props.flags or 0),
        custom_id=custom_id,
    )
    await rest.post_interaction(payload)
    return task.id
