"""What can go wrong when a request is handled, as a small tree the API maps in one place.

Each class carries the midjourney-proxy `code` of the reply it becomes (`broker.api.errors` maps
them to HTTP 200 + `SubmitResult`), and a message that names its subject. Messages never contain
a token, an api secret or a hook secret.

* BrokerError (9: internal or downstream failure)
    * ValidationFailed (4: the request is wrong; the description says what)
        * ParentNotFound (4: the taskId of an action/modal/change is unknown)
        * ParentNotReady (4: the parent task exists but is not in the needed status)
        * UnknownCustomId (4: the customId is not a known button, or not on the parent)
        * InvalidImage (4: bad base64/data-URL, unknown format, too large)
    * NoAccount (3: no usable account; relays disable their channel on it, so used for nothing else)
    * TaskNotFound (3: /image-seed of an unknown task, as midjourney-proxy answers)
    * BannedPrompt (24: the English prompt contains a banned word; nothing stored)
    * QueueFull (23: every candidate account's queue is full; nothing stored)
    * BridgeUnavailable (9: no bridge answered a synchronous call in time, or it failed)
    * NoWorker (9: no worker process is alive: a task would never be followed or timed out)
"""

from __future__ import annotations

from typing import Any, ClassVar

from broker.models import ReturnCode

__all__ = [
    "BannedPrompt",
    "BridgeUnavailable",
    "BrokerError",
    "InvalidImage",
    "NoAccount",
    "NoWorker",
    "ParentNotFound",
    "ParentNotReady",
    "QueueFull",
    "TaskNotFound",
    "UnknownCustomId",
    "ValidationFailed",
]


class BrokerError(Exception):
    """Root of the tree; `code` is the reply's `code`, `properties` its `properties`."""

    code: ClassVar[ReturnCode] = ReturnCode.FAILURE

    def __init__(self, message: str, *, properties: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.properties: dict[str, Any] = properties or {}


class ValidationFailed(BrokerError):
    code = ReturnCode.VALIDATION_ERROR


class ParentNotFound(ValidationFailed):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id


class ParentNotReady(ValidationFailed):
    def __init__(self, task_id: str, status: str, wanted: str) -> None:
        super().__init__(f"task {task_id!r} is {status}, it must be {wanted}")


class UnknownCustomId(ValidationFailed):
    pass


class InvalidImage(ValidationFailed):
    pass


class NoAccount(BrokerError):
    code = ReturnCode.NOT_FOUND


class TaskNotFound(BrokerError):
    code = ReturnCode.NOT_FOUND

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")


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
