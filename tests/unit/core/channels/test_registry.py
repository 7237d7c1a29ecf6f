"""Unit tests of the channel registry and what is built from it (core/channels/__init__.py and registry.py): the
consumer's channels, the producer's rendering, the admin schema, and that rendering loads only the channel it needs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from core.channels import CHANNEL_MODULES, ChannelResources, channel_class, render_content
from core.channels.registry import CHANNELS, CREDENTIAL_FIELDS, TopicRequest, build_channels
from core.models import Content, Integration, IntegrationType
from tests.support.events import topic_body

# Types the sample topic (tests/events/api_topic_body.json, whose deliveries other suites count) does not carry.
_OTHER_SAMPLES: dict[str, dict[str, Any]] = {
    "browser": {"name": "buyer-browser", "type": "browser", "target": {"user_id": "u-1"}, "model": "Order $order_id"},
    "subscribers": {"name": "followers", "type": "subscribers", "model": {"text": "Order $order_id shipped"}},
}


def _integration(kind: str) -> dict[str, Any]:
    """Return the sample integration of ``kind`` from the sample topic, or from the other samples."""
    found = next((item for item in topic_body()["integrations"] if item["type"] == kind), None)
    return found if found is not None else _OTHER_SAMPLES[kind]


def _errors(integration: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as raised:
        TopicRequest.model_validate({"integrations": [integration]})
    return list(raised.value.errors())


def test_registry_has_a_channel_for_every_integration_type() -> None:
    assert set(CHANNELS) == {kind.value for kind in IntegrationType}


def test_registry_keys_are_channel_types() -> None:
    assert all(channel.type == name for name, channel in CHANNELS.items())


def test_channel_class_unknown_type_raises_key_error() -> None:
    with pytest.raises(KeyError):
        channel_class("pigeon")


def test_channel_class_refuses_a_module_entry_that_is_not_that_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHANNEL_MODULES, "pigeon", ("core.channels.slack", "SlackChannel"))

    with pytest.raises(TypeError, match=r"core\.channels\.slack\.SlackChannel is not the channel of type 'pigeon'"):
        channel_class("pigeon")


def test_render_content_imports_only_the_channel_it_renders() -> None:
    # In a fresh process: the publish function's cold start defines the models of the channels it renders, no more.
    code = (
        "import sys\n"
        "from core.channels import render_content\n"
        "from core.models import Integration\n"
        "before = {name for name in sys.modules if name.startswith('core.channels.')}\n"
        "integration = Integration.model_validate("
        "{'name': 'ops', 'type': 'slack', 'model': 'hi $who'})\n"
        "render_content(integration, {'who': 'you'})\n"
        "after = {name for name in sys.modules if name.startswith('core.channels.')}\n"
        "print(sorted(before), sorted(after - before))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "['core.channels.base'] ['core.channels.slack']"


def test_build_channels_shares_resources() -> None:
    resources = ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base="")  # type: ignore[arg-type]

    channels = build_channels(resources)

    assert {channel._resources for channel in channels.values()} == {resources}


@pytest.mark.parametrize(
    ("kind", "model", "expected"),
    [
        (
            IntegrationType.EMAIL,
            {"subject": "$v", "text": "$v", "html": "$v"},
            Content(subject="<", text="<", html="&lt;"),
        ),
        (IntegrationType.SLACK, "$v", Content(text="&lt;")),
        (IntegrationType.TELEGRAM, "$v", Content(text="<")),
        (IntegrationType.WEBHOOK, {"k": "$v"}, Content(data={"k": "<"})),
        (IntegrationType.PUSH, "$v", Content(text="<")),
    ],
)
def test_render_content_renders_through_the_channel_of_its_type(
    kind: IntegrationType, model: Any, expected: Content
) -> None:
    integration = Integration(name="i", type=kind, model=model)

    assert render_content(integration, {"v": "<"}) == expected


@pytest.mark.parametrize("kind", list(CHANNELS))
def test_topic_request_accepts_each_types_integration_as_its_channels_model(kind: str) -> None:
    request = TopicRequest.model_validate({"integrations": [_integration(kind)]})

    assert type(request.integrations[0]) is CHANNELS[kind].integration_model


def test_topic_request_unknown_type_error_names_type_and_tag() -> None:
    [error] = _errors({**_integration("slack"), "type": "sms"})

    assert (error["type"], error["loc"]) == ("union_tag_invalid", ("integrations", 0))
    assert "'type'" in error["msg"]
    assert "'sms'" in error["msg"]


def test_topic_request_missing_type_is_refused() -> None:
    integration = _integration("slack")
    del integration["type"]

    [error] = _errors(integration)

    assert error["type"] == "union_tag_not_found"


def test_topic_request_other_types_fields_are_refused() -> None:
    errors = _errors({**_integration("slack"), "target": {"chat_id": "-100"}})

    assert [error["loc"] for error in errors] == [("integrations", 0, "slack", "target", "chat_id")]


@pytest.mark.parametrize("rate", [0.01, 1, 1000])
def test_topic_request_rate_per_second_in_range_is_accepted(rate: float) -> None:
    request = TopicRequest.model_validate({"integrations": [{**_integration("webhook"), "rate_per_second": rate}]})

    assert request.integrations[0].rate_per_second == rate


@pytest.mark.parametrize("rate", [0, -1, 1000.5, "fast"])
def test_topic_request_rate_per_second_out_of_range_is_refused(rate: Any) -> None:
    [error] = _errors({**_integration("telegram"), "rate_per_second": rate})

    assert error["loc"] == ("integrations", 0, "telegram", "rate_per_second")


def test_topic_request_without_rate_per_second_has_none() -> None:
    request = TopicRequest.model_validate({"integrations": [_integration("email")]})

    assert request.integrations[0].rate_per_second is None


def test_credential_fields_name_each_secret_types_fields() -> None:
    assert CREDENTIAL_FIELDS == {
        "slack": ("webhook_url",),
        "telegram": ("bot_token",),
        "webhook": ("signing_secret",),
    }


# --- text a delivery message cannot carry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "where"),
    [
        pytest.param("\ud800", (), id="string-model"),
        pytest.param(["\ud800"], (0,), id="array-item"),
        pytest.param({"a": "\udfff $v"}, ("a",), id="low-surrogate-in-a-template"),
        pytest.param({"a": [{"b": "x\ud800"}]}, ("a", 0, "b"), id="deep"),
        pytest.param({"a": "\ufffe"}, ("a",), id="u-fffe"),
        pytest.param("ok \uffff", (), id="u-ffff"),
    ],
)
def test_topic_request_model_with_text_a_message_cannot_carry_is_refused_where_it_is(
    model: Any, where: tuple[Any, ...]
) -> None:
    [error] = _errors({**_integration("webhook"), "model": model})

    assert (error["type"], error["loc"]) == ("invalid_text", ("integrations", 0, "webhook", "model", *where))


def test_topic_request_model_key_with_a_lone_surrogate_is_refused_under_the_model() -> None:
    [error] = _errors({**_integration("webhook"), "model": {"ok": 1, "\ud800": "a"}})

    # The key itself is in the location, as much of it as pydantic can carry.
    assert (error["type"], error["loc"][:4], len(error["loc"])) == (
        "invalid_text",
        ("integrations", 0, "webhook", "model"),
        5,
    )


def test_topic_request_target_with_a_lone_surrogate_is_refused_where_it_is() -> None:
    [error] = _errors({**_integration("telegram"), "target": {"chat_id": "-100\ud800"}})

    assert (error["type"], error["loc"]) == ("invalid_text", ("integrations", 0, "telegram", "target", "chat_id"))


def test_topic_request_signing_secret_with_a_lone_surrogate_is_refused_without_the_secret() -> None:
    integration = {**_integration("webhook"), "credentials": {"signing_secret": "hunter2-0123456789\ud800"}}

    [error] = _errors(integration)

    assert error["loc"] == ("integrations", 0, "webhook", "credentials", "signing_secret")
    assert "hunter2" not in error["msg"]
