"""Settings of the purchases roles (the Stripe credit and purchase notification subscribers, the Stripe webhook
route, the payment worker) and their mixins; the base and ``load_settings`` are ``core/settings.py``'s, the purchase
tables the management API reads too ``core/purchases/tables.py``'s, and the spine's shared mixins
``core/roles/shared.py``'s."""

from __future__ import annotations

from pydantic import Field

from core.purchases.tables import PaymentsSettings, PromotionsSettings, PurchasesSettings
from core.roles.shared import DeliveryQueueSettings, LedgerSettings, TopicsSettings
from core.settings import FunctionSettings


class StripeSettings(FunctionSettings):
    """The Stripe API: the SSM SecureString holding the secret key, how long it is reused, and the API's base URL.

    ``STRIPE_API_BASE`` is set for the local stage only (the local Stripe server); unset, the SDK's own base is used.
    """

    stripe_secret_key_parameter: str = Field(alias="STRIPE_SECRET_KEY_PARAMETER", pattern=r"^/\S+$")
    stripe_secrets_cache_seconds: int = Field(default=300, ge=0, alias="STRIPE_SECRETS_CACHE_SECONDS")
    stripe_api_base: str | None = Field(default=None, alias="STRIPE_API_BASE", pattern=r"^https?://\S+$")
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=60, alias="STRIPE_TIMEOUT_SECONDS")


class StripeWebhookSecretSettings(FunctionSettings):
    """The SSM SecureString holding the Stripe webhook endpoint's signing secret, and Stripe's timestamp tolerance."""

    stripe_webhook_secret_parameter: str = Field(alias="STRIPE_WEBHOOK_SECRET_PARAMETER", pattern=r"^/\S+$")
    stripe_secrets_cache_seconds: int = Field(default=300, ge=0, alias="STRIPE_SECRETS_CACHE_SECONDS")
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600, alias="STRIPE_WEBHOOK_TOLERANCE_SECONDS")


class StripeWebhookQueueSettings(FunctionSettings):
    """The queue verified Stripe webhook events wait in for the payment worker."""

    stripe_webhook_queue_url: str = Field(alias="STRIPE_WEBHOOK_QUEUE_URL", min_length=1)


class PurchaseTopicSettings(FunctionSettings):
    """The SNS ``Purchase`` topic the payment worker publishes to."""

    purchase_topic_arn: str = Field(alias="PURCHASE_TOPIC_ARN", min_length=1)


class PurchaseNotificationSettings(FunctionSettings):
    """The channel/topic a purchase is published on as a notification (stage params), its integrations' templates
    getting the purchase's fields as variables."""

    purchase_notification_channel: str = Field(alias="PURCHASE_NOTIFICATION_CHANNEL", min_length=1)
    purchase_notification_topic: str = Field(alias="PURCHASE_NOTIFICATION_TOPIC", min_length=1)


class StripeCreditSettings(StripeSettings, PromotionsSettings, PurchasesSettings):
    """The Stripe credit subscriber: reads promotions, credits customer balances, records the credits."""


class PurchaseNotifySettings(
    PurchaseNotificationSettings, TopicsSettings, LedgerSettings, DeliveryQueueSettings, PurchasesSettings
):
    """The purchase notification subscriber: publishes a purchase on its channel/topic through the one fan-out."""


class StripeWebhookSettings(StripeWebhookSecretSettings, StripeWebhookQueueSettings):
    """The Stripe webhook route: checks the signature, enqueues the event."""


class PaymentWorkerSettings(StripeSettings, PaymentsSettings, PurchaseTopicSettings):
    """The payment worker: retrieves PaymentIntents, records payments, publishes Purchase events."""
