"""What can go wrong when a request is handled, as a small tree the API maps in one place.

Each class carries the midjourney-proxy `code` of the reply it becomes (`broker.api.errors` maps
them to HTTP 200 + `SubmitResult`), and a message that names its subject. Messages never contain
a token, an api secret or a hook secret, and quote what the client sent through `echo` only, so a
100 kB task id comes back as its first 200 characters.

* BrokerError (9: internal or downstream failure)
    * ValidationFailed (4: the request is wrong; the description says what)
        * NotFound (4: the request names a task or account that does not exist; HTTP 404 on a GET
          that names it in its path)
            * TaskNotFound (4: one message on every route: fetch, image-seed, cancel, action...)
            * AccountNotFound (4: /mj/account/{id}/fetch of an unknown account)
        * ParentNotReady (4: the parent task exists but is not in the needed status)
        * UnknownCustomId (4: the customId is not a known button, or not on the parent)
        * InvalidImage (4: bad base64/data-URL, unknown format, too large)
    * NoAccount (3: no usable account; relays disable their channel on it, so used for nothing else)
    * BannedPrompt (24: the English prompt contains a banned word; nothing stored)
    * QueueFull (23: every candidate account's queue is full; nothing stored)
    * BridgeUnavailable (9: no bridge answered a synchronous call in time, or it failed)
    * NoWorker (9: no worker process is alive: a task would never be followed or timed out)
"""

from __future__ import annotations

from typing import Any, ClassVar

from broker.models import ReturnCode

__all__ = [
    "ECHO_LIMIT",
    "AccountNotFound",
    "BannedPrompt",
    "BridgeUnavailable",
    "BrokerError",
    "InvalidImage",
    "NoAccount",
    "NoWorker",
    "NotFound",
    "ParentNotReady",
    "QueueFull",
    "TaskNotFound",
    "UnknownCustomId",
    "ValidationFailed",
    "cut",
    "echo",
]

#: how many characters of a client's input an error description quotes at most
ECHO_LIMIT = 200


def cut(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut: for messages of other
    libraries that may quote the request (msgspec's `Invalid enum value '...'`)."""
    return text if len(text) <= limit else text[:limit] + "…"


def echo(value: object) -> str:
    """`value` quoted for an error description: the repr of its first `ECHO_LIMIT` characters, an
    ellipsis marking a cut, so no request makes a description longer than its own text."""
    text = value if isinstance(value, str) else str(value)
    quoted = repr(text[:ECHO_LIMIT])
    return quoted if len(text) <= ECHO_LIMIT else quoted + "…"


class BrokerError(Exception):
    """Root of the tree; `code` is the reply's `code`, `properties` its `properties`."""

    code: ClassVar[ReturnCode] = ReturnCode.FAILURE

    def __init__(self, message: str, *, properties: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.properties: dict[str, Any] = properties or {}


class ValidationFailed(BrokerError):
    code = ReturnCode.VALIDATION_ERROR


class NotFound(ValidationFailed):
    """The request names something that does not exist (a GET naming it in its path answers 404)."""


class TaskNotFound(NotFound):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {echo(task_id)} not found")
        self.task_id = task_id


class AccountNotFound(NotFound):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {echo(account_id)} not found")


class ParentNotReady(ValidationFailed):
    def __init__(self, task_id: str, status: str, wanted: str) -> None:
        super().__init__(f"task {echo(task_id)} is {status}, it must be {wanted}")


class UnknownCustomId(ValidationFailed):
    pass


class InvalidImage(ValidationFailed):
    pass


class NoAccount(BrokerError):
    code = ReturnCode.NOT_FOUND


class BannedPrompt(BrokerError):
    code = ReturnCode.BANNED_PROMPT

    def __init__(self, prompt_en: str, banned_word: str) -> None:
        super().__init__(
            f"Banned word detected: {banned_word}",
            properties={"promptEn": prompt_en, "bannedWord": banned_word},
        )
        self.banned_word = banned_word


class QueueFull(BrokerError):
    code = ReturnCode.QUEUE_REJECTED

    def __init__(self, instance_id: str | None = None) -> None:
        props = {"discordInstanceId": instance_id} if instance_id else None
        super().__init__("Queue is full, please try again later", properties=props)


class BridgeUnavailable(BrokerError):
    code = ReturnCode.FAILURE


class NoWorker(BrokerError):
    code = ReturnCode.FAILURE

    def __init__(self) -> None:
        super().__init__(
            "no worker running: start `python -m workers` (nothing was stored; try again once it runs)"
        )
