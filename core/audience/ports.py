"""The port the audience's logic is typed with: ``AudienceRepository`` over PostgreSQL implements it, and so does the
in-memory fake of the unit tests (``tests/fakes/audience.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.audience.models import (
    App,
    AppRequest,
    Device,
    Registration,
    Segment,
    Subscription,
    User,
    UserPage,
    UserRequest,
)

if TYPE_CHECKING:
    from core.audience.schedules import ClaimedSend, Handoff, NewScheduledSend, Schedule, ScheduleStatus
    from core.audience.sends import NewSend, StoredSend


@runtime_checkable
class SqlCondition(Protocol):
    """A boolean SQL expression over the users table aliased ``u``, with its ``%s`` parameters in order.

    ``core/audience/segments.py`` compiles a segment's ``where`` into one; values are only ever in ``params``.
    """

    @property
    def sql(self) -> str:
        """The expression, with ``%s`` placeholders (a literal ``%`` written ``%%``)."""
        ...

    @property
    def params(self) -> tuple[Any, ...]:
        """The values of the placeholders, in order."""
        ...


@runtime_checkable
class AudienceRepositoryPort(Protocol):
    """Users, apps, devices, subscriptions and segments, and the audience paged by keyset.

    ``get_*`` and ``delete_*`` raise ``NotFoundError`` when there is nothing of that name; failures of the store are
    domain errors (``UpstreamError`` may be retried).
    """

    def put_user(self, user_id: str, request: UserRequest) -> tuple[User, bool]:
        """Create or replace a user; return it and whether it was created."""
        ...

    def get_user(self, user_id: str) -> User:
        """Return a user with its devices and subscriptions."""
        ...

    def delete_user(self, user_id: str) -> list[Device]:
        """Delete a user, its devices and subscriptions; return the devices it had (their endpoints go too)."""
        ...

    def put_app(self, name: str, request: AppRequest) -> tuple[App, bool]:
        """Create or replace an app; return it and whether it was created."""
        ...

    def get_app(self, name: str) -> App:
        """Return an app."""
        ...

    def delete_app(self, name: str) -> list[Device]:
        """Delete an app and its devices; return the devices it had."""
        ...

    def app_devices(self, name: str, limit: int) -> list[Device]:
        """Return up to ``limit`` devices of an app, oldest first."""
        ...

    def delete_devices(self, devices: Sequence[Device]) -> int:
        """Delete these devices, each only while it still has the endpoint it had when read; return how many."""
        ...

    def list_apps(self) -> list[App]:
        """Return every app, by name."""
        ...

    def register_device(
        self,
        user_id: str,
        app: str,
        token: str,
        endpoint: Callable[[str], str],
        forget: Callable[[Sequence[Device]], object] | None = None,
    ) -> Registration:
        """Register a push token of an app for a user, with the endpoint ``endpoint(platform_application_arn)``
        returns (called once the user and the app are known, while their deletions and other registrations of the
        token wait): the same token again is the same device, moved to this user if it belonged to another, enabled
        again. ``forget`` deletes the endpoints of the devices removed beyond the user's bound, before the end."""
        ...

    def list_devices(self, user_id: str) -> list[Device]:
        """Return a user's devices, oldest first."""
        ...

    def get_device(self, user_id: str, device_id: str) -> Device:
        """Return one device of a user."""
        ...

    def delete_device(
        self, user_id: str, device_id: str, forget: Callable[[Sequence[Device]], object] | None = None
    ) -> Device:
        """Delete one device of a user, ``forget([device])`` deleting its endpoint while registrations of its token
        wait; return it."""
        ...

    def disable_device(self, endpoint_arn: str, observed_at: datetime | None = None) -> int:
        """Disable the devices of an SNS endpoint (it answered ``EndpointDisabled`` at ``observed_at``) registered
        before then; return how many were enabled."""
        ...

    def devices_of(self, user_ids: Sequence[str], *, enabled_only: bool = True) -> dict[str, list[Device]]:
        """Return the devices of some users, by user id (users without devices left out)."""
        ...

    def put_subscription(self, user_id: str, channel: str, topic: str) -> bool:
        """Subscribe a user to a channel/topic; return whether the subscription is new."""
        ...

    def delete_subscription(self, user_id: str, channel: str, topic: str) -> None:
        """Unsubscribe a user from a channel/topic."""
        ...

    def list_subscriptions(self, user_id: str) -> list[Subscription]:
        """Return a user's subscriptions, by channel and topic."""
        ...

    def subscribers_page(
        self,
        channel: str,
        topic: str,
        after_user_id: str | None,
        limit: int,
        zones: Sequence[str] | None = None,
    ) -> UserPage:
        """Return the users subscribed to a channel/topic after ``after_user_id`` (in ``zones`` only, when given), in
        id order."""
        ...

    def put_segment(self, name: str, definition: dict[str, Any]) -> tuple[Segment, bool]:
        """Create or replace a named segment; return it and whether it was created."""
        ...

    def get_segment(self, name: str) -> Segment:
        """Return a named segment."""
        ...

    def delete_segment(self, name: str) -> None:
        """Delete a named segment."""
        ...

    def list_segments(self) -> list[Segment]:
        """Return every named segment, by name."""
        ...

    def users_page(self, condition: SqlCondition, after_user_id: str | None, limit: int) -> UserPage:
        """Return the users matching a compiled condition after ``after_user_id``, in id order."""
        ...

    def count_users(self, condition: SqlCondition) -> int:
        """Return how many users match a compiled condition."""
        ...

    def users_by_ids(self, user_ids: Sequence[str]) -> list[User]:
        """Return the users of these ids that exist, in id order."""
        ...


# --- Scheduled sends (the cron's side: core/audience/schedules.py) ---------------------------------------------


@runtime_checkable
class ScheduleStorePort(Protocol):
    """The scheduled sends' store (``AudienceRepository``; the fake in ``tests/fakes/audience.py``)."""

    def create_scheduled_send(self, send: NewScheduledSend) -> Schedule:
        """Record a send (status ``scheduled``) with its schedule, in one transaction."""
        ...

    def user_zones(self) -> list[str]:
        """Return every time zone that has users, sorted."""
        ...

    def claim_due(self, now: datetime, limit: int, claim_timeout: timedelta) -> list[ClaimedSend]:
        """Claim up to ``limit`` due rows at ``now`` in one statement (``FOR UPDATE SKIP LOCKED``)."""
        ...

    def mark_sent(self, handoffs: Sequence[Handoff]) -> int:
        """Mark claims enqueued (``sent``, or re-armed for the next zone); return how many were still claimed."""
        ...

    def mark_failed_attempt(self, claim: ClaimedSend, error: str, retry_at: datetime) -> bool:
        """Put a claim back to ``scheduled`` at ``retry_at`` with its error; return whether it was still claimed."""
        ...

    def mark_failed(self, claim: ClaimedSend, error: str) -> bool:
        """Mark a claim ``failed`` for good (kept, never deleted); return whether it was still claimed."""
        ...

    def cancel_schedule(self, schedule_id: str) -> Schedule:
        """Cancel a scheduled row; ``NotFoundError`` when none, ``ConflictError`` when sent or being sent."""
        ...

    def get_schedule(self, schedule_id: str) -> Schedule:
        """Return a schedule; ``NotFoundError`` when none."""
        ...

    def list_schedules(
        self, status: ScheduleStatus | None, after: tuple[datetime, str] | None, limit: int, caller: str | None = None
    ) -> list[Schedule]:
        """Return schedules newest first (``created_at`` desc, id asc), after the keyset ``after``; of the sends
        ``caller`` asked for only, when given."""
        ...


# --- Sends (POST /v1/sends and the expansion worker: core/audience/sends.py, core/audience/expansion.py) ---------


@runtime_checkable
class SendStorePort(Protocol):
    """The sends' store as ``POST /v1/sends`` uses it (``AudienceRepository``; its fake in ``tests/fakes/``)."""

    def create_send(self, send: NewSend) -> tuple[StoredSend, bool]:
        """Record a send (``queued``) unless one of its notification id exists; return it and whether it is new."""
        ...

    def get_segment(self, name: str) -> Segment:
        """Return a named segment; ``NotFoundError`` when none."""
        ...

    def user_zones(self) -> list[str]:
        """Return every time zone that has users, sorted."""
        ...

    def create_scheduled_send(self, send: NewScheduledSend) -> Schedule:
        """Record a send (status ``scheduled``) with its schedule, in one transaction."""
        ...

    def find_schedule(self, notification_id: str) -> Schedule | None:
        """Return the schedule of the send of ``notification_id``, or ``None`` when it has none."""
        ...


@runtime_checkable
class ExpansionStorePort(Protocol):
    """The audience as the expansion worker reads it, and the send's cursor it moves (``AudienceRepository``)."""

    def create_send(self, send: NewSend) -> tuple[StoredSend, bool]:
        """Record a send (``queued``) unless one of its notification id exists; return it and whether it is new."""
        ...

    def get_send(self, send_id: str) -> StoredSend:
        """Return a send; ``NotFoundError`` when none."""
        ...

    def start_expansion(self, send_id: str, lease: str, lease_seconds: float, zones: Sequence[str] = ()) -> StoredSend:
        """Take the send's lease and mark it ``expanding``; return it, with its cursors. ``zones`` (a hand-off's) are
        marked handed over. ``SendBusyError`` when another run holds a live lease."""
        ...

    def finish_zone(self, send_id: str, zone: str, lease: str) -> bool:
        """Mark the pages of a hand-off's ``zone`` done; ``False`` when the lease is no longer this run's."""
        ...

    def zones_pending(self, send_id: str) -> set[str]:
        """Return the zones hand-offs named whose pages no run finished yet."""
        ...

    def advance_send(
        self,
        send_id: str,
        expanded_through: str | None,
        recipients: int,
        lease: str,
        lease_seconds: float,
        zone: str | None = None,
        handed: Sequence[str] = (),
    ) -> bool:
        """Record a page enqueued (the cursor after it, ``zone``'s when given; the deliveries so far; the users it
        handed over, ``handed``) and hold the lease on; ``False`` when the lease is no longer this run's (nothing
        recorded)."""
        ...

    def handed_over(self, send_id: str, user_ids: Sequence[str]) -> set[str]:
        """Return those of ``user_ids`` a page of the send recorded as handed over (``advance_send``'s ``handed``)."""
        ...

    def finish_send(self, send_id: str, status: str, error: str | None = None) -> None:
        """Mark a send ``expanded`` or ``failed`` (with its error) and free its lease."""
        ...

    def get_segment(self, name: str) -> Segment:
        """Return a named segment; ``NotFoundError`` when none."""
        ...

    def users_page(self, condition: SqlCondition, after_user_id: str | None, limit: int) -> UserPage:
        """Return the users matching a compiled condition after ``after_user_id``, in id order."""
        ...

    def users_by_ids(self, user_ids: Sequence[str]) -> list[User]:
        """Return the users of these ids that exist, in id order."""
        ...

    def subscribers_page(
        self,
        channel: str,
        topic: str,
        after_user_id: str | None,
        limit: int,
        zones: Sequence[str] | None = None,
    ) -> UserPage:
        """Return the users subscribed to a channel/topic after ``after_user_id`` (in ``zones`` only), in id order."""
        ...

    def devices_of(self, user_ids: Sequence[str], *, enabled_only: bool = True) -> dict[str, list[Device]]:
        """Return the devices of some users, by user id."""
        ...

    def disable_device(self, endpoint_arn: str, observed_at: datetime | None = None) -> int:
        """Disable the devices of an SNS endpoint registered before ``observed_at``; return how many were enabled."""
        ...
