"""The litestar application: `create_app(settings)` is the ASGI factory granian serves."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin

from broker.api.accounts import ACCOUNT_HANDLERS
from broker.api.admin_session import ADMIN_SESSION_HANDLERS
from broker.api.auth import door_middleware
from broker.api.body import ApiRequest
from broker.api.context import ApiContext
from broker.api.errors import EXCEPTION_HANDLERS
from broker.api.followups import FOLLOWUP_HANDLERS
from broker.api.health import HEALTH_HANDLERS
from broker.api.image_routes import IMAGE_HANDLERS
from broker.api.schema import security
from broker.api.schema_page import OperationsPage
from broker.api.submit import SUBMIT_HANDLERS
from broker.api.tasks import TASK_HANDLERS
from broker.config import Settings, config_path, load_settings
from broker.config_watcher import ConfigWatcher
from broker.redis_client import connect

__all__ = ["RedactSecrets", "create_app"]

log = logging.getLogger(__name__)


class RedactSecrets(logging.Filter):
    """Replaces any configured secret in a log record by `***` (defence in depth: none should be there)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text or ""
        if any(s in text or s in exc_text for s in self.secrets):
            for secret in self.secrets:
                text = text.replace(secret, "***")
                exc_text = exc_text.replace(secret, "***")
            record.msg, record.args, record.exc_text = text, None, exc_text or None
        return True


def _setup_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact = RedactSecrets(settings.secrets())
    for handler in root.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(redact)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; Redis is connected at startup and closed at shutdown.

    :param settings: the settings to serve; None reads `load_settings()` (MJBROKER_CONFIG or ./config.yaml).
    """
    watcher = None
    if settings is None:
        path = config_path()
        settings = load_settings(path)
        watcher = ConfigWatcher(path, settings)
    _setup_logging(settings)
    ctx = ApiContext(settings, watcher=watcher)
    if not settings.api_keys:
        log.warning("no api_keys configured: the API is open to anyone who can reach it")

    async def startup() -> None:
        ctx.open(connect(settings.redis_url, settings.redis))

    async def shutdown() -> None:
        await ctx.close()

    components, requirement = security(bool(settings.api_keys))

    return Litestar(
        route_handlers=[
            *SUBMIT_HANDLERS,
            *FOLLOWUP_HANDLERS,
            *TASK_HANDLERS,
            *ACCOUNT_HANDLERS,
            *HEALTH_HANDLERS,
            *ADMIN_SESSION_HANDLERS,
            *IMAGE_HANDLERS,
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
        middleware=[door_middleware(lambda: ctx.settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=ApiRequest,
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="mjbroker",
            version="0.1.0",
            description="midjourney-proxy compatible task broker",
            path="/schema",
            components=components,
            security=requirement,
            # the first page needs no CDN; /schema/openapi.json is served in any case
            render_plugins=[
                OperationsPage(),
                SwaggerRenderPlugin(path="/swagger"),
                RedocRenderPlugin(path="/redoc"),
                YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
            ],
        ),
        state=State({"ctx": ctx}),
        logging_config=None,
        debug=False,
    )
