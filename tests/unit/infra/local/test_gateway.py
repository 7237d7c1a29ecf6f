"""The local API Gateway: routes, authorizer policies, gateway responses played from the definition, readiness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.admin_auth import BEARER_HEADER_PATTERN
from infra.local.definition import Authorizer, FunctionSpec, GatewayResponse, HttpEvent, gateway_responses
from infra.local.gateway import (
    Answer,
    Gateway,
    Refusal,
    RouteTable,
    gateway_answer,
    policy_allows,
    render_template,
)
from infra.local.workers import Invocation

ARN = "arn:aws:execute-api:us-east-1:123456789012:local/local/GET/v1/channels/a/topics"
ROOT = Path(__file__).resolve().parents[4]
API_KEY = "publisher-key-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
TOPICS = "/v1/channels/orders/topics"
PUBLISH = "/v1/notifications/orders/shipped"


def _table(*routes: tuple[str, str]) -> RouteTable:
    return RouteTable([HttpEvent(function="fn", method=method, path=path) for method, path in routes])


def test_route_table_matches_parameters_and_decodes_them() -> None:
    found = _table(("POST", "/v1/notifications/{channel}/{topic}")).match("POST", "/v1/notifications/a%20b/c")

    assert found is not None
    assert found[1] == {"channel": "a b", "topic": "c"}


def test_route_table_literal_segment_wins_over_parameter() -> None:
    table = _table(("GET", "/v1/notifications/{notification_id}"), ("GET", "/v1/notifications/latest"))

    found = table.match("GET", "/v1/notifications/latest")

    assert found is not None
    assert found[0].event.path == "/v1/notifications/latest"


def test_route_table_wrong_method_does_not_match() -> None:
    assert _table(("GET", "/v1/health")).match("POST", "/v1/health") is None


def test_route_table_a_method_the_literal_resource_lacks_is_not_its_parameter_sibling() -> None:
    table = _table(("POST", "/v1/segments/count"), ("PUT", "/v1/segments/{name}"), ("GET", "/v1/segments/{name}"))

    assert table.match("PUT", "/v1/segments/count") is None  # API Gateway: 403 Missing Authentication Token
    found = table.match("PUT", "/v1/segments/pros")
    assert found is not None
    assert found[1] == {"name": "pros"}


@pytest.mark.parametrize(
    ("sent", "received"),
    [("a%2Fb", "a%2Fb"), ("x%2541", "x%41"), ("x%252Fy", "x%2Fy"), ("caf%C3%A9", "café"), ("a+b", "a+b")],
)
def test_route_table_decodes_a_parameter_once_keeping_an_encoded_slash(sent: str, received: str) -> None:
    found = _table(("GET", "/v1/users/{user_id}")).match("GET", f"/v1/users/{sent}")

    assert found is not None
    assert found[1] == {"user_id": received}


def test_route_table_any_method_matches() -> None:
    assert _table(("ANY", "/v1/health")).match("DELETE", "/v1/health") is not None


def test_route_table_greedy_parameter_takes_the_rest() -> None:
    found = _table(("GET", "/files/{proxy+}")).match("GET", "/files/a/b/c")

    assert found is not None
    assert found[1] == {"proxy": "a/b/c"}


def test_route_table_parameter_does_not_span_segments() -> None:
    assert _table(("GET", "/v1/x/{id}")).match("GET", "/v1/x/a/b") is None


def test_policy_allows_wildcard_allow() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": ["arn:aws:execute-api:*"]}]}

    assert policy_allows(policy, ARN) is True


def test_policy_allows_explicit_deny_wins() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"},
            {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": "*/GET/*"},
        ]
    }

    assert policy_allows(policy, ARN) is False


def test_policy_allows_nothing_matching_is_none() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*/POST/*"}]}

    assert policy_allows(policy, ARN) is None


# --- gateway responses ------------------------------------------------------------------------------------------------


def test_render_template_puts_context_values_in() -> None:
    rendered = render_template(
        '{"message": "No route $context.httpMethod $context.path."}', {"httpMethod": "GET", "path": "/x"}
    )

    assert json.loads(rendered) == {"message": "No route GET /x."}


def test_render_template_unknown_variable_renders_empty() -> None:
    assert render_template('{"message": "[$context.nothing.here]"}', {}) == '{"message": "[]"}'


def test_render_template_message_string_is_a_json_string() -> None:
    rendered = render_template('{"message": $context.error.messageString}', {"error.message": 'say "hi"'})

    assert json.loads(rendered) == {"message": 'say "hi"'}


def test_render_template_null_message_string_is_null() -> None:
    assert json.loads(render_template('{"message": $context.error.messageString}', {})) == {"message": None}


def test_render_template_caller_path_with_quote_keeps_the_json_valid() -> None:
    rendered = render_template('{"message": "No route $context.path"}', {"path": '/v1/"x\\'})

    assert json.loads(rendered) == {"message": 'No route /v1/"x\\'}


def _body(answer: Answer) -> Any:
    return json.loads(answer[2])


MISSING = Refusal("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token", "no such route")


def test_gateway_answer_own_response_sets_status_template_and_headers() -> None:
    own = GatewayResponse(
        "UNAUTHORIZED", 401, {"application/json": '{"message": "send a token"}'}, {"WWW-Authenticate": "Bearer"}
    )

    answer = gateway_answer(Refusal("UNAUTHORIZED", "Unauthorized", "no token"), {"UNAUTHORIZED": own}, {})

    assert answer[0] == 401
    assert answer[1]["WWW-Authenticate"] == ["Bearer"]
    assert answer[1]["Content-Type"] == ["application/json"]
    assert _body(answer) == {"message": "send a token"}


def test_gateway_answer_without_own_response_uses_default_4xx_template_and_the_type_status() -> None:
    default = GatewayResponse("DEFAULT_4XX", None, {"application/json": '{"message": $context.error.messageString}'})

    answer = gateway_answer(MISSING, {"DEFAULT_4XX": default}, {})

    assert (answer[0], _body(answer)) == (403, {"message": "Missing Authentication Token"})


def test_gateway_answer_default_4xx_status_code_applies_to_the_class() -> None:
    default = GatewayResponse("DEFAULT_4XX", 400, {"application/json": '{"message": "$context.error.responseType"}'})

    answer = gateway_answer(MISSING, {"DEFAULT_4XX": default}, {})

    assert (answer[0], _body(answer)) == (400, {"message": "MISSING_AUTHENTICATION_TOKEN"})


def test_gateway_answer_5xx_refusal_falls_back_to_default_5xx_not_4xx() -> None:
    responses = {
        "DEFAULT_4XX": GatewayResponse("DEFAULT_4XX", None, {"application/json": '{"message": "4xx"}'}),
        "DEFAULT_5XX": GatewayResponse("DEFAULT_5XX", None, {"application/json": '{"message": "5xx"}'}),
    }

    answer = gateway_answer(Refusal("AUTHORIZER_CONFIGURATION_ERROR", None, "failed"), responses, {})

    assert (answer[0], _body(answer)) == (500, {"message": "5xx"})


@pytest.mark.parametrize(
    ("refusal", "status", "body"),
    [
        pytest.param(MISSING, 403, {"message": "Missing Authentication Token"}, id="missing-token"),
        pytest.param(Refusal("INVALID_API_KEY", "Forbidden", "-"), 403, {"message": "Forbidden"}, id="api-key"),
        pytest.param(Refusal("UNAUTHORIZED", "Unauthorized", "-"), 401, {"message": "Unauthorized"}, id="unauthorized"),
        pytest.param(Refusal("ACCESS_DENIED", "User is not…", "-"), 403, {"Message": "User is not…"}, id="denied"),
        pytest.param(Refusal("AUTHORIZER_CONFIGURATION_ERROR", None, "-"), 500, {"message": None}, id="authorizer"),
    ],
)
def test_gateway_answer_without_any_response_is_api_gateways_own(refusal: Refusal, status: int, body: Any) -> None:
    answer = gateway_answer(refusal, {}, {})

    assert (answer[0], _body(answer)) == (status, body)


# --- the gateway ------------------------------------------------------------------------------------------------------


class FakePool:
    """A function that answers every invocation with one scripted outcome, and keeps the events it got."""

    def __init__(self, key: str, outcome: Invocation) -> None:
        self._spec = FunctionSpec(key, f"svc-{key}", f"{key}Function", f"{key}.handler", 6, 128, {})
        self.outcome = outcome
        self.events: list[Any] = []

    @property
    def spec(self) -> FunctionSpec:
        """The function as deployed."""
        return self._spec

    def invoke(self, event: Any, timeout: float | None = None) -> Invocation:
        """Record the event and return the scripted outcome."""
        self.events.append(event)
        return self.outcome


def _policy(effect: str) -> Invocation:
    statement = {"Effect": effect, "Action": "execute-api:Invoke", "Resource": ["arn:aws:execute-api:*"]}
    return Invocation(result={"principalId": "admin", "policyDocument": {"Statement": [statement]}})


OK = Invocation(result={"statusCode": 200, "body": '{"status": "ok"}'})
ALLOW = _policy("Allow")
DENY = _policy("Deny")


class Harness:
    """A gateway over a health route, a publisher route and an admin route, with fake functions and a captured log."""

    def __init__(self, responses: dict[str, GatewayResponse], authorizer: Invocation = ALLOW) -> None:
        admin = Authorizer("auth", ttl_seconds=0, validation_expression=BEARER_HEADER_PATTERN)
        events = [
            HttpEvent("api", "GET", "/v1/health"),
            HttpEvent("api", "POST", "/v1/notifications/{channel}/{topic}", private=True),
            HttpEvent("api", "GET", "/v1/channels/{channel}/topics", authorizer=admin),
        ]
        self.api = FakePool("api", OK)
        self.auth = FakePool("auth", authorizer)
        self.lines: list[str] = []
        self.gateway = Gateway(
            events,
            {"api": self.api, "auth": self.auth},
            lambda: {API_KEY: "key-id"},
            "local",
            "us-east-1",
            "123456789012",
            self.lines.append,
            responses=responses,
        )
        self.gateway.local_routes["/_local/"] = lambda path, query, method: (200, {}, b"page")

    def call(self, method: str, path: str, headers: dict[str, str] | None = None) -> Answer:
        """Send one request through the gateway."""
        return self.gateway.handle(method, path, list((headers or {}).items()), b"", "127.0.0.1")


def _service_responses() -> dict[str, GatewayResponse]:
    """The gateway responses infra/apigateway.yml defines, read as the packaged template holds them."""
    return gateway_responses(yaml.safe_load((ROOT / "infra" / "apigateway.yml").read_text()))


@pytest.fixture
def harness() -> Harness:
    """A ready gateway with the service's gateway responses."""
    harness = Harness(_service_responses())
    harness.gateway.set_ready()
    return harness


