"""`/mj/admin/hooks`: the notify hook options (`hooks:` of config.yaml), read and changed.

The workers follow a change without a restart (`workers.delivery.HookDeliverer.use`): the default
URL, the HMAC secret, timeouts, the retry window and the concurrency limits. The secret is accepted
on write and shown as `"***"`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post

from broker.api.admin_write import check_keys, done, write
from broker.api.context import context_of
from broker.config import HookSettings
from broker.config_doc import mapping_at, put, remove
from broker.models import SubmitResult

__all__ = ["ADMIN_HOOK_HANDLERS", "EDITABLE"]

AnyRequest = Request[Any, Any, Any]

#: the options the admin API changes (the deprecated allow_private_addresses only in the file)
EDITABLE = (
    "default_url",
    "secret",
    "request_timeout_seconds",
    "connect_timeout_seconds",
    "give_up_minutes",
    "concurrency",
    "per_host_concurrency",
    "use_env_proxy",
)


def _view(hooks: HookSettings) -> dict[str, Any]:
    data = {name: getattr(hooks, name) for name in EDITABLE}
    data["secret"] = "***" if hooks.secret else ""
    return data


@get("/mj/admin/hooks", include_in_schema=False)
async def hook_options(request: AnyRequest) -> dict[str, Any]:
    return _view(context_of(request).settings.hooks)


@post("/mj/admin/hooks", status_code=200, include_in_schema=False)
async def set_hook_options(request: AnyRequest, data: dict[str, Any]) -> SubmitResult:
    """Set the options the body gives (null = back to the default); the others stay as written."""
    check_keys(data, EDITABLE, "hooks")

    def edit(document: Any) -> None:
        hooks = mapping_at(document, "hooks")
        for key, value in data.items():
            if value is None:
                if key in hooks:
                    remove(hooks, key)
            else:
                put(hooks, key, value)

    ctx = context_of(request)
    await write(ctx, edit)
    return done("hook options changed", None, hooks=_view(ctx.settings.hooks))


ADMIN_HOOK_HANDLERS = [hook_options, set_hook_options]
