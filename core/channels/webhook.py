"""Signed webhooks: a JSON POST to the target URL, signed with HMAC-SHA256 when the integration has a secret.

Signature v2 (``X-Notification-Signature-V2: v2=<hex>``) is ``HMAC-SHA256(signing_secret, ...)`` over the timestamp,
the notification id and the delivery key, one per line, then the raw body bytes. A receiver recomputes it from the
headers it received, compares in constant time and refuses timestamps older than a few minutes; since the ids are
signed, a captured body cannot be replayed as another delivery to get past the receiver's duplicate check. README.md
shows the code. Lines, not dots, separate the fields: integration names hold dots, header values never hold a line
break, so no two (id, key) pairs sign alike.

Signature v1 (``X-Notification-Signature: v1=<hex>`` over ``"<timestamp>.<body>"``) covers neither id. It is still
sent, unchanged, so that receivers written against it keep working until they verify v2; it goes once they have.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from core.channels.base import (
    Channel,
    ChannelResources,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    classify_status,
    destination_key,
    json_shape,
    limit_at,
    parse_settings,
    post,
    render_text_or_data,
    short_text,
    url_problem,
)
from core.errors import PermanentDeliveryError
from core.models import Content, IntegrationType
from core.validation import Strict

ID_HEADER = "X-Notification-Id"
DELIVERY_KEY_HEADER = "X-Delivery-Key"
TIMESTAMP_HEADER = "X-Notification-Timestamp"
# v1 does not sign the ids (a captured request can be replayed under another id): sent only for older receivers.
SIGNATURE_HEADER = "X-Notification-Signature"
SIGNATURE_V2_HEADER = "X-Notification-Signature-V2"

URL_PATTERN = r"^https?://[^\s/$.?#].[^\s]*$"
URL_RULE = "must be an http or https URL with a host name, such as https://example.com/hooks/orders"


class WebhookTarget(Strict):
    """The URL a signed webhook is posted to."""

    url: str = Field(pattern=URL_PATTERN, max_length=2048)

    @field_validator("url")
    @classmethod
    def _parsable(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class WebhookCredentials(Strict):
    """Secret a webhook receiver uses to verify the signature."""

    signing_secret: SecretStr = Field(min_length=16)


class WebhookIntegration(IntegrationBase):
    """A signed HTTP POST to a URL."""

    type: Literal[IntegrationType.WEBHOOK]
    target: WebhookTarget
    credentials: WebhookCredentials | None = None
    model: Annotated[
        str | dict[str, Any] | list[Any],
        json_shape((str, dict, list), "a template string, a JSON object or a JSON array"),
    ]


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_v1(secret: str, timestamp: str, body: bytes) -> str:
    """Return the v1 signature header value: HMAC-SHA256 over ``"<timestamp>.<body>"``; it covers neither id."""
    return "v1=" + _hmac_hex(secret, timestamp.encode() + b"." + body)


def signature_v2(secret: str, timestamp: str, notification_id: str, delivery_key: str, body: bytes) -> str:
    """Return the v2 signature header value: HMAC-SHA256 over timestamp, notification id and delivery key, one per
    line, followed by the raw body.

    Raise ``ValueError`` when a field holds a line break: the fields would no longer be told apart.
    """
    fields = (timestamp, notification_id, delivery_key)
    if any("\n" in field or "\r" in field for field in fields):
        raise ValueError("a signed field holds a line break")
    return "v2=" + _hmac_hex(secret, "".join(f"{field}\n" for field in fields).encode() + body)


def webhook_body(content: Content) -> bytes:
    """Return the JSON body of a webhook: the rendered object or list as is, a rendered string as ``{"text": …}``."""
    payload = content.data if content.data is not None else {"text": content.text}
    # A lone surrogate (a template or value that is not valid Unicode) has no UTF-8 form: it is sent as the JSON
    # escape it was received as, rather than failing every attempt.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")


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
        """POST the body with the notification id, delivery key, a timestamp and, given a secret, the signatures."""
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
            secret = parse_settings(WebhookCredentials, credentials, "credentials").signing_secret.get_secret_value()
            try:
                headers[SIGNATURE_V2_HEADER] = signature_v2(secret, timestamp, notification_id, delivery_key, body)
            except ValueError:
                raise PermanentDeliveryError("webhook: notification id or delivery key holds a line break") from None
            headers[SIGNATURE_HEADER] = signature_v1(secret, timestamp, body)
        response = post(self._resources.http, url, "webhook", data=body, headers=headers)
        classify_status(response, "webhook", short_text(response, 100))
        return DeliveryReceipt(response.headers.get("X-Request-Id"))