def test_gateway_default_is_not_ready() -> None:
    assert not Harness({}).gateway.ready.is_set()


def test_gateway_not_ready_health_answers_503_starting() -> None:
    harness = Harness({})

    answer = harness.call("GET", "/v1/health")

    assert (answer[0], _body(answer)) == (503, {"status": "starting"})
    assert answer[1]["Retry-After"] == ["1"]
    assert harness.api.events == []


@pytest.mark.parametrize("path", [PUBLISH, "/v1/nothing", "/_local/"])
def test_gateway_not_ready_any_other_request_answers_503_with_a_message(path: str) -> None:
    harness = Harness({})

    answer = harness.call("POST", path, {"x-api-key": API_KEY})

    assert answer[0] == 503
    assert "starting" in _body(answer)["message"]
    assert harness.api.events == []


def test_gateway_not_ready_request_is_logged() -> None:
    harness = Harness({})

    harness.call("GET", "/v1/health")

    assert harness.lines == ["GET /v1/health → 503 starting: the local stack is not ready yet"]


def test_gateway_serving_serves_the_routes() -> None:
    harness = Harness({})

    harness.gateway.set_serving()

    assert harness.call("POST", PUBLISH, {"x-api-key": API_KEY})[0] == 200
    assert harness.call("GET", "/_local/", {"Host": "127.0.0.1:3000"})[0] == 200


def test_gateway_serving_but_not_ready_health_still_answers_starting() -> None:
    harness = Harness({})

    harness.gateway.set_serving()

    answer = harness.call("GET", "/v1/health")
    assert (answer[0], _body(answer)) == (503, {"status": "starting"})


def test_gateway_set_ready_serves_health() -> None:
    harness = Harness({})

    harness.gateway.set_ready()

    assert harness.call("GET", "/v1/health")[0] == 200


def test_gateway_ready_argument_serves_at_once() -> None:
    lines: list[str] = []
    gateway = Gateway([], {}, dict, "local", "us-east-1", "123456789012", lines.append, ready=True)

    assert gateway.ready.is_set()


def test_gateway_log_line_of_a_path_with_control_characters_is_one_line_without_them() -> None:
    # The decoded path was written as it came: a %0a forged a second line ("ERROR ..."), a %1b sent the terminal an
    # escape sequence, a %00 made the run log binary to grep.
    lines: list[str] = []
    gateway = Gateway([], {}, dict, "local", "us-east-1", "123456789012", lines.append, ready=True)
    gateway.serving.set()

    gateway.handle("GET", "/v1/users/x%0a09:13:00%20ERROR%20FAKE%1b%5b31m%00%c2%9b", [], b"", "127.0.0.1")

    assert len(lines) == 1
    assert lines[0].startswith("GET /v1/users/x\\x0a09:13:00 ERROR FAKE\\x1b[31m\\x00\\x9b → 403")


