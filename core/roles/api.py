"""Settings of the management API function: topics and their credentials, notification status, dead letters,
promotions, purchases and payments."""

from __future__ import annotations

from pydantic import Field

from core.purchases.tables import PaymentsSettings, PromotionsSettings, PurchasesSettings
from core.roles.shared import DeadLetterQueueSettings, DeliveryQueueSettings, LedgerSettings, TopicsSettings
from core.settings import FunctionSettings


class IntegrationSecretsSettings(FunctionSettings):
    """Where integration credentials are written: SSM parameters under this prefix."""

    parameter_prefix: str = Field(alias="PARAMETER_PREFIX", pattern=r"^/\S+$")


class PushTopicSettings(FunctionSettings):
    """The SNS topics a push integration may publish to (``target.topic_arn``): those of the function's region whose
    name starts with this prefix, the only topics the deliver role may publish to (the ``pushTopicPrefix`` param)."""

    push_topic_prefix: str = Field(alias="PUSH_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9_-]+$")


class ApiSettings(
    TopicsSettings,
    PushTopicSettings,
    LedgerSettings,
    DeliveryQueueSettings,
    DeadLetterQueueSettings,
    IntegrationSecretsSettings,
    PromotionsSettings,
    PurchasesSettings,
    PaymentsSettings,
):
    """The management API: topics and their credentials, notification status, dead letters and their redrive,
    promotions, and what was done with purchases and payments."""
