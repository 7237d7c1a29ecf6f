"""Email through SES ``send_email``: a subject, a text part and an optional HTML part."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from consumer.channels.base import Channel, DeliveryReceipt, aws_failure, parse_settings
from core.errors import PermanentDeliveryError
from core.integrations import EmailTarget
from core.models import Content


def _part(text: str) -> dict[str, str]:
    return {"Data": text, "Charset": "UTF-8"}


class EmailChannel(Channel):
    """Sends one email to the target's recipients; the HTML arrives escaped from the producer."""

    type: ClassVar[str] = "email"
    max_recipients: ClassVar[int] = 50
    max_message_bytes: ClassVar[int] = 10 * 1024 * 1024

    def send(
        self,
        content: Content,
        target: Mapping[str, Any],
        credentials: Mapping[str, Any] | None,
        *,
        notification_id: str,
    ) -> DeliveryReceipt:
        """Send the email; throttling and SES outages are retryable, rejected messages and senders permanent."""
        email = parse_settings(EmailTarget, target, "target")
        if len(email.to) > self.max_recipients:
            raise PermanentDeliveryError(f"email: more than {self.max_recipients} recipients")
        if not content.subject or not content.text:
            raise PermanentDeliveryError("email: subject or text is missing")
        body = {"Text": _part(content.text)}
        if content.html:
            body["Html"] = _part(content.html)
        if sum(len(part["Data"].encode()) for part in body.values()) > self.max_message_bytes:
            raise PermanentDeliveryError(f"email: message exceeds {self.max_message_bytes // (1024 * 1024)} MiB")
        try:
            response = self._resources.aws_client("ses").send_email(
                Source=email.sender,
                Destination={"ToAddresses": email.to},
                Message={"Subject": _part(content.subject), "Body": body},
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_failure(exc, "email") from exc
        return DeliveryReceipt(response.get("MessageId"))