def _local_gateway(page: Any) -> Gateway:
    gateway = Gateway([], {}, dict, "local", "us-east-1", "123456789012", lambda line: None, ready=True)
    gateway.serving.set()
    gateway.local_routes["/_local/"] = page
    return gateway


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", [("Host", "127.0.0.1:3000")], 200),
        ("GET", [("Host", "localhost:3000")], 200),
        ("GET", [("Host", "[::1]:3000")], 200),
        ("POST", [("Host", "127.0.0.1:3000"), ("Origin", "http://127.0.0.1:3000")], 200),
        ("POST", [("Host", "127.0.0.1:3000")], 200),
        # A page of another site whose name was rebound to 127.0.0.1: same-origin with the stack's pages.
        ("GET", [("Host", "attacker.example:3000")], 403),
        ("GET", [], 403),
        # Another site's form or fetch.
        ("POST", [("Host", "127.0.0.1:3000"), ("Origin", "https://attacker.example")], 403),
        ("POST", [("Host", "127.0.0.1:3000"), ("Origin", "null")], 403),
    ],
    ids=["loopback", "localhost", "ipv6", "own-origin", "no-origin", "rebound", "no-host", "cross-site", "null"],
)
def test_gateway_local_pages_answer_loopback_names_and_own_origin_only(
    method: str, headers: list[tuple[str, str]], status: int
) -> None:
    gateway = _local_gateway(lambda path, query, how: (200, {}, b"{}"))

    assert gateway.handle(method, "/_local/api/state", headers, b"", "127.0.0.1")[0] == status


def test_gateway_local_page_that_fails_answers_500_with_a_message() -> None:
    # An error in a page of the stack's own dropped the connection (a traceback on stderr, nothing to the caller).
    def failing(path: str, query: dict[str, str], method: str) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    status, _headers, body = _local_gateway(failing).handle(
        "GET", "/_local/", [("Host", "127.0.0.1:3000")], b"", "127.0.0.1"
    )

    assert status == 500
    assert "RecursionError" in json.loads(body)["message"]


# What a person reads for every refusal of the service's own gateway responses (infra/apigateway.yml).
SHAPES = [
    pytest.param("GET", "/v1/nothing", {}, 403, ["No route for GET /v1/nothing", "openapi.json"], id="unknown-route"),
    pytest.param("DELETE", "/v1/health", {}, 403, ["No route for DELETE /v1/health"], id="wrong-method"),
    pytest.param("POST", PUBLISH, {}, 403, ["x-api-key", "publisher key"], id="missing-key"),
    pytest.param("POST", PUBLISH, {"x-api-key": "nope"}, 403, ["x-api-key", "invalid"], id="wrong-key"),
    pytest.param("GET", TOPICS, {}, 401, ["Authorization: Bearer <admin token>"], id="no-authorization"),
    pytest.param("GET", TOPICS, {"Authorization": ADMIN_TOKEN}, 401, ["Bearer <admin token>"], id="no-bearer"),
    pytest.param("GET", TOPICS, {"x-api-key": API_KEY}, 401, ["x-api-key does not open"], id="publisher-key"),
]


@pytest.mark.parametrize(("method", "path", "headers", "status", "words"), SHAPES)
def test_gateway_refusal_answers_the_service_gateway_response(
    harness: Harness, method: str, path: str, headers: dict[str, str], status: int, words: list[str]
) -> None:
    answer = harness.call(method, path, headers)

    body = _body(answer)
    assert answer[0] == status
    assert list(body) == ["message"]
    assert all(word in body["message"] for word in words), body


def test_gateway_unauthorized_answer_names_the_scheme_in_www_authenticate(harness: Harness) -> None:
    assert harness.call("GET", TOPICS)[1]["WWW-Authenticate"] == ["Bearer"]


def test_gateway_header_without_bearer_never_reaches_the_authorizer(harness: Harness) -> None:
    harness.call("GET", TOPICS, {"Authorization": ADMIN_TOKEN})

    assert harness.auth.events == []


def test_gateway_denied_token_answers_access_denied() -> None:
    harness = Harness(_service_responses(), authorizer=DENY)
    harness.gateway.set_ready()

    answer = harness.call("GET", TOPICS, {"Authorization": f"Bearer {API_KEY}"})

    assert answer[0] == 403
    assert "The admin token was refused" in _body(answer)["message"]


def test_gateway_authorizer_unauthorized_error_answers_401() -> None:
    harness = Harness(
        _service_responses(), authorizer=Invocation(error={"errorType": "Exception", "errorMessage": "Unauthorized"})
    )
    harness.gateway.set_ready()

    answer = harness.call("GET", TOPICS, {"Authorization": f"Bearer {ADMIN_TOKEN}"})

    assert answer[0] == 401


def test_gateway_authorizer_failure_answers_500_saying_the_token_could_not_be_checked() -> None:
    failure = Invocation(error={"errorType": "ClientError", "errorMessage": "SSM is down"})
    harness = Harness(_service_responses(), authorizer=failure)
    harness.gateway.set_ready()

    answer = harness.call("GET", TOPICS, {"Authorization": f"Bearer {ADMIN_TOKEN}"})

    assert answer[0] == 500
    assert "could not be checked" in _body(answer)["message"]
    assert harness.lines == [f"GET {TOPICS} → 500 AUTHORIZER_CONFIGURATION_ERROR: authorizer auth failed: SSM is down"]


def test_gateway_allowed_token_reaches_the_function(harness: Harness) -> None:
    answer = harness.call("GET", TOPICS, {"Authorization": f"Bearer {ADMIN_TOKEN}"})

    assert answer[0] == 200
    assert harness.api.events[0]["requestContext"]["authorizer"]["principalId"] == "admin"


@pytest.mark.parametrize(
    ("method", "path", "headers", "line"),
    [
        pytest.param("GET", "/v1/nothing", {}, "GET /v1/nothing → 403 MISSING_AUTHENTICATION_TOKEN: no such route"),
        pytest.param("POST", PUBLISH, {}, f"POST {PUBLISH} → 403 INVALID_API_KEY: no x-api-key header"),
        pytest.param(
            "POST",
            PUBLISH,
            {"x-api-key": "k-9f3e"},
            f"POST {PUBLISH} → 403 INVALID_API_KEY: x-api-key is not a key of this stage",
        ),
        pytest.param("GET", TOPICS, {}, f"GET {TOPICS} → 401 UNAUTHORIZED: no Authorization header"),
        pytest.param(
            "GET",
            TOPICS,
            {"Authorization": "t-9f3e"},
            f"GET {TOPICS} → 401 UNAUTHORIZED: the Authorization header does not match the authorizer's "
            "identityValidationExpression",
        ),
    ],
)
def test_gateway_refused_request_is_one_log_line(
    harness: Harness, method: str, path: str, headers: dict[str, str], line: str
) -> None:
    harness.call(method, path, headers)

    assert harness.lines == [line]


def test_gateway_denied_token_log_line_never_holds_the_token() -> None:
    harness = Harness(_service_responses(), authorizer=DENY)
    harness.gateway.set_ready()

    harness.call("GET", TOPICS, {"Authorization": "Bearer guess-9f3e"})

    assert harness.lines == [f"GET {TOPICS} → 403 ACCESS_DENIED: authorizer auth denied the token"]


def test_gateway_without_gateway_responses_answers_as_api_gateway_does() -> None:
    harness = Harness({}, authorizer=DENY)
    harness.gateway.set_ready()

    assert _body(harness.call("GET", "/v1/nothing")) == {"message": "Missing Authentication Token"}
    assert _body(harness.call("POST", PUBLISH)) == {"message": "Forbidden"}
    assert _body(harness.call("GET", TOPICS)) == {"message": "Unauthorized"}
    assert _body(harness.call("GET", TOPICS, {"Authorization": "Bearer x"})) == {
        "Message": "User is not authorized to access this resource with an explicit deny"
    }


def test_gateway_root_redirects_to_the_local_page(harness: Harness) -> None:
    assert harness.call("GET", "/")[:2] == (302, {"Location": ["/_local/"]})
