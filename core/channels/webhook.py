"""Signed webhooks: a JSON POST to the target URL, signed with HMAC-SHA256 when the integration has a secret.

A receiver verifies a request by computing ``HMAC-SHA256(signing_secret, f"{timestamp}.{body}")`` over the raw body
bytes, comparing its hex digest in constant time with the ``v1=`` value of ``X-Notification-Signature``, and refusing
timestamps older than a few minutes (a replayed request carries an old timestamp). README.md shows the code.
``X-Notification-Id`` and ``X-Delivery-Key`` together name one delivery, so a receiver can drop the rare duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from core.channels.base import (
    Channel,
    ChannelResources,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    classify_status,
    destination_key,
    limit_at,
    parse_settings,
    post,
    render_text_or_data,
    short_text,
)
from core.errors import PermanentDeliveryError
from core.models import Content, IntegrationType, Strict

ID_HEADER = "X-Notification-Id"
DELIVERY_KEY_HEADER = "X-Delivery-Key"
TIMESTAMP_HEADER = "X-Notification-Timestamp"
SIGNATURE_HEADER = "X-Notification-Signature"
SIGNATURE_VERSION = "v1"


class WebhookTarget(Strict):
    """The URL a signed webhook is posted to."""

    url: str = Field(pattern=r"^https?://[^\s/$.?#].[^\s]*$", max_length=2048)


class WebhookCredentials(Strict):
    """Secret a webhook receiver uses to verify the signature."""

    signing_secret: SecretStr = Field(min_length=16)


class WebhookIntegration(IntegrationBase):
    """A signed HTTP POST to a URL."""

    type: Literal[IntegrationType.WEBHOOK]
    target: WebhookTarget
    credentials: WebhookCredentials | None = None
    model: str | dict[str, Any] | list[Any]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the signature header value of a body sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def webhook_body(content: Content) -> bytes:
    """Return the JSON body of a webhook: the rendered object or list as is, a rendered string as ``{"text": …}``."""
    payload = content.data if content.data is not None else {"text": content.text}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookChannel(Channel):
    """POSTs JSON to a URL; any 2xx is success. No provider limit: only the integration's own rate paces it."""

    type: ClassVar[str] = IntegrationType.WEBHOOK.value
    integration_model = WebhookIntegration
    credentials_model = WebhookCredentials
    max_body_bytes: ClassVar[int] = 256 * 1024

    def __init__(self, resources: ChannelResources, clock: Callable[[], float] = time.time) -> None:
        super().__init__(resources)
        self._clock = clock

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render a string model into text and an object or list model into data, values inserted as they are."""
        return render_text_or_data(model, values)

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the integration's own rate on its URL, or nothing when it has none."""
        url = parse_settings(WebhookTarget, target, "target").url
        return limit_at(destination_key("webhook", url), None, rate_per_second)

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """POST the body with the notification id, delivery key, a timestamp and, given a secret, the signature."""
        url = parse_settings(WebhookTarget, target, "target").url
        if content.data is None and content.text is None:
            raise PermanentDeliveryError("webhook: no content to send")
        body = webhook_body(content)
        if len(body) > self.max_body_bytes:
            raise PermanentDeliveryError(f"webhook: body exceeds {self.max_body_bytes // 1024} KiB")
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: notification_id,
            DELIVERY_KEY_HEADER: delivery_key,
            TIMESTAMP_HEADER: timestamp,
        }
        if credentials:
            secret = parse_settings(WebhookCredentials, credentials, "credentials").signing_secret
            headers[SIGNATURE_HEADER] = sign(secret.get_secret_value(), timestamp, body)
        response = post(self._resources.http, url, "webhook", data=body, headers=headers)
        classify_status(response, "webhook", short_text(response, 100))
        return DeliveryReceipt(response.headers.get("X-Request-Id"))
