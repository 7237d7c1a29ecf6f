"""Unit tests of core/ports.py: the stores and the in-memory fakes implement the ports the logic is typed with.

mypy checks each assignment below structurally (every method, every signature); the ``isinstance`` checks fail at run
time when a method is missing.
"""

from __future__ import annotations

from core.ledger import DeliveryLedger
from core.pacing import DynamoPaceStore
from core.ports import (
    LedgerPort,
    LedgerReaderPort,
    NotificationLedgerPort,
    PaceStore,
    SecretStorePort,
    TopicRegistryPort,
)
from core.secrets import SecretStore
from core.topics import TopicRegistry
from tests.fakes.delivery import FakeLedger, UnreachablePaceStore
from tests.fakes.dynamodb import FakeDynamoDBClient
from tests.fakes.pacing import InMemoryPaceStore

_CLIENT = FakeDynamoDBClient({"t": ("k",)})


def test_ports_delivery_ledger_implements_both_ledger_ports() -> None:
    consumer_side: LedgerPort = DeliveryLedger(_CLIENT, "t")
    producer_side: NotificationLedgerPort = DeliveryLedger(_CLIENT, "t")

    assert isinstance(consumer_side, LedgerPort)
    assert isinstance(producer_side, NotificationLedgerPort)


def test_ports_delivery_ledger_implements_the_status_reader_port() -> None:
    reader: LedgerReaderPort = DeliveryLedger(_CLIENT, "t")

    assert isinstance(reader, LedgerReaderPort)


def test_ports_fake_ledger_implements_the_consumer_ledger_port() -> None:
    ledger: LedgerPort = FakeLedger()

    assert isinstance(ledger, LedgerPort)


def test_ports_topic_registry_implements_its_port() -> None:
    registry: TopicRegistryPort = TopicRegistry(_CLIENT, "t")

    assert isinstance(registry, TopicRegistryPort)


def test_ports_secret_store_implements_its_port() -> None:
    store: SecretStorePort = SecretStore(object(), "/notify/test")

    assert isinstance(store, SecretStorePort)


def test_ports_pace_stores_implement_the_pace_store_port() -> None:
    stores: list[PaceStore] = [DynamoPaceStore(_CLIENT, "t"), InMemoryPaceStore(), UnreachablePaceStore()]

    assert len(stores) == 3
