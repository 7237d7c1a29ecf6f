"""Tests of the API's OpenAPI document (api/openapi.py) and its route."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from schemathesis.core.result import Ok

from api.handler import get_openapi_document
from api.openapi import DECLARED, build_document, document_json, routers
from core.http import Response, RouteDoc, Router

ROOT = Path(__file__).resolve().parents[3]


def _operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_build_document_is_openapi_that_schemathesis_loads() -> None:
    document = build_document(routers())

    schema = schemathesis.openapi.from_dict(document)

    schema.validate()  # against the OpenAPI 3.1 meta-schema
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert {(operation.method.upper(), operation.path) for operation in operations} == _operations(document)


def test_build_document_broken_is_refused_by_the_meta_schema_check() -> None:
    document = build_document(routers())
    document["paths"]["/v1/health"]["get"]["responses"] = "none"

    with pytest.raises(Exception, match="none"):
        schemathesis.openapi.from_dict(document).validate()


def test_build_document_names_every_served_and_declared_route() -> None:
    from producer.handler import app as publish_app

    served = {
        (method, router.documented(method, resource))
        for router in [*routers(), publish_app]
        for method, resource in router.routes
    }

    assert _operations(build_document(routers())) == served
    # Documented by its path, deployed under the publish routes' variable (API Gateway's one per level).
    assert ("GET", "/v1/notifications/{notification_id}") in served
    assert ("POST", "/v1/notifications/{channel}/{topic}") in served
    assert ("GET", "/v1/openapi.json") in served
    assert ("POST", "/v1/realtime/tokens") in served


def test_declared_publish_route_is_the_one_the_publish_function_serves() -> None:
    from producer.handler import app as publish_app

    assert [(method, path) for method, path, _ in DECLARED] == publish_app.routes
    assert all(doc is publish_app.docs[(method, path)] for method, path, doc in DECLARED)


def test_build_document_security_per_role() -> None:
    paths = build_document(routers())["paths"]

    assert paths["/v1/notifications/{channel}/{topic}"]["post"]["security"] == [{"api_key": []}]
    assert paths["/v1/channels/{channel}/topics/{topic}"]["put"]["security"] == [{"admin": []}]
    assert paths["/v1/health"]["get"]["security"] == []
    assert paths["/v1/openapi.json"]["get"]["security"] == []


def test_build_document_security_schemes_are_the_api_key_header_and_bearer() -> None:
    schemes = build_document(routers())["components"]["securitySchemes"]

    assert schemes["api_key"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert schemes["admin"] == {"type": "http", "scheme": "bearer"}


def test_build_document_errors_are_message_models() -> None:
    document = build_document(routers())
    publish = document["paths"]["/v1/notifications/{channel}/{topic}"]["post"]["responses"]

    assert set(publish) == {"200", "400", "403", "404", "409", "413", "422", "502"}
    assert publish["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert document["components"]["schemas"]["ErrorResponse"]["required"] == ["message"]


def test_build_document_request_bodies_come_from_the_validating_models() -> None:
    paths = build_document(routers())["paths"]

    body = paths["/v1/notifications/{channel}/{topic}"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PublishRequest"}
    assert paths["/v1/dead-letters/redrive"]["post"]["requestBody"]["required"] is False


def test_build_document_status_deliveries_show_next_attempt_and_redrives() -> None:
    schemas = build_document(routers())["components"]["schemas"]

    delivery = schemas["DeliveryView"]["properties"]
    assert delivery["next_attempt_at"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert (delivery["redriven"]["type"], delivery["attempts"]["type"]) == ("integer", "integer")
    assert {"DeliveryView", "StatusResponse"} <= set(schemas)


def test_build_document_route_without_doc_refused() -> None:
    router = Router()

    @router.get("/v1/undocumented")
    def undocumented() -> Response:
        """Undocumented."""
        return Response(status_code=204)

    with pytest.raises(ValueError, match="GET /v1/undocumented has no RouteDoc"):
        build_document([router])


def test_build_document_route_doc_summary_overrides_docstring() -> None:
    router = Router()

    @router.get("/v1/x", RouteDoc({204: None}, summary="Named"))
    def x() -> Response:
        """Docstring."""
        return Response(status_code=204)

    assert build_document([router])["paths"]["/v1/x"]["get"]["summary"] == "Named"


def test_openapi_route_serves_the_cached_document() -> None:
    response = get_openapi_document()

    assert response.status_code == 200
    assert json.loads(response.body) == build_document(routers())
    assert document_json() is document_json()


@pytest.mark.parametrize("module", ["producer.handler", "api.handler"])
def test_handler_import_does_not_load_the_document_code(module: str) -> None:
    code = f"import sys, {module}; print('api.openapi' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"


def test_every_operation_with_a_query_or_a_body_documents_how_it_refuses_them() -> None:
    """A route refuses a bad query parameter or body with 422 (the Stripe webhook route, as Stripe expects, with 400):
    the status route's document (a bad ``cursor``) did not say so, and a client generated from it did not expect it."""
    document = build_document(routers())

    missing = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if (
            "requestBody" in operation
            or any(parameter.get("in") == "query" for parameter in operation.get("parameters", []))
        )
        and not {"400", "422"} & operation["responses"].keys()
    ]

    assert missing == []


@pytest.mark.parametrize(
    ("schema", "field", "served"),
    [
        # A local-time schedule's wall-clock time, as GET /v1/schedules/{id} serves it.
        ("Schedule", "local_at", "2027-03-28T02:30:00"),
        # What POST /v1/sends takes for a local-time send.
        ("SendRequest", "at", "2026-12-01T09:00:00"),
        ("SendRequest", "at", "2026-12-01T09:00:00+01:00"),
    ],
)
def test_build_document_wall_clock_times_match_their_documented_schema(schema: str, field: str, served: str) -> None:
    """They were documented as date-time, which requires an offset: schemathesis found the served ones refused."""
    import jsonschema

    documented = json.loads(document_json())["components"]["schemas"][schema]["properties"][field]

    jsonschema.validate(served, documented, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize(("path", "method"), [("/v1/notifications/{channel}/{topic}", "post"), ("/v1/sends", "post")])
def test_build_document_idempotency_key_header_states_the_length_the_routes_take(path: str, method: str) -> None:
    document = build_document(routers())

    (header,) = [p for p in document["paths"][path][method]["parameters"] if p["name"] == "Idempotency-Key"]

    assert header == {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }
