"""The routes the code serves and the ``http`` and ``websocket`` events of serverless.yml are the same, with the same
guard."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.audience import app as audience_app
from api.handler import app as api_app
from api.realtime import app as realtime_app
from api.stripe_webhook import app as stripe_webhook_app
from api.websocket import ROUTES as WEBSOCKET_ROUTES
from core.http import Router
from producer.handler import app as publish_app

ROOT = Path(__file__).resolve().parents[2]
# The function of serverless.yml each router is the adapter of.
ROUTERS: dict[str, Router] = {
    "publish": publish_app,
    "api": api_app,
    "realtimeTokens": realtime_app,
    "stripeWebhook": stripe_webhook_app,
    "audience": audience_app,
}
# The function of serverless.yml that serves the WebSocket API's routes, and the route keys it handles.
WEBSOCKET_FUNCTIONS: dict[str, tuple[str, ...]] = {"websocket": WEBSOCKET_ROUTES}


class _Loader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation's short tags (``!Ref``…) as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _definition() -> dict[str, Any]:
    definition: dict[str, Any] = yaml.load((ROOT / "serverless.yml").read_text(), Loader=_Loader)  # noqa: S506
    return definition


def _http_events() -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    definition = _definition()
    events: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for name, function in definition["functions"].items():
        for event in function.get("events") or []:
            if "http" in event:
                http = event["http"]
                events.setdefault(name, {})[(str(http["method"]).upper(), http["path"])] = http
    return events


def _guard(http: dict[str, Any]) -> str | None:
    if http.get("authorizer"):
        return "admin"
    return "api_key" if http.get("private") else None


def test_routes_every_served_route_has_its_http_event() -> None:
    events = _http_events()

    for name, router in ROUTERS.items():
        assert set(router.routes) <= set(events.get(name, {})), name


def test_routes_every_http_event_is_served() -> None:
    events = _http_events()

    assert set(events) == set(ROUTERS)
    for name, declared in events.items():
        assert set(declared) <= set(ROUTERS[name].routes), name


@pytest.mark.parametrize(
    ("name", "method", "resource"), [(n, *r) for n, router in ROUTERS.items() for r in router.routes]
)
def test_routes_documented_security_matches_the_http_event_guard(name: str, method: str, resource: str) -> None:
    doc = ROUTERS[name].docs[(method, resource)]

    assert doc is not None
    assert doc.security == _guard(_http_events()[name][(method, resource)])


def test_routes_an_included_router_serves_exactly_the_routes_included_from_it() -> None:
    for name, router in ROUTERS.items():
        modules: dict[str, set[tuple[str, str]]] = {}
        for key, module in router.includes.items():
            modules.setdefault(module, set()).add(key)
        for module, keys in modules.items():
            assert set(importlib.import_module(module).router.routes) == keys, (name, module)


def test_routes_api_handler_import_loads_no_feature_router() -> None:
    features = sorted(set(api_app.includes.values()))
    code = f"import sys, api.handler; print([m for m in {features!r} if m in sys.modules])"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert features
    assert result.stdout.strip() == "[]"


def test_routes_websocket_events_are_the_routes_the_websocket_function_handles() -> None:
    declared: dict[str, set[str]] = {}
    for name, function in _definition()["functions"].items():
        for event in function.get("events") or []:
            if "websocket" in event:
                route = event["websocket"]
                declared.setdefault(name, set()).add(route if isinstance(route, str) else route["route"])

    assert declared == {name: set(routes) for name, routes in WEBSOCKET_FUNCTIONS.items()}


def test_routes_no_function_loads_boto3_at_import() -> None:
    # boto3's package (resources, s3transfer, multiprocessing) is a tenth of a cold start; the clients are botocore's.
    modules = sorted(
        {str(f["handler"]).rsplit(".", 1)[0].replace("/", ".") for f in _definition()["functions"].values()}
    )
    code = (
        f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\nprint('boto3' in sys.modules)"
    )

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert len(modules) >= 13
    assert result.stdout.strip() == "False"
