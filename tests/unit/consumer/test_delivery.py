"""Unit tests of one delivery attempt (consumer/delivery.py) with a fake channel, ledger, SSM and SQS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumer.credentials import CredentialSource
from consumer.delivery import Attempt, Deliverer, Outcome, parse_message
from consumer.retry import VisibilityScheduler
from core.errors import DeliveryDeferredError, PermanentDeliveryError, RetryableDeliveryError
from core.models import DeliveryStatus
from tests.fakes.delivery import FakeChannel, FakeLedger, FakeParameterProvider, FakeSqsVisibility

REF = "/notify/test/integrations/orders/shipped/hook"


def _body(**changes: Any) -> str:
    message: dict[str, Any] = {
        "v": 1,
        "notification_id": "n-1",
        "channel": "orders",
        "topic": "shipped",
        "created_at": "2026-11-21T20:00:00.000Z",
        "integration": {"name": "hook", "type": "webhook", "target": {"url": "https://example.com"}},
        "content": {"text": "hi"},
    }
    message.update(changes)
    return json.dumps(message)


def _attempt(body: str | None = None, receive_count: int = 1) -> Attempt:
    return Attempt(message_id="m-1", receipt_handle="rh-1", receive_count=receive_count, body=body or _body())


class Rig:
    """A deliverer on fakes, and the fakes to assert on."""

    def __init__(self, result: Any = None, ledger: FakeLedger | None = None, parameters: Any = None) -> None:
        self.channel = FakeChannel(result)
        self.ledger = ledger or FakeLedger()
        self.sqs = FakeSqsVisibility()
        self.metrics: list[tuple[str, str]] = []
        self.deliverer = Deliverer(
            channels={"webhook": self.channel},
            ledger=self.ledger,  # type: ignore[arg-type]
            credentials=CredentialSource(parameters or FakeParameterProvider(), max_age=300),
            scheduler=VisibilityScheduler(self.sqs, "https://queue"),
            max_receive_count=5,
            count=lambda kind, outcome: self.metrics.append((kind, outcome)),
            rand=lambda: 0.0,
        )

    def row(self) -> dict[str, Any]:
        return self.ledger.rows[("n-1", "hook")]


def test_deliverer_success_records_delivered_with_provider_id() -> None:
    rig = Rig()

    outcome = rig.deliverer.process(_attempt(receive_count=2))

    assert outcome is Outcome.DELIVERED
    assert rig.row() == {"status": DeliveryStatus.DELIVERED, "attempts": 2, "provider_message_id": "provider-1"}


def test_deliverer_success_counts_delivered_metric() -> None:
    rig = Rig()

    rig.deliverer.process(_attempt())

    assert rig.metrics == [("webhook", "delivered")]


def test_deliverer_already_delivered_skips_send() -> None:
    rig = Rig()
    rig.ledger.set_status("n-1", "hook", DeliveryStatus.DELIVERED)

    outcome = rig.deliverer.process(_attempt(receive_count=2))

    assert (outcome, rig.channel.sent) == (Outcome.SKIPPED, [])


def test_deliverer_permanent_failure_records_failed_without_retry() -> None:
    rig = Rig(PermanentDeliveryError("webhook: HTTP 404"))

    outcome = rig.deliverer.process(_attempt())

    assert outcome is Outcome.FAILED
    assert (rig.row()["status"], rig.row()["last_error"], rig.sqs.changes) == (
        DeliveryStatus.FAILED,
        "webhook: HTTP 404",
        [],
    )


def test_deliverer_retry_after_sets_visibility_to_provider_delay() -> None:
    rig = Rig(RetryableDeliveryError("webhook: HTTP 429", retry_after=120))

    with pytest.raises(DeliveryDeferredError):
        rig.deliverer.process(_attempt())

    assert rig.sqs.changes == [("rh-1", 120)]


def test_deliverer_retryable_failure_backs_off_by_receive_count() -> None:
    rig = Rig(RetryableDeliveryError("webhook: HTTP 503"))

    with pytest.raises(DeliveryDeferredError):
        rig.deliverer.process(_attempt(receive_count=3))

    # rand() == 0: the fixed half of 10 s * 2^2.
    assert rig.sqs.changes == [("rh-1", 20)]


def test_deliverer_retryable_failure_records_retrying_with_error() -> None:
    rig = Rig(RetryableDeliveryError("webhook: timed out"))

    with pytest.raises(DeliveryDeferredError):
        rig.deliverer.process(_attempt(receive_count=2))

    assert rig.row() == {"status": DeliveryStatus.RETRYING, "attempts": 2, "last_error": "webhook: timed out"}


def test_deliverer_last_attempt_records_dead() -> None:
    rig = Rig(RetryableDeliveryError("webhook: HTTP 500"))

    with pytest.raises(DeliveryDeferredError):
        rig.deliverer.process(_attempt(receive_count=5))

    assert (rig.row()["status"], rig.metrics, rig.sqs.changes) == (
        DeliveryStatus.DEAD,
        [("webhook", "dead")],
        [("rh-1", 0)],
    )


def test_deliverer_malformed_body_fails_without_send() -> None:
    rig = Rig()

    outcome = rig.deliverer.process(_attempt(body='{"v": 1, "notification_id": "n-1"}'))

    assert (outcome, rig.channel.sent, rig.ledger.rows) == (Outcome.FAILED, [], {})


def test_deliverer_malformed_body_is_logged_with_ids(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()

    rig.deliverer.process(_attempt(body='{"v": 2, "notification_id": "n-9"}'))

    [record] = [record for record in caplog.records if record.message == "malformed delivery message dropped"]
    assert (record.message_id, record.notification_id) == ("m-1", "n-9")  # type: ignore[attr-defined]


def test_deliverer_unexpected_error_is_retried() -> None:
    rig = Rig(KeyError("bug"))

    with pytest.raises(DeliveryDeferredError):
        rig.deliverer.process(_attempt())

    assert (rig.row()["status"], rig.row()["last_error"]) == (DeliveryStatus.RETRYING, "internal error (KeyError)")


def test_deliverer_ledger_failure_after_send_still_counts_delivered() -> None:
    rig = Rig(ledger=FakeLedger(fail_updates=True))

    outcome = rig.deliverer.process(_attempt())

    assert outcome is Outcome.DELIVERED


def test_deliverer_passes_credentials_by_reference() -> None:
    rig = Rig(parameters=FakeParameterProvider({REF: {"signing_secret": "s" * 16}}))
    body = json.loads(_body())
    body["integration"]["credentials_ref"] = REF

    rig.deliverer.process(_attempt(body=json.dumps(body)))

    assert rig.channel.sent[0][2] == {"signing_secret": "s" * 16}


def test_parse_message_unknown_version_is_permanent() -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        parse_message(_body(v=2))

    assert raised.value.reason == "malformed delivery message: v"
