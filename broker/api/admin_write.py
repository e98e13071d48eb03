"""What the admin routes share: one write of config.yaml, applied to this process at once.

`write(ctx, edit)` runs `broker.config_write.edit_config` in a thread (a file lock and fsyncs) and
then makes this web process take the new settings before it answers, so the admin's next request
sees the change; the other processes (other web workers, workers, bridges) follow the file within
their `ConfigWatcher`'s look (2 s). An edit that would not load answers code 4 with the key path
and leaves the file as it was.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from broker.api.context import ApiContext
from broker.config import ConfigError
from broker.config_write import edit_config
from broker.errors import BrokerError, ValidationFailed, echo
from broker.models import ReturnCode, SubmitResult

__all__ = ["check_keys", "done", "is_env_ref", "write"]

T = TypeVar("T")

_ENV_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


async def write(ctx: ApiContext, edit: Callable[[Any], T]) -> T:
    """Apply `edit` to config.yaml (see `broker.config_write`) and take the result in this process."""
    path = ctx.config_file
    if path is None:
        raise ValidationFailed("this web process was started without a config file: nothing to edit")
    try:
        _, result = await asyncio.to_thread(edit_config, path, edit)
    except ConfigError as exc:  # includes a part of the file shaped otherwise than the edit needs
        raise ValidationFailed(f"config.yaml not changed: {exc}") from None
    except OSError as exc:  # a read-only directory, a full disk: ours to fix, not the request's
        raise BrokerError(f"config.yaml not changed: cannot write it ({exc.strerror})") from None
    ctx.reload_settings()
    return result


def check_keys(body: Mapping[str, Any], allowed: tuple[str, ...] | frozenset[str], what: str) -> None:
    """Code 4 for a key the config section does not have (named, so a typo is found at once)."""
    for key in body:
        if key not in allowed:
            raise ValidationFailed(f"{what}: unknown key {echo(key)} (known: {', '.join(sorted(allowed))})")


def is_env_ref(value: object) -> bool:
    """Whether a secret is written as a `${ENV_VAR}` reference rather than in clear."""
    return isinstance(value, str) and _ENV_REF.fullmatch(value.strip()) is not None


def done(description: str, result: Any = None, **properties: Any) -> SubmitResult:
    """The reply of a change that was made: code 1."""
    return SubmitResult(
        code=ReturnCode.SUCCESS, description=description, result=result, properties=properties
    )
