"""Routes one function serves and another function's OpenAPI document describes, declared where both can import them.

The publish route is served by the publish function and described by the management API's OpenAPI document; its
declaration lives here so that neither function imports the other (nor ``core.http`` the publish request's models).
"""

from __future__ import annotations

from core.http import IDEMPOTENCY_KEY_HEADER, RouteDoc
from core.models import PublishRequest, PublishResponse

PUBLISH_PATH = "/v1/notifications/<channel>/<topic>"
PUBLISH_DOC = RouteDoc(
    {200: PublishResponse},
    errors=(400, 403, 404, 409, 413, 422, 502),
    security="api_key",
    request=PublishRequest,
    headers=("x-topic-hash-x", IDEMPOTENCY_KEY_HEADER),
    summary="Fan a notification out to the topic's integrations.",
    operation_id="publish_notification",
)
