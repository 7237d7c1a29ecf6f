"""Lambda adapter of the management API: health, notification status, topics, dead letters, promotions, purchases
and payments (admin).

Each feature's routes are its module's router (``api/status.py``, ``api/topics.py``, ``api/dead_letters.py``,
``api/purchases.py``), imported at the first request to one of them: a container loads the models and stores of the
features its requests use, not every feature's at its cold start.
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, ConfigDict

# Every route but health and the document reads AWS: botocore's session loads at the cold start, as in every function,
# not at a first request (a feature's module, imported then, brings its own models and stores only).
import core.clients  # noqa: F401
from core.http import Response, RouteDoc, Router, json_response
from core.observability import logger, metrics, tracer
from core.roles.api import ApiSettings
from core.settings import load_settings
from core.validation import Reply

app = Router()
# An admin route answers 401/403 from the authorizer; every route that reads AWS may answer 502.
ADMIN_ERRORS = (401, 403, 502)
TOPIC = "/v1/channels/{channel}/topics/{topic}"
app.include("api.status", [("GET", "/v1/notifications/{channel}")])
app.include(
    "api.topics",
    [
        ("PUT", TOPIC),
        ("GET", TOPIC),
        ("GET", "/v1/channels/{channel}/topics"),
        ("DELETE", TOPIC),
        ("POST", f"{TOPIC}/rotate-hash"),
    ],
)
app.include("api.dead_letters", [("GET", "/v1/dead-letters"), ("POST", "/v1/dead-letters/redrive")])
app.include(
    "api.purchases",
    [
        ("PUT", "/v1/promotions/{code}"),
        ("GET", "/v1/promotions/{code}"),
        ("DELETE", "/v1/promotions/{code}"),
        ("GET", "/v1/promotions"),
        ("GET", "/v1/purchases/{purchase_id}"),
        ("GET", "/v1/payments/{payment_id}"),
    ],
)


class HealthResponse(Reply):
    """Body of ``GET /v1/health``."""

    status: Literal["ok"]


class OpenApiResponse(BaseModel):
    """Body of ``GET /v1/openapi.json``: an OpenAPI 3 document."""

    model_config = ConfigDict(extra="allow", defer_build=True)


def settings() -> ApiSettings:
    """Return this function's settings, parsed at the container's first invocation; a missing variable fails it."""
    return load_settings(ApiSettings)


@app.get("/v1/health", RouteDoc({200: HealthResponse}))
def health() -> Response:
    """Say the API is up; needs no key."""
    return json_response(200, {"status": "ok"})


@app.get("/v1/openapi.json", RouteDoc({200: OpenApiResponse}))
def get_openapi_document() -> Response:
    """Serve this API's OpenAPI 3 document; needs no key."""
    # The document's code and models load on its first request only, never at cold start.
    from api.openapi import document_json

    return Response(status_code=200, body=document_json())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point of the management API function."""
    settings()
    return app.resolve(event, context)
