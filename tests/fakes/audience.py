"""An in-memory ``AudienceRepositoryPort`` for unit tests, with the PostgreSQL repository's behaviour.

A compiled condition cannot be run without PostgreSQL: the fake evaluates a condition's ``matches(user)`` when it has
one (``MatchingCondition``), and matches every user otherwise.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.audience.models import (
    MAX_DEVICES_PER_USER,
    MAX_SUBSCRIPTIONS_PER_USER,
    SUBSCRIPTIONS_FULL,
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
from core.audience.ports import SqlCondition
from core.audience.schedules import ClaimedSend, DueSend, Handoff, NewScheduledSend, Schedule, ScheduleStatus
from core.audience.sends import AnyJob, NewSend, SendBusyError, StoredSend
from core.errors import ConflictError, InvalidRequestError, NotFoundError, UpstreamError
from core.ledger import DeliveryRow, NotificationRecord
from core.models import DeliveryStatus


@dataclass(frozen=True)
class MatchingCondition:
    """A compiled condition with the Python predicate that stands for its SQL in the fake."""

    sql: str
    params: tuple[Any, ...]
    matches: Callable[[User], bool] = field(default=lambda _user: True)


def endpoint(arn: str) -> Callable[[str], str]:
    """Return what ``register_device`` takes for a device's SNS endpoint: ``arn``, whatever the platform."""
    return lambda _platform_application_arn: arn


def _now() -> datetime:
    return datetime.now(UTC)


class FakeAudienceRepository:
    """Users, apps, devices, subscriptions and segments in dictionaries."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.apps: dict[str, App] = {}
        self.devices: dict[str, Device] = {}
        self.subscriptions: dict[tuple[str, str, str], Subscription] = {}
        self.segments: dict[str, Segment] = {}

    def _user(self, user_id: str) -> User:
        if user_id not in self.users:
            raise NotFoundError("the user does not exist")
        return self.users[user_id]

    def _devices(self, user_id: str) -> list[Device]:
        found = [device for device in self.devices.values() if device.user_id == user_id]
        return sorted(found, key=lambda device: (device.created_at, device.device_id))

    def put_user(self, user_id: str, request: UserRequest) -> tuple[User, bool]:
        """Create or replace a user."""
        earlier = self.users.get(user_id)
        now = _now()
        user = User(
            user_id=user_id,
            timezone=request.timezone,
            email=request.email,
            telegram_chat_id=request.telegram_chat_id,
            data=dict(request.data),
            created_at=earlier.created_at if earlier else now,
            updated_at=now,
        )
        self.users[user_id] = user
        return user, earlier is None

    def get_user(self, user_id: str) -> User:
        """Return a user with its devices and subscriptions."""
        user = self._user(user_id)
        return user.model_copy(
            update={"devices": self._devices(user_id), "subscriptions": self.list_subscriptions(user_id)}
        )

    def delete_user(self, user_id: str) -> list[Device]:
        """Delete a user with its devices and subscriptions."""
        self._user(user_id)
        devices = self._devices(user_id)
        del self.users[user_id]
        for device in devices:
            del self.devices[device.device_id]
        self.subscriptions = {key: item for key, item in self.subscriptions.items() if key[0] != user_id}
        return devices

    def put_app(self, name: str, request: AppRequest) -> tuple[App, bool]:
        """Create or replace an app; ``ConflictError`` when another app has its platform application, or its devices
        would be left on the one it leaves."""
        earlier = self.apps.get(name)
        if any(
            other != name and app.platform_application_arn == request.platform_application_arn
            for other, app in self.apps.items()
        ):
            raise ConflictError("platform_application_arn: another app has this platform application")
        moved = earlier is not None and (earlier.platform, earlier.platform_application_arn) != (
            request.platform,
            request.platform_application_arn,
        )
        if moved and any(device.app == name for device in self.devices.values()):
            raise ConflictError("platform_application_arn: the app has devices on its platform application")
        now = _now()
        app = App(
            name=name,
            platform=request.platform,
            platform_application_arn=request.platform_application_arn,
            created_at=earlier.created_at if earlier else now,
            updated_at=now,
        )
        self.apps[name] = app
        return app, earlier is None

    def get_app(self, name: str) -> App:
        """Return an app."""
        if name not in self.apps:
            raise NotFoundError("the app does not exist")
        return self.apps[name]

    def delete_app(self, name: str) -> list[Device]:
        """Delete an app and its devices."""
        self.get_app(name)
        devices = sorted(
            (device for device in self.devices.values() if device.app == name),
            key=lambda device: (device.created_at, device.device_id),
        )
        for device in devices:
            del self.devices[device.device_id]
        del self.apps[name]
        return devices

    def app_devices(self, name: str, limit: int) -> list[Device]:
        """Return up to ``limit`` devices of an app, oldest first."""
        self.get_app(name)
        return sorted(
            (device for device in self.devices.values() if device.app == name),
            key=lambda device: (device.created_at, device.device_id),
        )[:limit]

    def delete_devices(self, devices: Sequence[Device]) -> int:
        """Delete these devices while they keep the endpoint they had."""
        gone = 0
        for device in devices:
            current = self.devices.get(device.device_id)
            if current is not None and current.endpoint_arn == device.endpoint_arn:
                del self.devices[device.device_id]
                gone += 1
        return gone

    def list_apps(self) -> list[App]:
        """Return every app, by name."""
        return [self.apps[name] for name in sorted(self.apps)]

    def register_device(
        self,
        user_id: str,
        app: str,
        token: str,
        endpoint: Callable[[str], str],
        forget: Callable[[Sequence[Device]], object] | None = None,
    ) -> Registration:
        """Register a token with the endpoint ``endpoint`` returns for the app's platform: the same (app, token) is
        the same device, moved to this user and enabled again."""
        if app not in self.apps:
            raise InvalidRequestError("app", "no app of that name is registered")
        self._user(user_id)
        endpoint_arn = endpoint(self.apps[app].platform_application_arn)
        earlier = next((d for d in self.devices.values() if d.app == app and d.token == token), None)
        now = _now()
        device = Device(
            device_id=earlier.device_id if earlier else str(uuid.uuid4()),
            user_id=user_id,
            app=app,
            platform=self.apps[app].platform,
            token=token,
            endpoint_arn=endpoint_arn,
            enabled=True,
            last_seen=now,
            created_at=earlier.created_at if earlier else now,
        )
        self.devices[device.device_id] = device
        others = sorted(
            (d for d in self._devices(user_id) if d.device_id != device.device_id),
            key=lambda d: (d.enabled, d.last_seen, d.created_at),
            reverse=True,
        )
        removed = tuple(others[MAX_DEVICES_PER_USER - 1 :])
        for gone in removed:
            del self.devices[gone.device_id]
        previous = earlier.user_id if earlier and earlier.user_id != user_id else None
        if forget is not None and removed:
            forget(removed)
        return Registration(device=device, created=earlier is None, previous_user_id=previous, removed=removed)

    def list_devices(self, user_id: str) -> list[Device]:
        """Return a user's devices, oldest first."""
        self._user(user_id)
        return self._devices(user_id)

    def get_device(self, user_id: str, device_id: str) -> Device:
        """Return one device of a user."""
        device = self.devices.get(device_id)
        if device is None or device.user_id != user_id:
            raise NotFoundError("the device does not exist")
        return device

    def delete_device(
        self, user_id: str, device_id: str, forget: Callable[[Sequence[Device]], object] | None = None
    ) -> Device:
        """Delete one device of a user, and its endpoint with ``forget``."""
        device = self.get_device(user_id, device_id)
        del self.devices[device_id]
        if forget is not None:
            forget([device])
        return device

    def disable_device(self, endpoint_arn: str, observed_at: datetime | None = None) -> int:
        """Disable the devices of an endpoint registered before ``observed_at``; return how many were enabled."""
        found = [
            d
            for d in self.devices.values()
            if d.endpoint_arn == endpoint_arn and d.enabled and (observed_at is None or d.last_seen < observed_at)
        ]
        for device in found:
            self.devices[device.device_id] = device.model_copy(update={"enabled": False})
        return len(found)

    def devices_of(self, user_ids: Sequence[str], *, enabled_only: bool = True) -> dict[str, list[Device]]:
        """Return the devices of some users, by user id."""
        found: dict[str, list[Device]] = {}
        for user_id in sorted(set(user_ids)):
            devices = [d for d in self._devices(user_id) if d.enabled or not enabled_only]
            if devices:
                found[user_id] = devices
        return found

    def put_subscription(self, user_id: str, channel: str, topic: str) -> bool:
        """Subscribe a user to a channel/topic."""
        self._user(user_id)
        key = (user_id, channel, topic)
        if key in self.subscriptions:
            return False
        if sum(1 for other in self.subscriptions if other[0] == user_id) >= MAX_SUBSCRIPTIONS_PER_USER:
            raise ConflictError(SUBSCRIPTIONS_FULL)
        self.subscriptions[key] = Subscription(user_id=user_id, channel=channel, topic=topic, created_at=_now())
        return True

    def delete_subscription(self, user_id: str, channel: str, topic: str) -> None:
        """Unsubscribe a user from a channel/topic."""
        if self.subscriptions.pop((user_id, channel, topic), None) is None:
            raise NotFoundError("the subscription does not exist")

    def list_subscriptions(self, user_id: str) -> list[Subscription]:
        """Return a user's subscriptions."""
        self._user(user_id)
        return [self.subscriptions[key] for key in sorted(self.subscriptions) if key[0] == user_id]

    def _page(self, user_ids: list[str], after_user_id: str | None, limit: int) -> UserPage:
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("limit", "must be between 1 and 1000")
        ids = sorted(user_id for user_id in user_ids if after_user_id is None or user_id > after_user_id)[:limit]
        users = [self.users[user_id] for user_id in ids]
        return UserPage(users=users, next_after=ids[-1] if len(ids) == limit else None)

    def subscribers_page(
        self,
        channel: str,
        topic: str,
        after_user_id: str | None,
        limit: int,
        zones: Sequence[str] | None = None,
    ) -> UserPage:
        """Return a page of a channel/topic's subscribers (in ``zones`` only, when given)."""
        ids = [
            key[0]
            for key in self.subscriptions
            if key[1:] == (channel, topic) and (zones is None or self.users[key[0]].timezone in zones)
        ]
        return self._page(ids, after_user_id, limit)

    def put_segment(self, name: str, definition: dict[str, Any]) -> tuple[Segment, bool]:
        """Create or replace a segment."""
        earlier = self.segments.get(name)
        now = _now()
        segment = Segment(
            name=name, definition=definition, created_at=earlier.created_at if earlier else now, updated_at=now
        )
        self.segments[name] = segment
        return segment, earlier is None

    def get_segment(self, name: str) -> Segment:
        """Return a segment."""
        if name not in self.segments:
            raise NotFoundError("the segment does not exist")
        return self.segments[name]

    def delete_segment(self, name: str) -> None:
        """Delete a segment."""
        if self.segments.pop(name, None) is None:
            raise NotFoundError("the segment does not exist")

    def list_segments(self) -> list[Segment]:
        """Return every segment, by name."""
        return [self.segments[name] for name in sorted(self.segments)]

    def _matching(self, condition: SqlCondition) -> list[str]:
        matches: Callable[[User], bool] = getattr(condition, "matches", lambda _user: True)
        return [user_id for user_id, user in self.users.items() if matches(user)]

    def users_page(self, condition: SqlCondition, after_user_id: str | None, limit: int) -> UserPage:
        """Return a page of the users matching a condition."""
        return self._page(self._matching(condition), after_user_id, limit)

    def count_users(self, condition: SqlCondition) -> int:
        """Return how many users match a condition."""
        return len(self._matching(condition))

    def users_by_ids(self, user_ids: Sequence[str]) -> list[User]:
        """Return the users of these ids that exist, in id order."""
        return [self.users[user_id] for user_id in sorted(set(user_ids)) if user_id in self.users]

    # --- Scheduled sends (the cron's side: core/audience/schedules.py) ------------------------------------------

    def _schedule_rows(self) -> dict[str, Schedule]:
        # Made on first use, so the users' part of the fake stays as it is.
        if not hasattr(self, "schedules"):
            self.schedules: dict[str, Schedule] = {}
            self.schedule_lock = threading.Lock()
        return self.schedules

    def _update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        rows = self._schedule_rows()
        rows[schedule_id] = rows[schedule_id].model_copy(update={**changes, "updated_at": _now()})
        return rows[schedule_id]

    def create_scheduled_send(self, send: NewScheduledSend) -> Schedule:
        """Record a send and its schedule."""
        if send.fire_at.tzinfo is None:
            raise ValueError("fire_at must be an instant, with an offset")
        rows = self._schedule_rows()
        if any(row.notification_id == send.notification_id for row in rows.values()):
            raise ConflictError("a send of this notification already exists")
        now = _now()
        schedule = Schedule(
            schedule_id=str(uuid.uuid4()),
            send_id=str(uuid.uuid4()),
            notification_id=send.notification_id,
            status="scheduled",
            fire_at=send.fire_at,
            local_time=send.local_at is not None,
            local_at=send.local_at,
            asked_at=send.fire_at if send.local_at is None else None,
            attempts=0,
            created_at=now,
            updated_at=now,
            to=dict(send.target),
            channels=list(send.channels),
            content=dict(send.content),
            caller=send.caller,
        )
        rows[schedule.schedule_id] = schedule
        return schedule

    def user_zones(self) -> list[str]:
        """Return every time zone that has users, sorted."""
        return sorted({user.timezone for user in self.users.values()})

    def claim_due(self, now: datetime, limit: int, claim_timeout: timedelta) -> list[ClaimedSend]:
        """Claim up to ``limit`` due rows, earliest first, under one lock."""
        rows = self._schedule_rows()
        with self._schedule_lock():
            due = [
                row
                for row in rows.values()
                if (row.status == "scheduled" and row.fire_at <= now)
                or (row.status == "claimed" and row.claimed_at is not None and row.claimed_at < now - claim_timeout)
            ]
            due.sort(key=lambda row: (row.fire_at, row.schedule_id))
            claimed = [
                self._update_schedule(row.schedule_id, status="claimed", claimed_at=now, attempts=row.attempts + 1)
                for row in due[:limit]
            ]
            zones = tuple(self.user_zones())
        return [
            ClaimedSend(
                schedule_id=row.schedule_id,
                send_id=row.send_id,
                notification_id=row.notification_id,
                target=row.to,
                content=row.content,
                channels=row.channels,
                fire_at=row.fire_at,
                local_at=row.local_at,
                zones_done_until=row.zones_done_until,
                attempts=row.attempts,
                claimed_at=now,
                user_zones=zones if row.local_time else (),
            )
            for row in claimed
        ]

    def _still_claimed(self, claim: ClaimedSend) -> bool:
        row = self._schedule_rows().get(claim.schedule_id)
        return row is not None and row.status == "claimed" and row.claimed_at == claim.claimed_at

    def mark_sent(self, handoffs: Sequence[Handoff]) -> int:
        """Mark enqueued claims sent, or re-arm them for their next zone."""
        marked = 0
        with self._schedule_lock():
            for handoff in handoffs:
                if not self._still_claimed(handoff.claim):
                    continue
                row = self.schedules[handoff.claim.schedule_id]
                done = handoff.until if row.local_time else row.zones_done_until
                if handoff.next_fire_at is None:
                    self._update_schedule(
                        row.schedule_id, status="sent", sent_at=handoff.until, zones_done_until=done, last_error=None
                    )
                else:
                    self._update_schedule(
                        row.schedule_id,
                        status="scheduled",
                        fire_at=handoff.next_fire_at,
                        zones_done_until=done,
                        attempts=0,
                        last_error=None,
                    )
                marked += 1
        return marked

    def mark_failed_attempt(self, claim: ClaimedSend, error: str, retry_at: datetime) -> bool:
        """Put a claim back to scheduled at ``retry_at`` with its error."""
        with self._schedule_lock():
            if not self._still_claimed(claim):
                return False
            self._update_schedule(claim.schedule_id, status="scheduled", fire_at=retry_at, last_error=error[:1000])
            return True

    def mark_failed(self, claim: ClaimedSend, error: str) -> bool:
        """Mark a claim failed for good."""
        with self._schedule_lock():
            if not self._still_claimed(claim):
                return False
            self._update_schedule(claim.schedule_id, status="failed", last_error=error[:1000])
            return True

    def _schedule_lock(self) -> threading.Lock:
        self._schedule_rows()
        return self.schedule_lock

    def cancel_schedule(self, schedule_id: str) -> Schedule:
        """Cancel a scheduled row; 409 once sent, being sent or failed."""
        with self._schedule_lock():
            row = self.get_schedule(schedule_id)
            if row.status == "scheduled" and not row.local_time and self._expansion_began(row.send_id):
                raise ConflictError("the schedule cannot be cancelled: it is being sent")
            if row.status == "scheduled":
                return self._update_schedule(schedule_id, status="cancelled")
            if row.status != "cancelled":
                raise ConflictError(f"the schedule cannot be cancelled: it is {row.status}")
            return row

    def _expansion_began(self, send_id: str) -> bool:
        """Tell whether a worker started the send (this fake keeps no sends: never)."""
        return False

    def find_schedule(self, notification_id: str) -> Schedule | None:
        """Return the schedule of a notification's send, if any."""
        rows = [row for row in self._schedule_rows().values() if row.notification_id == notification_id]
        return rows[0] if rows else None

    def get_schedule(self, schedule_id: str) -> Schedule:
        """Return a schedule."""
        row = self._schedule_rows().get(schedule_id)
        if row is None:
            raise NotFoundError("the schedule does not exist")
        return row

    def list_schedules(
        self, status: ScheduleStatus | None, after: tuple[datetime, str] | None, limit: int, caller: str | None = None
    ) -> list[Schedule]:
        """Return schedules newest first (created_at desc, id asc) after the keyset; ``caller``'s only, when given."""
        rows = [
            row
            for row in self._schedule_rows().values()
            if (status is None or row.status == status) and (caller is None or row.caller in (caller, None))
        ]
        if after is not None:
            rows = [
                row
                for row in rows
                if row.created_at < after[0] or (row.created_at == after[0] and row.schedule_id > after[1])
            ]
        rows.sort(key=lambda row: row.schedule_id)
        rows.sort(key=lambda row: row.created_at, reverse=True)
        return rows[:limit]


class RecordingEnqueuer:
    """A ``SendEnqueuer`` that records every send handed to it (thread-safe); ``failing`` maps a notification id to
    the error its enqueue raises, ``before_enqueue`` runs first (a test's barrier or a pause)."""

    def __init__(self) -> None:
        self.sends: list[DueSend] = []
        self.failing: dict[str, Exception] = {}
        self.before_enqueue: Callable[[DueSend], None] | None = None
        self._lock = threading.Lock()

    def enqueue(self, send: DueSend) -> None:
        """Record the send, or raise its configured error."""
        if self.before_enqueue is not None:
            self.before_enqueue(send)
        error = self.failing.get(send.notification_id)
        if error is not None:
            raise error
        with self._lock:
            self.sends.append(send)

    def enqueue_all(self, sends: Sequence[DueSend]) -> dict[str, Exception]:
        """Record each send, or keep its configured error."""
        errors: dict[str, Exception] = {}
        for send in sends:
            try:
                self.enqueue(send)
            except Exception as exc:
                errors[send.schedule_id] = exc
        return errors

    def count(self, notification_id: str) -> int:
        """Return how many times a notification was enqueued."""
        return sum(1 for send in self.sends if send.notification_id == notification_id)


# --- Sends and their expansion (core/audience/sends.py, core/audience/expansion.py) --------------------------------


class FakeSendStore(FakeAudienceRepository):
    """The fake repository with the ``sends`` table: ``create_send``, the expansion cursor and status."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: dict[str, StoredSend] = {}
        self.handed: dict[str, set[str]] = {}
        self.advances: list[tuple[str, str | None, int]] = []
        self.leases: dict[str, tuple[str, float]] = {}  # send id → (lease, monotonic time it lapses)
        self.zones_handed: dict[str, set[str]] = {}
        self.zones_done: dict[str, set[str]] = {}

    def create_send(self, send: NewSend) -> tuple[StoredSend, bool]:
        """Record a send unless one of its notification id exists."""
        for stored in self.sends.values():
            if stored.notification_id == send.notification_id:
                return stored, False
        stored = StoredSend(
            send_id=str(uuid.uuid4()),
            notification_id=send.notification_id,
            target=dict(send.target),
            content=dict(send.content),
            channels=list(send.channels),
            status="queued",
            expanded_through=None,
            recipients=0,
            caller=send.caller,
        )
        self.sends[stored.send_id] = stored
        return stored, True

    def _expansion_began(self, send_id: str) -> bool:
        """Tell whether a worker started the send (it is no longer ``scheduled``)."""
        send = self.sends.get(send_id)
        return send is not None and send.status not in ("scheduled", "cancelled")

    def get_send(self, send_id: str) -> StoredSend:
        """Return a send."""
        if send_id not in self.sends:
            raise NotFoundError("the send does not exist")
        return self.sends[send_id]

    def start_expansion(self, send_id: str, lease: str, lease_seconds: float, zones: Sequence[str] = ()) -> StoredSend:
        """Take the send's lease (``SendBusyError`` when another holds it; ``expire_leases`` lets it go) and mark it
        expanding; ``zones`` are marked handed over."""
        send = self.get_send(send_id)
        self.zones_handed.setdefault(send_id, set()).update(zones)
        if send.status in ("cancelled", "failed"):
            return send
        held, until = self.leases.get(send_id, (lease, 0.0))
        if held != lease and until > time.monotonic():
            raise SendBusyError("another run is expanding the send")
        self.leases[send_id] = (lease, time.monotonic() + lease_seconds)
        self.sends[send_id] = replace(send, status="expanding")
        return self.sends[send_id]

    def expire_leases(self) -> None:
        """Let every lease lapse, as time does for a run that died."""
        self.leases.clear()

    def finish_zone(self, send_id: str, zone: str, lease: str) -> bool:
        """Mark a zone's pages done while ``lease`` is the send's lease."""
        if self.leases.get(send_id, ("", 0.0))[0] != lease:
            return False
        self.zones_done.setdefault(send_id, set()).add(zone)
        return True

    def zones_pending(self, send_id: str) -> set[str]:
        """Return the zones handed over whose pages are not done."""
        return self.zones_handed.get(send_id, set()) - self.zones_done.get(send_id, set())

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
        """Move a send's cursor (``zone``'s when given) and record the users the page handed over (``handed``, the
        ``send_recipients`` table) while ``lease`` is its lease."""
        if self.leases.get(send_id, ("", 0.0))[0] != lease:
            return False
        self.leases[send_id] = (lease, time.monotonic() + lease_seconds)
        self.advances.append((send_id, expanded_through, recipients))
        self.handed.setdefault(send_id, set()).update(handed)
        send = self.get_send(send_id)
        if zone is None:
            self.sends[send_id] = replace(send, expanded_through=expanded_through, recipients=recipients)
        else:
            cursors = {**send.zone_cursors}
            if expanded_through is not None:
                cursors[zone] = expanded_through
            self.sends[send_id] = replace(send, zone_cursors=cursors, recipients=recipients)
        return True

    def handed_over(self, send_id: str, user_ids: Sequence[str]) -> set[str]:
        """Return those of ``user_ids`` a page of the send handed over."""
        return self.handed.get(send_id, set()) & set(user_ids)

    def delete_segment(self, name: str) -> None:
        """Delete a segment; ``ConflictError`` while a send to it has not ended (zones handed over to expand too)."""
        if name in self.segments and any(
            send.target.get("segment") == name
            and (
                send.status in ("scheduled", "queued", "expanding")
                or (send.status not in ("cancelled", "failed") and self.zones_pending(send.send_id))
            )
            for send in self.sends.values()
        ):
            raise ConflictError(
                "a send to this segment has not ended (scheduled, queued, expanding, or with zones handed over)"
            )
        super().delete_segment(name)

    def finish_send(self, send_id: str, status: str, error: str | None = None) -> None:
        """Mark a send expanded or failed and free its lease."""
        self.leases.pop(send_id, None)
        self.sends[send_id] = replace(self.get_send(send_id), status=status, last_error=error)  # type: ignore[arg-type]


class FakeExpansionQueue:
    """An ``ExpansionQueuePort`` that keeps the jobs submitted; ``fail`` makes it refuse them."""

    def __init__(self, fail: bool = False) -> None:
        self.jobs: list[AnyJob] = []
        self.delays: list[int] = []
        self.fail = fail

    def submit(self, job: AnyJob, delay_seconds: int = 0) -> str:
        """Keep the job and its delay, or refuse it."""
        if self.fail:
            raise UpstreamError("sending to the expansion queue failed")
        self.jobs.append(job)
        self.delays.append(delay_seconds)
        return f"m-{len(self.jobs)}"

    def submit_all(self, jobs: Sequence[AnyJob]) -> list[str | None]:
        """Keep the jobs, or refuse every one."""
        if self.fail:
            return ["sending to the expansion queue failed"] * len(jobs)
        self.jobs.extend(jobs)
        self.delays.extend([0] * len(jobs))
        return [None] * len(jobs)


class FakeSendLedger:
    """The ledger as the expansion worker writes it: records by notification id and rows by (id, key)."""

    def __init__(self) -> None:
        self.records: dict[str, NotificationRecord] = {}
        self.rows: dict[tuple[str, str], tuple[DeliveryStatus, DeliveryRow | None, str | None]] = {}

    def create_notification(self, record: NotificationRecord) -> bool:
        """Write a record unless one exists."""
        if record.notification_id in self.records:
            return False
        self.records[record.notification_id] = record
        return True

    def count_deliveries(self, notification_id: str, delivery_count: int, error: str | None = None) -> None:
        """Write an existing record's count (and error)."""
        if notification_id in self.records:
            changes: dict[str, Any] = {"delivery_count": delivery_count}
            if error:
                changes["error"] = error
            self.records[notification_id] = self.records[notification_id]._replace(**changes)

    def get_record(self, notification_id: str) -> NotificationRecord:
        """Return a record."""
        if notification_id not in self.records:
            raise NotFoundError("no record")
        return self.records[notification_id]

    def keep_record(self, notification_id: str, until: float) -> None:
        """Keep a record past ``until``: remembered, as the fake keeps records for ever."""
        self.kept = {**getattr(self, "kept", {}), notification_id: until}

    def update(
        self,
        notification_id: str,
        delivery_key: str,
        status: DeliveryStatus,
        *,
        row: DeliveryRow | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
    ) -> bool:
        """Write a row's status."""
        self.rows[(notification_id, delivery_key)] = (status, row, last_error)
        return True
