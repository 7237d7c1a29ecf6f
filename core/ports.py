"""The ports of the stores that logic takes as collaborators: what it calls, not how a store keeps it.

``DeliveryLedger``, ``TopicRegistry``, ``SecretStore`` and ``DynamoPaceStore`` implement them over AWS; the fakes in
``tests/fakes`` implement them in memory. Each port holds only what its users call, so a fake needs no more.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.pacing import PaceStore

if TYPE_CHECKING:
    from core.ledger import AttemptRecord, DeliveryRow, LedgerEntry, LedgerPage, NotificationRecord, RedriveClaim
    from core.models import DeliveryStatus, Topic
    from core.topics import StoredTopic

__all__ = [
    "LedgerPort",
    "LedgerReaderPort",
    "NotificationLedgerPort",
    "PaceStore",
    "RedriveLedgerPort",
    "SecretStorePort",
    "TopicRegistryPort",
]


@runtime_checkable
class LedgerPort(Protocol):
    """The delivery ledger as the consumer (and the dead-letter redrive) uses it: one delivery row at a time."""

    def get_entry(self, notification_id: str, delivery_key: str) -> LedgerEntry | None:
        """Return one delivery row, read consistently, or ``None`` when there is none yet."""
        ...

    def get_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LedgerEntry | None]:
        """Return the rows of ``(notification_id, delivery_key)`` pairs, read consistently in batches; ``None`` for a
        key with no row yet, and no entry for a key the read could not reach (the caller reads it another way)."""
        ...

    def update(
        self,
        notification_id: str,
        delivery_key: str,
        status: DeliveryStatus,
        *,
        row: DeliveryRow | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
        provider_message_id: str | None = None,
        next_attempt_at: str | None = None,
        redriven: int | None = None,
        history: AttemptRecord | None = None,
        earlier: Sequence[AttemptRecord] = (),
        before_run: int | None = None,
        unchanged_since: str | None = None,
    ) -> bool:
        """Write a delivery row's status and append ``history``; return ``False`` when it is ``delivered`` already, or
        counts ``before_run`` redrives or more when that is given, or changed since ``unchanged_since`` (its
        ``updated_at`` as read; ``ROW_ABSENT``: it had no row) when that is given."""
        ...

    def keep_record(self, notification_id: str, until: float) -> None:
        """Keep a notification's record at least the ledger's TTL past ``until`` (Unix time)."""
        ...

    def users_deleted(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Return when each of ``user_ids`` that the audience deleted was (ISO 8601 UTC); raise ``UpstreamError``
        when the ledger cannot tell."""
        ...


@runtime_checkable
class RedriveLedgerPort(LedgerPort, Protocol):
    """The delivery ledger as the dead-letter redrive uses it: the consumer's, and a claim on a delivery's next run."""

    def claim_redrive(self, notification_id: str, delivery_key: str, run: int, claimant: str) -> RedriveClaim:
        """Claim the sending back of a delivery's dead letter as its run ``run`` for ``claimant`` (the letter's id)."""
        ...


@runtime_checkable
class NotificationLedgerPort(Protocol):
    """The delivery ledger as the producer uses it: a notification's record, and the rows of deliveries never sent."""

    def record_notification(self, record: NotificationRecord) -> None:
        """Write or replace a notification's record."""
        ...

    def orphaned(self, notification_id: str) -> bool:
        """Tell whether the notification's partition holds delivery rows but no record (an expired earlier one's)."""
        ...

    def create_notification(self, record: NotificationRecord) -> bool:
        """Write a notification's record unless one exists under its id; return ``False`` when one does."""
        ...

    def set_enqueued(
        self, notification_id: str, enqueued: Mapping[str, str], unsent: Sequence[str] | None = None
    ) -> None:
        """Write on an existing notification's record the message id of each delivery enqueued, by delivery key, and
        the keys of those that could not be."""
        ...

    def get_record(self, notification_id: str) -> NotificationRecord:
        """Return a notification's record; raise ``NotFoundError`` when there is none."""
        ...

    def clear_unsent(self, notification_id: str, keys: Sequence[str]) -> None:
        """Delete the ``failed`` rows of deliveries that never left, so they are ``queued`` again."""
        ...

    def record_failed(self, notification_id: str, rows: Sequence[tuple[str, DeliveryRow, str]]) -> None:
        """Write ``failed`` rows for deliveries that never left: ``(delivery key, row, reason)``; a row that exists
        (the consumer wrote it: SQS took the message late after all) is left as it is."""
        ...


@runtime_checkable
class LedgerReaderPort(Protocol):
    """The ledger as the status route reads it."""

    def page(
        self,
        notification_id: str,
        cursor: str | None = ...,
        size: int = ...,
        summary_seconds: float = ...,
        record: NotificationRecord | None = ...,
    ) -> LedgerPage:
        """Return a notification's record, a page of its deliveries and the count per status."""
        ...

    def get_record(self, notification_id: str) -> NotificationRecord:
        """Return a notification's record; raise ``NotFoundError`` when there is none."""
        ...


@runtime_checkable
class TopicRegistryPort(Protocol):
    """The topic registry: channel/topic → integrations."""

    def get(self, channel: str, topic: str) -> Topic:
        """Return a topic, from a short cache when warm; raise ``NotFoundError`` when there is none."""
        ...

    def read(self, channel: str, topic: str) -> Topic:
        """Return a topic read now, never cached."""
        ...

    def read_stored(self, channel: str, topic: str) -> StoredTopic:
        """Return a topic read now with the credentials its earlier versions used that are still kept."""
        ...

    def list(self, channel: str) -> list[Topic]:
        """Return every topic of a channel, ordered by name."""
        ...

    def page(self, channel: str, after: str | None, limit: int) -> tuple[builtins.list[Topic], bool]:
        """Return up to ``limit`` topics of a channel by name after ``after``, and whether more may follow."""
        ...

    def create(self, topic: Topic) -> None:
        """Write a new topic; raise ``ConflictError`` when one exists."""
        ...

    def replace(self, topic: Topic, expected_updated_at: str, retired: Mapping[str, str] | None = None) -> None:
        """Replace a topic unless it changed since ``expected_updated_at``; ``retired``: credentials kept."""
        ...

    def delete(self, channel: str, topic: str) -> StoredTopic:
        """Delete a topic and return what it held; raise ``NotFoundError`` when there is none."""
        ...


@runtime_checkable
class SecretStorePort(Protocol):
    """Where integration credentials are kept, as JSON objects under names that are never overwritten."""

    def integration_refs(self, channel: str, topic: str, integration: str) -> tuple[str, str]:
        """Return two names no parameter ever had for an integration's new credentials, tried in turn."""
        ...

    def add(self, names: Sequence[str], secret: dict[str, str]) -> str:
        """Store a secret under the first of ``names`` no parameter holds yet; return that name."""
        ...

    def get(self, name: str) -> dict[str, str]:
        """Return a secret object; raise ``NotFoundError`` when there is none."""
        ...

    def read(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """Return the secret objects of those ``names`` that exist, by name."""
        ...

    def delete(self, names: Iterable[str], *, quick: bool = False) -> None:
        """Delete secrets; names that do not exist are ignored (``quick``: undoing a request's adds, in its time)."""
        ...
