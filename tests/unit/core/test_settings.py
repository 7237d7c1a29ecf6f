"""Unit tests of the settings of each function role (core/settings.py, core/roles/)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.audience.settings import AudienceSettings, CronSettings, ExpandSettings
from core.purchases.settings import (
    PaymentWorkerSettings,
    PurchaseNotifySettings,
    StripeCreditSettings,
    StripeWebhookSettings,
)
from core.realtime.settings import RealtimeTokensSettings, WebsocketSettings
from core.roles.api import ApiSettings
from core.roles.authorizer import AuthorizerSettings
from core.roles.deliver import DeliverSettings
from core.roles.publish import PublishSettings
from core.settings import (
    FunctionSettings,
    SettingsError,
    clear_settings,
    load_settings,
    role_settings,
)

BASE = {"STAGE": "prod", "AWS_REGION": "eu-west-1"}
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/notify-prod-deliveries"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/notify-prod-deliveries-dlq"
EXPANSION_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/notify-prod-expansion"
# Exactly what each role requires: every name of a real resource, as serverless.yml gives it.
REQUIRED: dict[type[FunctionSettings], dict[str, str]] = {
    PublishSettings: {
        "TOPICS_TABLE": "notify-prod-topics",
        "DELIVERIES_TABLE": "notify-prod-ledger",
        "DELIVERY_QUEUE_URL": QUEUE,
        "IDEMPOTENCY_TABLE": "notify-prod-idempotency",
    },
    ApiSettings: {
        "TOPICS_TABLE": "notify-prod-topics",
        "DELIVERIES_TABLE": "notify-prod-ledger",
        "DELIVERY_QUEUE_URL": QUEUE,
        "DEAD_LETTER_QUEUE_URL": DLQ,
        "PARAMETER_PREFIX": "/notify/prod",
        "PUSH_TOPIC_PREFIX": "notify-prod-push-",
        "PROMOTIONS_TABLE": "notify-prod-promotions",
        "PURCHASES_TABLE": "notify-prod-purchases",
        "PAYMENTS_TABLE": "notify-prod-payments",
    },
    AuthorizerSettings: {"ADMIN_TOKEN_HASH_PARAMETER": "/notify/prod/admin-token-hash"},
    DeliverSettings: {
        "DELIVERIES_TABLE": "notify-prod-ledger",
        "DELIVERY_QUEUE_URL": QUEUE,
        "DEAD_LETTER_QUEUE_URL": DLQ,
        "PACING_TABLE": "notify-prod-pacing",
    },
    RealtimeTokensSettings: {
        "REALTIME_KEYS_PARAMETER": "/notify/prod/realtime/signing-keys",
        "REALTIME_URL": "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod",
    },
    WebsocketSettings: {
        "REALTIME_KEYS_PARAMETER": "/notify/prod/realtime/signing-keys",
        "CONNECTIONS_TABLE": "notify-prod-connections",
    },
    StripeCreditSettings: {
        "STRIPE_SECRET_KEY_PARAMETER": "/notify/prod/stripe/secret-key",
        "PROMOTIONS_TABLE": "notify-prod-promotions",
        "PURCHASES_TABLE": "notify-prod-purchases",
    },
    PurchaseNotifySettings: {
        "PURCHASE_NOTIFICATION_CHANNEL": "purchases",
        "PURCHASE_NOTIFICATION_TOPIC": "completed",
        "TOPICS_TABLE": "notify-prod-topics",
        "DELIVERIES_TABLE": "notify-prod-ledger",
        "DELIVERY_QUEUE_URL": QUEUE,
        "PURCHASES_TABLE": "notify-prod-purchases",
    },
    StripeWebhookSettings: {
        "STRIPE_WEBHOOK_SECRET_PARAMETER": "/notify/prod/stripe/webhook-secret",
        "STRIPE_WEBHOOK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/notify-prod-stripe-webhooks",
    },
    PaymentWorkerSettings: {
        "STRIPE_SECRET_KEY_PARAMETER": "/notify/prod/stripe/secret-key",
        "PAYMENTS_TABLE": "notify-prod-payments",
        "PURCHASE_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:notify-prod-Purchase",
    },
    AudienceSettings: {
        "DATABASE_SECRET_PARAMETER": "/notify/prod/database",
        "EXPANSION_QUEUE_URL": EXPANSION_QUEUE,
        "DELIVERIES_TABLE": "notify-prod-ledger",
    },
    CronSettings: {"DATABASE_SECRET_PARAMETER": "/notify/prod/database", "EXPANSION_QUEUE_URL": EXPANSION_QUEUE},
    ExpandSettings: {
        "DATABASE_SECRET_PARAMETER": "/notify/prod/database",
        "TOPICS_TABLE": "notify-prod-topics",
        "DELIVERIES_TABLE": "notify-prod-ledger",
        "DELIVERY_QUEUE_URL": QUEUE,
        "EXPANSION_QUEUE_URL": EXPANSION_QUEUE,
    },
}
# Variables another may stand in for (DATABASE_URL, locally): unset, the message names both.
EITHER: dict[str, str] = {"DATABASE_SECRET_PARAMETER": "DATABASE_URL or DATABASE_SECRET_PARAMETER must be set"}
ROLES = list(REQUIRED)
# What the real Lambda runtime sets; the local stack sets none of the last two.
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "notify-prod-deliver"}
REAL_RUNTIME = {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}


def _env(model: type[FunctionSettings], **changes: str) -> dict[str, str]:
    return {**BASE, **REQUIRED[model], **changes}


def _deliver(**changes: str) -> DeliverSettings:
    return DeliverSettings.from_env(_env(DeliverSettings, **changes))


def _required_cases() -> list[tuple[type[FunctionSettings], str]]:
    return [(model, name) for model in ROLES for name in ["STAGE", "AWS_REGION", *REQUIRED[model]]]


@pytest.mark.parametrize("model", ROLES, ids=lambda model: model.__name__)
def test_role_settings_full_environment_parses(model: type[FunctionSettings]) -> None:
    settings = model.from_env(_env(model))

    assert settings.stage == "prod"
    assert settings.aws_region == "eu-west-1"


@pytest.mark.parametrize(("model", "variable"), _required_cases(), ids=lambda value: getattr(value, "__name__", value))
def test_role_settings_variable_unset_fails_naming_it(model: type[FunctionSettings], variable: str) -> None:
    env = _env(model)
    del env[variable]

    problem = EITHER.get(variable, f"{variable} is not set$")
    with pytest.raises(SettingsError, match=rf"^{model.__name__}: {problem}"):
        model.from_env(env)


def test_role_settings_empty_variable_counts_as_unset() -> None:
    with pytest.raises(SettingsError, match="TOPICS_TABLE is not set"):
        PublishSettings.from_env(_env(PublishSettings, TOPICS_TABLE=""))


def test_role_settings_names_every_missing_variable_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        DeliverSettings.from_env(BASE)

    assert all(f"{name} is not set" in str(raised.value) for name in REQUIRED[DeliverSettings])


def test_role_settings_invalid_value_names_the_variable_not_the_value() -> None:
    with pytest.raises(SettingsError) as raised:
        _deliver(RETRY_BASE_SECONDS="-7.25")

    assert "RETRY_BASE_SECONDS: Input should be greater than 0" in str(raised.value)
    assert "-7.25" not in str(raised.value)


def test_role_settings_tunables_have_defaults() -> None:
    settings = _deliver()

    assert (settings.retry_window_hours, settings.max_attempts, settings.allow_private_targets) == (24.0, 100, False)


def test_deliver_settings_max_receive_count_defaults_to_the_stage_param_default() -> None:
    assert _deliver().max_receive_count == 5


def test_deliver_settings_max_receive_count_is_read_from_the_environment() -> None:
    assert _deliver(MAX_RECEIVE_COUNT="3").max_receive_count == 3


@pytest.mark.parametrize("value", ["0", "1001"])
def test_deliver_settings_max_receive_count_outside_what_sqs_takes_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="MAX_RECEIVE_COUNT"):
        _deliver(MAX_RECEIVE_COUNT=value)


def test_role_settings_ignore_variables_of_other_roles() -> None:
    settings = AuthorizerSettings.from_env(_env(AuthorizerSettings, TOPICS_TABLE="notify-prod-topics"))

    assert not hasattr(settings, "topics_table")


def test_role_settings_are_frozen() -> None:
    settings = _deliver()

    with pytest.raises(ValidationError):
        settings.max_attempts = 1  # type: ignore[misc]


def test_role_settings_every_function_of_serverless_yml_has_one() -> None:
    assert set(role_settings()) == {
        "publish",
        "api",
        "adminAuthorizer",
        "deliver",
        "realtimeTokens",
        "websocket",
        "stripeCredit",
        "purchaseNotify",
        "stripeWebhook",
        "paymentWorker",
        "audience",
        "cron",
        "expand",
    }
    assert set(role_settings().values()) == set(ROLES)


def test_authorizer_settings_token_cache_over_half_the_rotation_window_refused() -> None:
    with pytest.raises(SettingsError, match="ADMIN_TOKEN_CACHE_SECONDS"):
        AuthorizerSettings.from_env(_env(AuthorizerSettings, ADMIN_TOKEN_CACHE_SECONDS="31"))


def test_deliver_settings_private_targets_outside_lambda_allowed() -> None:
    assert _deliver(ALLOW_PRIVATE_TARGETS="true").allow_private_targets is True


def test_deliver_settings_private_targets_inside_lambda_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"ALLOW_PRIVATE_TARGETS=true is refused inside Lambda.*'prod'"):
        _deliver(ALLOW_PRIVATE_TARGETS="true", **IN_LAMBDA, **REAL_RUNTIME)


def test_deliver_settings_private_targets_off_inside_lambda_accepted() -> None:
    assert _deliver(ALLOW_PRIVATE_TARGETS="false", **IN_LAMBDA, **REAL_RUNTIME).allow_private_targets is False


def test_deliver_settings_private_targets_on_the_local_stack_allowed() -> None:
    settings = _deliver(ALLOW_PRIVATE_TARGETS="true", STAGE="local", NOTIFY_LOCAL_STACK="1", **IN_LAMBDA)

    assert settings.allow_private_targets is True
    assert settings.on_local_stack is True


def test_deliver_settings_private_targets_stage_local_without_the_marker_refused() -> None:
    with pytest.raises(SettingsError, match="ALLOW_PRIVATE_TARGETS"):
        _deliver(ALLOW_PRIVATE_TARGETS="true", STAGE="local", **IN_LAMBDA)


def test_deliver_settings_private_targets_marker_without_stage_local_refused() -> None:
    with pytest.raises(SettingsError, match="ALLOW_PRIVATE_TARGETS"):
        _deliver(ALLOW_PRIVATE_TARGETS="true", NOTIFY_LOCAL_STACK="1", **IN_LAMBDA)


@pytest.mark.parametrize("variable", sorted(REAL_RUNTIME))
def test_deliver_settings_private_targets_stage_local_in_real_lambda_refused(variable: str) -> None:
    with pytest.raises(SettingsError, match="ALLOW_PRIVATE_TARGETS"):
        _deliver(
            ALLOW_PRIVATE_TARGETS="true",
            STAGE="local",
            NOTIFY_LOCAL_STACK="1",
            **IN_LAMBDA,
            **{variable: REAL_RUNTIME[variable]},
        )


def test_load_settings_parses_once_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _env(AuthorizerSettings).items():
        monkeypatch.setenv(name, value)
    first = load_settings(AuthorizerSettings)
    monkeypatch.setenv("ADMIN_TOKEN_HASH_PARAMETER", "/notify/prod/other")

    again = load_settings(AuthorizerSettings)
    clear_settings()

    assert again is first
    assert load_settings(AuthorizerSettings).admin_token_hash_parameter == "/notify/prod/other"


def test_load_settings_variable_unset_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ADMIN_TOKEN_HASH_PARAMETER", raising=False)

    with pytest.raises(SettingsError, match="ADMIN_TOKEN_HASH_PARAMETER is not set"):
        load_settings(AuthorizerSettings)


def test_expand_settings_sender_topic_not_channel_slash_topic_refused() -> None:
    with pytest.raises(SettingsError, match="AUDIENCE_SENDER_TOPIC"):
        ExpandSettings.from_env(_env(ExpandSettings, AUDIENCE_SENDER_TOPIC="audience"))


def test_deliver_settings_expansion_queue_optional() -> None:
    assert _deliver().expansion_queue_url is None
    assert _deliver(EXPANSION_QUEUE_URL=EXPANSION_QUEUE).expansion_queue_url == EXPANSION_QUEUE
