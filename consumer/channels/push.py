"""Mobile push through SNS ``publish`` to a platform endpoint or a topic, with a payload per platform."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from consumer.channels.base import Channel, DeliveryReceipt, aws_failure, parse_settings
from core.errors import PermanentDeliveryError
from core.integrations import PushTarget
from core.models import Content

# SNS names Firebase Cloud Messaging "GCM"; "FCM" is accepted as its alias.
PLATFORM_ALIASES = {"FCM": "GCM"}


def _encoded(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def push_payload(content: Content) -> str:
    """Return the SNS ``MessageStructure=json`` message: a ``default`` text and one payload per platform.

    A rendered string becomes an alert on APNS and APNS_SANDBOX and a notification body on GCM; a rendered object
    is taken as given (``{"default": …, "APNS": {…}, "GCM": {…}}``), each platform's value JSON-encoded as SNS wants.
    """
    if isinstance(content.data, Mapping):
        structure = {PLATFORM_ALIASES.get(key, key): _encoded(value) for key, value in content.data.items()}
        if "default" not in structure:
            structure["default"] = content.text or next(iter(structure.values()), "")
        return json.dumps(structure, separators=(",", ":"), ensure_ascii=False)
    if content.data is not None or not content.text:
        raise PermanentDeliveryError("push: content must be text or a per-platform object")
    apns = _encoded({"aps": {"alert": content.text}})
    structure = {
        "default": content.text,
        "APNS": apns,
        "APNS_SANDBOX": apns,
        "GCM": _encoded({"notification": {"body": content.text}}),
    }
    return json.dumps(structure, separators=(",", ":"), ensure_ascii=False)


class PushChannel(Channel):
    """Publishes to an SNS platform endpoint or topic; a disabled endpoint is permanent."""

    type: ClassVar[str] = "push"
    max_message_bytes: ClassVar[int] = 256 * 1024

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
    ) -> DeliveryReceipt:
        """Publish the payload; throttling and SNS outages are retryable, ``EndpointDisabled`` permanent."""
        where = parse_settings(PushTarget, target, "target")
        message = push_payload(content)
        if len(message.encode()) > self.max_message_bytes:
            raise PermanentDeliveryError(f"push: message exceeds {self.max_message_bytes // 1024} KiB")
        destination = {"TargetArn": where.endpoint_arn} if where.endpoint_arn else {"TopicArn": where.topic_arn}
        try:
            response = self._resources.aws_client("sns").publish(
                Message=message, MessageStructure="json", **destination
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_failure(exc, "push") from exc
        return DeliveryReceipt(response.get("MessageId"))
