"""The API's OpenAPI 3 document, generated from the routers' declared models; built once per container.

Only ``GET /v1/openapi.json`` imports this module, on its first request: the document costs nothing at cold start,
and the publish function never loads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from core.http import (
    IDEMPOTENCY_KEY_HEADER,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    ErrorResponse,
    RouteDoc,
    Router,
    resource_template,
)
from core.routes import PUBLISH_DOC, PUBLISH_PATH
from core.sns import SNS_DOC, SNS_PATH

TITLE = "Notification service"
VERSION = "1"
REF_TEMPLATE = "#/components/schemas/{model}"
# Headers whose rule is more than "a string": what the routes refuse otherwise (422).
HEADER_SCHEMAS = {
    IDEMPOTENCY_KEY_HEADER: {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
}
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "api_key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "admin": {"type": "http", "scheme": "bearer"},
}


# Routes another function serves, described here from their declaration in ``core``: the publish function's.
DECLARED: tuple[tuple[str, str, RouteDoc], ...] = (
    ("POST", resource_template(PUBLISH_PATH), PUBLISH_DOC),
    ("POST", resource_template(SNS_PATH), SNS_DOC),
)


def routers() -> list[Router]:
    """Return the routers this document describes: the management API's, and the Stripe webhook's, the audience's and
    the realtime token route's (functions of their own, in this package); other functions' routes are ``DECLARED``.
    Loaded at the document's first request, not at import."""
    from api.audience import app as audience_app
    from api.handler import app as api_app
    from api.realtime import app as realtime_app
    from api.stripe_webhook import app as stripe_webhook_app

    return [api_app, stripe_webhook_app, audience_app, realtime_app]


def _models(docs: Iterable[RouteDoc]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorResponse, "serialization"): None}
    for doc in docs:
        if doc.request is not None:
            found[(doc.request, "validation")] = None
        for model in doc.responses.values():
            if model is not None:
                found[(model, "serialization")] = None
    return list(found)


def _path_schema(doc: RouteDoc, name: str) -> dict[str, Any]:
    if name in doc.patterns:
        return {"type": "string", "pattern": doc.patterns[name]}
    return {"type": "string", "minLength": 1}


def _operation(method: str, resource: str, doc: RouteDoc, function: Any, refs: dict[Any, Any]) -> dict[str, Any]:
    summary = doc.summary or (function.__doc__ or "").strip().splitlines()[0]
    operation_id = doc.operation_id or function.__name__
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(doc, name)}
        for name in re.findall(r"\{(\w+)\}", resource)
    ]
    parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in doc.query]
    parameters += [
        {"name": name, "in": "header", "required": False, "schema": HEADER_SCHEMAS.get(name, {"type": "string"})}
        for name in doc.headers
    ]
    responses: dict[str, Any] = {}
    for status, model in sorted(doc.responses.items()):
        answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if model is not None:
            answer["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
        responses[str(status)] = answer
    error = {"application/json": {"schema": refs[(ErrorResponse, "serialization")]}}
    for status in sorted(set(doc.errors)):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": error}
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "parameters": parameters,
        "responses": responses,
        "security": [{doc.security: []}] if doc.security else [],
    }
    if doc.request is not None:
        operation["requestBody"] = {
            "required": doc.request_required,
            "content": {"application/json": {"schema": refs[(doc.request, "validation")]}},
        }
    return operation


def build_document(
    served: Iterable[Router], declared: Iterable[tuple[str, str, RouteDoc]] = DECLARED
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the routes of ``served`` and ``declared``; a route needs a doc."""
    operations: list[tuple[str, str, RouteDoc, Any]] = [(method, path, doc, None) for method, path, doc in declared]
    for router in served:
        docs = router.docs  # merged from the router's included modules on each read
        for method, resource in router.routes:
            doc = docs[(method, resource)]
            if doc is None:
                raise ValueError(f"{method} {resource} has no RouteDoc")
            operations.append((method, router.documented(method, resource), doc, router.function(method, resource)))
    refs, definitions = models_json_schema(_models(doc for _, _, doc, _ in operations), ref_template=REF_TEMPLATE)
    paths: dict[str, dict[str, Any]] = {}
    for method, resource, doc, function in operations:
        paths.setdefault(resource, {})[method.lower()] = _operation(method, resource, doc, function, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": definitions.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }


@lru_cache(maxsize=1)
def document_json() -> str:
    """Return the document as JSON text, built at this container's first request for it."""
    return json.dumps(build_document(routers()), separators=(",", ":"))
