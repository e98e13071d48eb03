"""What `/schema/openapi.json` says beyond the handlers' own types: every error status a route can
send, each with the `{code, description}` body it really carries, and the api-key security schemes.

Litestar documents its own `{status_code, detail}` body for a 400 by default; `broker.api.errors`
never sends that, so every route names its error statuses here instead, and these replace it.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, Reference, SecurityRequirement, SecurityScheme

from broker.models import SubmitResult

__all__ = ["GET", "GET_BY_ID", "POST", "responses", "security"]

_DESCRIPTIONS = {
    400: "The body is not JSON the route accepts (malformed, invalid UTF-8, nested too deep, wrong "
    "types): code 4, the description says what is wrong.",
    401: "A missing or wrong api secret (only when api keys are configured): code 4.",
    404: "The task or account named in the path does not exist: code 4, the same description on every route.",
    413: "The body is larger than server.max_body_bytes: code 4.",
    503: "Redis is unreachable: code 9, with a Retry-After header; try again later.",
}

#: error statuses of a POST route (its own refusals travel as codes in an HTTP 200)
POST = (400, 401, 413, 503)
#: error statuses of a GET route without a path parameter
GET = (401, 503)
#: error statuses of a GET route that names a task or account in its path
GET_BY_ID = (400, 401, 404, 503)


def responses(statuses: Iterable[int]) -> dict[int, ResponseSpec]:
    """The `responses=` of a route handler: each status with the `{code, description}` body."""
    return {
        status: ResponseSpec(
            data_container=SubmitResult, description=_DESCRIPTIONS[status], generate_examples=False
        )
        for status in statuses
    }


def security(has_keys: bool) -> tuple[Components, list[SecurityRequirement] | None]:
    """The security schemes and the requirement: none at all when the API is open (no keys), else
    the secret as the `mj-api-secret` header or as a Bearer token (either one)."""
    if not has_keys:
        return Components(), None
    schemes: dict[str, SecurityScheme | Reference] = {
        "apiSecret": SecurityScheme(type="apiKey", name="mj-api-secret", security_scheme_in="header"),
        "bearer": SecurityScheme(
            type="http", scheme="bearer", description="the api secret as a Bearer token"
        ),
    }
    return Components(security_schemes=schemes), [{"apiSecret": []}, {"bearer": []}]
