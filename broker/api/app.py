"""The litestar application: `create_app(settings)` is the ASGI factory granian serves."""

from __future__ import annotations

import asyncio
import logging
import os

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import YamlRenderPlugin

from broker.api.access_log import LOGGER as ACCESS_LOGGER
from broker.api.access_log import AccessLog
from broker.api.accounts import ACCOUNT_HANDLERS
from broker.api.admin_accounts import ADMIN_ACCOUNT_HANDLERS
from broker.api.admin_hooks import ADMIN_HOOK_HANDLERS
from broker.api.admin_keys import ADMIN_KEY_HANDLERS
from broker.api.admin_page import ADMIN_PAGE_HANDLERS
from broker.api.admin_session import ADMIN_SESSION_HANDLERS
from broker.api.admin_tasks import ADMIN_TASK_HANDLERS
from broker.api.admin_words import ADMIN_WORD_HANDLERS
from broker.api.auth import door_middleware
from broker.api.body import ApiRequest
from broker.api.context import ApiContext
from broker.api.errors import EXCEPTION_HANDLERS
from broker.api.followups import FOLLOWUP_HANDLERS
from broker.api.health import HEALTH_HANDLERS
from broker.api.image_routes import IMAGE_HANDLERS
from broker.api.metrics import METRICS_HANDLERS
from broker.api.observe import observe_middleware
from broker.api.schema import security
from broker.api.schema_assets import local_swagger, swagger_assets
from broker.api.schema_page import OperationsPage
from broker.api.submit import SUBMIT_HANDLERS
from broker.api.tasks import TASK_HANDLERS
from broker.api.usage import USAGE_HANDLERS
from broker.api.video import VIDEO_HANDLERS
from broker.api.web_only import WEB_ONLY_HANDLERS
from broker.config import Settings, config_path, load_settings
from broker.config_watcher import ConfigWatcher
from broker.logs import RedactSecrets, setup_logging, wants_json
from broker.metrics import MetricsPublisher
from broker.redis_client import open_redis
from broker.shutdown import cancel_and_wait

__all__ = ["RedactSecrets", "create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; Redis is connected at startup and closed at shutdown.

    :param settings: the settings to serve; None reads `load_settings()` (MJBROKER_CONFIG or ./config.yaml).
    """
    watcher = None
    if settings is None:
        path = config_path()
        settings = load_settings(path)
        watcher = ConfigWatcher(path, settings)
    setup_logging(settings.secrets())
    ctx = ApiContext(settings, watcher=watcher)
    if not settings.api_keys:
        log.warning("no api_keys configured: the API is open to anyone who can reach it")
    server = settings.server
    access = None
    if server.access_log and logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO):
        access = AccessLog(secrets=settings.secrets(), json=wants_json())
    publishing: list[tuple[MetricsPublisher, asyncio.Task[None]]] = []

    async def startup() -> None:
        ctx.open(open_redis(settings))
        publisher = MetricsPublisher(
            ctx.redis,
            ctx.metrics,
            role="web",
            process=ctx.metrics_process,
            every=server.metrics_interval_seconds,
        )
        publishing.append((publisher, asyncio.create_task(publisher.run(), name="metrics")))
        # `python -m broker.api` says where granian listens (a --port may override the config)
        where = os.environ.get("MJBROKER_WEB_ADDRESS") or f"{server.host}:{server.port}"
        log.info("web ready on %s (pid %d)", where, os.getpid())

    async def shutdown() -> None:
        for publisher, task in publishing:
            await cancel_and_wait(task)
            await publisher.close()
        publishing.clear()
        await ctx.close()
        if access is not None:
            access.flush()

    components, requirement = security(bool(settings.api_keys))

    return Litestar(
        route_handlers=[
            *SUBMIT_HANDLERS,
            *FOLLOWUP_HANDLERS,
            *VIDEO_HANDLERS,
            *TASK_HANDLERS,
            *ACCOUNT_HANDLERS,
            *HEALTH_HANDLERS,
            *ADMIN_SESSION_HANDLERS,
            *WEB_ONLY_HANDLERS,
            *ADMIN_ACCOUNT_HANDLERS,
            *ADMIN_KEY_HANDLERS,
            *ADMIN_WORD_HANDLERS,
            *ADMIN_HOOK_HANDLERS,
            *ADMIN_TASK_HANDLERS,
            *USAGE_HANDLERS,
            *ADMIN_PAGE_HANDLERS,
            swagger_assets(),
            *METRICS_HANDLERS,
            *IMAGE_HANDLERS,
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
        middleware=[observe_middleware(ctx.metrics, access=access), door_middleware(lambda: ctx.settings)],
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
            # no page needs a CDN: Swagger UI's files are served from /schema/assets
            render_plugins=[
                OperationsPage(),
                local_swagger("/swagger"),
                YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
            ],
        ),
        state=State({"ctx": ctx}),
        logging_config=None,
        debug=False,
    )
