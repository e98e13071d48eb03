"""Swagger UI's files served by the web itself, so every page under `/schema` works offline.

Litestar's Swagger page loads swagger-ui from a CDN by default; the `swagger-ui-bundle` package
ships swagger-ui's own dist files, which are served here at `/schema/assets/` (open, like the rest of
`/schema`) and named in the page instead. ReDoc has no such package on PyPI, so its page is not
offered rather than fetched from a CDN: `/schema` (operations as plain HTML), Swagger UI and the
JSON/YAML schema cover the same ground.
"""

from __future__ import annotations

from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

__all__ = ["ASSETS_PATH", "local_swagger", "swagger_assets"]

ASSETS_PATH = "/schema/assets"


def swagger_assets() -> Router:
    """The router serving swagger-ui's dist directory at `ASSETS_PATH`."""
    return create_static_files_router(path=ASSETS_PATH, directories=[swagger_ui_path], name="swagger-assets")


def local_swagger(path: str = "/swagger") -> SwaggerRenderPlugin:
    """Litestar's Swagger UI page, with its script, preset, stylesheet and icon from `ASSETS_PATH`."""
    return SwaggerRenderPlugin(
        path=path,
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )
