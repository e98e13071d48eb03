"""The `/schema` page: the operations of the OpenAPI schema as plain HTML, readable offline.

It needs nothing but the schema: one table row per operation (method, path, summary, statuses),
with links to the JSON and YAML schema and to the interactive Swagger UI (`/schema/swagger`, whose
files the web serves itself: `broker.api.schema_assets`).
"""

from __future__ import annotations

import html
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

__all__ = ["OperationsPage"]

_METHODS = ("get", "post", "put", "patch", "delete")


class OperationsPage(OpenAPIRenderPlugin):
    """A static page listing every operation; no script, no stylesheet from elsewhere."""

    def __init__(self, *, path: str = "/") -> None:
        super().__init__(path=path, favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        json_url = self.get_openapi_json_route(request)
        base = html.escape(json_url.rsplit("/", 1)[0])
        info = openapi_schema.get("info", {})
        title = html.escape(str(info.get("title", "API")))
        rows = []
        # a route next to its /mj-fast, /mj-relax and /mj-turbo aliases
        paths = sorted(openapi_schema.get("paths", {}).items(), key=lambda p: (p[0].split("/mj/")[-1], p[0]))
        for path, item in paths:
            for method in _METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                statuses = ", ".join(sorted(operation.get("responses", {})))
                rows.append(
                    f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                    f"<td>{html.escape(str(operation.get('summary', '')))}</td><td>{statuses}</td></tr>"
                )
        schemes = openapi_schema.get("components", {}).get("securitySchemes") or {}
        auth = (
            "Send the api secret as the <code>mj-api-secret</code> header or as "
            "<code>Authorization: Bearer &lt;secret&gt;</code>."
            if schemes
            else "No api keys are configured: the API is open."
        )
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title} {html.escape(str(info.get("version", "")))}</h1>
<p>{html.escape(str(info.get("description", "")))}</p>
<p>{auth} Errors are <code>{{"code": 4, "description": ...}}</code>; see the README's code table.</p>
<p>Schema: <a href="{base}/openapi.json">openapi.json</a>, <a href="{base}/openapi.yaml">openapi.yaml</a>.
Interactive: <a href="{base}/swagger">Swagger UI</a>.</p>
<table border="1" cellpadding="4">
<tr><th>method</th><th>path</th><th>summary</th><th>statuses</th></tr>
{chr(10).join(rows)}
</table>
</body></html>
"""
        return page.encode()
