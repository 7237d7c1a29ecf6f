"""Mobile push through SNS ``publish`` to a platform endpoint or a topic, with a payload per platform."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from core.channels.base import (
    Channel,
    DeliveryReceipt,
    IntegrationBase,
    Limit,
    aws_failure,
    destination_key,
    json_shape,
    limit_at,
    parse_settings,
    render_text_or_data,
)
from core.errors import EndpointDisabledError, PermanentDeliveryError
from core.models import Content, IntegrationType
from core.validation import Strict

SNS_ARN_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:.+$"
SNS_ARN_RULE = "must be an SNS ARN: arn:aws:sns:<region>:<12-digit account>:<name>"

# SNS names Firebase Cloud Messaging "GCM"; "FCM" is accepted as its alias.
PLATFORM_ALIASES = {"FCM": "GCM"}
# The platforms a payload is built for: SNS picks the one of the endpoint's platform application.
PUSH_PLATFORMS = ("APNS", "APNS_SANDBOX", "GCM")


class PushTarget(Strict):
    """An SNS platform endpoint or an SNS topic: exactly one of the two."""

    endpoint_arn: str | None = Field(default=None, pattern=SNS_ARN_PATTERN)
    topic_arn: str | None = Field(default=None, pattern=SNS_ARN_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> PushTarget:
        if self.endpoint_arn is None and self.topic_arn is None:
            raise ValueError("needs endpoint_arn (an SNS platform endpoint) or topic_arn (an SNS topic)")
        if self.endpoint_arn is not None and self.topic_arn is not None:
            raise ValueError("must hold endpoint_arn or topic_arn, not both")
        return self


class PushIntegration(IntegrationBase):
    """Mobile push through SNS: one platform endpoint or a topic."""

    type: Literal[IntegrationType.PUSH]
    target: PushTarget
    model: Annotated[
        str | dict[str, Any],
        json_shape((str, dict), "a template string or a JSON object with one payload per platform"),
    ]


def _encoded(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def apns_payload(text: str, title: str | None = None) -> dict[str, Any]:
    """Return the APNs payload of a text: an alert with its title when there is one."""
    return {"aps": {"alert": {"title": title, "body": text} if title else text}}


def fcm_payload(text: str, title: str | None = None, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the payload SNS takes for GCM endpoints today: the FCM HTTP v1 shape (``fcmV1Message``).

    FCM's ``data`` holds strings only: other values are sent as their JSON text.
    """
    notification = {"title": title, "body": text} if title else {"body": text}
    message: dict[str, Any] = {"notification": notification}
    if data:
        message["data"] = {key: value if isinstance(value, str) else _encoded(value) for key, value in data.items()}
    return {"fcmV1Message": {"message": message}}


def platform_payloads(
    text: str, title: str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return one payload object per platform and the ``default`` text: what ``Content.data`` carries for a push.

    Built once for every recipient of a send: the objects are JSON-encoded only by ``push_payload``, once, when the
    message is published (the seed encoded them again for every recipient after the first). ``overrides`` replaces
    a platform's payload (``{"APNS": {…}, "GCM": {…}}``, ``FCM`` naming GCM); an ``APNS`` one serves the sandbox too
    unless ``APNS_SANDBOX`` is given.
    """
    given = {PLATFORM_ALIASES.get(key, key): value for key, value in (overrides or {}).items()}
    apns = given.get("APNS", apns_payload(text, title))
    return {
        "default": text,
        "APNS": apns,
        "APNS_SANDBOX": given.get("APNS_SANDBOX", apns),
        "GCM": given.get("GCM", fcm_payload(text, title)),
    }


def push_payload(content: Content) -> str:
    """Return the SNS ``MessageStructure=json`` message: a ``default`` text and one payload per platform.

    A rendered string becomes an alert on APNS and APNS_SANDBOX and a notification body on GCM (FCM HTTP v1,
    ``fcmV1Message``); a rendered object is taken as given (``{"default": …, "APNS": {…}, "GCM": {…}}``), each
    platform's value JSON-encoded once as SNS wants (a value that is a string already is taken as encoded).
    """
    if isinstance(content.data, Mapping):
        structure = {PLATFORM_ALIASES.get(key, key): _encoded(value) for key, value in content.data.items()}
        if "default" not in structure:
            structure["default"] = content.text or next(iter(structure.values()), "")
        return json.dumps(structure, separators=(",", ":"), ensure_ascii=False)
    if content.data is not None or not content.text:
        raise PermanentDeliveryError("push: content must be text or a per-platform object")
    structure = {key: _encoded(value) for key, value in platform_payloads(content.text, content.subject).items()}
    return json.dumps(structure, separators=(",", ":"), ensure_ascii=False)


class PushChannel(Channel):
    """Publishes to an SNS platform endpoint or topic; a disabled endpoint is permanent.

    No provider limit is declared: SNS's publish quota is far above what one consumer sends.
    """

    type: ClassVar[str] = IntegrationType.PUSH.value
    integration_model = PushIntegration
    max_message_bytes: ClassVar[int] = 256 * 1024

    @classmethod
    def render(cls, model: Any, values: Mapping[str, Any]) -> Content:
        """Render a string model into text and a per-platform object into data, values inserted as they are."""
        return render_text_or_data(model, values)

    def rate_limits(
        self, target: Mapping[str, Any], credentials: Mapping[str, Any] | None, rate_per_second: float | None
    ) -> list[Limit]:
        """Return the integration's own rate on its endpoint or topic, or nothing when it has none."""
        where = parse_settings(PushTarget, target, "target")
        return limit_at(destination_key("push", where.endpoint_arn or where.topic_arn or ""), None, rate_per_second)

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
        delivery_key: str,
    ) -> DeliveryReceipt:
        """Publish the payload; throttling and SNS outages are retryable, ``EndpointDisabled`` permanent."""
        where = parse_settings(PushTarget, target, "target")
        message = push_payload(content)
        if len(message.encode()) > self.max_message_bytes:
            raise PermanentDeliveryError(f"push: message exceeds {self.max_message_bytes // 1024} KiB")
        destination = {"TargetArn": where.endpoint_arn} if where.endpoint_arn else {"TopicArn": where.topic_arn}
        asked_at = time.time()
        try:
            response = self._resources.aws_client("sns").publish(
                Message=message, MessageStructure="json", **destination
            )
        except ClientError as exc:
            if where.endpoint_arn and exc.response.get("Error", {}).get("Code") == "EndpointDisabled":
                # The device is gone (app uninstalled, token expired): permanent, and its device is to be disabled.
                raise EndpointDisabledError("push: EndpointDisabled", where.endpoint_arn, asked_at) from exc
            raise aws_failure(exc, "push") from exc
        except BotoCoreError as exc:
            raise aws_failure(exc, "push") from exc
        return DeliveryReceipt(response.get("MessageId"))
