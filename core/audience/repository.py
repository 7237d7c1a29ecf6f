"""The audience in PostgreSQL (``infra/migrations/``): users, apps, devices, subscriptions, segments.

Values only ever travel as query parameters. The one piece of SQL text that comes from outside this module is a
segment's compiled condition (``core/audience/segments.py``), itself parameterised. Every call is one transaction
on the container's one connection (``core/audience/connection.py``); psycopg2's errors become domain errors there.
"""

# S608: the f-strings below splice only this module's constant column lists and the compiled condition's SQL text;
# every value is a parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from core.audience.connection import Database
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
from core.audience.schedules import ClaimedSend, Handoff, NewScheduledSend, Schedule, ScheduleStatus
from core.audience.sends import EXPANSION_JOB_MAX_AGE_SECONDS, SWEEP_ZONE, NewSend, SendBusyError, StoredSend
from core.errors import ConflictError, InvalidRequestError, NotFoundError

MAX_PAGE = 1000
# The recorded recipients one purge statement deletes at most (the cron repeats it while it has time).
PURGE_ROWS = 10_000
_USER_COLUMNS = "u.id, u.timezone, u.email, u.telegram_chat_id, u.data, u.created_at, u.updated_at"
_DEVICE_COLUMNS = (
    "d.id::text, d.user_id, d.app, a.platform, d.token, d.endpoint_arn, d.enabled, d.last_seen, d.created_at"
)
_APP_COLUMNS = "name, platform, platform_application_arn, created_at, updated_at"
# The lock a registration of an app's token holds while SNS answers and its device is written (app, token).
_DEVICE_LOCK = "hashtextextended('notify.device:' || %s || ':' || %s, 0)"
_SEGMENT_COLUMNS = "name, definition, created_at, updated_at"


def _plain(field: str, value: str) -> str:
    # libpq cannot send a NUL inside text (psycopg2 raises ValueError before the query leaves).
    if "\x00" in value:
        raise InvalidRequestError(field, "must not contain NUL characters")
    return value


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError("limit", f"must be between 1 and {MAX_PAGE}")
    return limit


def _user(
    row: Sequence[Any], devices: list[Device] | None = None, subscriptions: list[Subscription] | None = None
) -> User:
    return User(
        user_id=row[0],
        timezone=row[1],
        email=row[2],
        telegram_chat_id=row[3],
        data=row[4],
        created_at=row[5],
        updated_at=row[6],
        devices=devices or [],
        subscriptions=subscriptions or [],
    )


def _device(row: Sequence[Any]) -> Device:
    return Device(
        device_id=row[0],
        user_id=row[1],
        app=row[2],
        platform=row[3],
        token=row[4],
        endpoint_arn=row[5],
        enabled=row[6],
        last_seen=row[7],
        created_at=row[8],
    )


def _app(row: Sequence[Any]) -> App:
    return App(name=row[0], platform=row[1], platform_application_arn=row[2], created_at=row[3], updated_at=row[4])


def _subscription(row: Sequence[Any]) -> Subscription:
    return Subscription(user_id=row[0], channel=row[1], topic=row[2], created_at=row[3])


def _segment(row: Sequence[Any]) -> Segment:
    return Segment(name=row[0], definition=row[1], created_at=row[2], updated_at=row[3])


def _page(users: list[User], limit: int) -> UserPage:
    return UserPage(users=users, next_after=users[-1].user_id if len(users) == limit else None)


def _user_exists(cursor: Any, user_id: str, *, lock: bool = False) -> None:
    """Raise ``NotFoundError`` unless the user exists. ``lock``: lock its row (not its key: devices and subscriptions
    still refer to it meanwhile) to the end of the transaction, so that what counts the user's devices or
    subscriptions and writes one runs one after another for that user, never from a stale view."""
    cursor.execute(f"SELECT 1 FROM users WHERE id = %s{' FOR NO KEY UPDATE' if lock else ''}", (user_id,))
    if cursor.fetchone() is None:
        raise NotFoundError("the user does not exist")


def _hand_over_zones(cursor: Any, send_key: str, zones: Sequence[str]) -> None:
    """Add ``zones`` to the zones a send's hand-offs named (each once)."""
    cursor.execute(
        "UPDATE sends SET zones_handed = array(SELECT DISTINCT unnest(zones_handed || %s::text[]) ORDER BY 1)"
        " WHERE id = %s",
        (list(zones), send_key),
    )


class AudienceRepository:
    """Reads and writes the audience in PostgreSQL.

    Parameters
    ----------
    database:
        The container's database connection (``core.clients.get_database``).
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    # Users

    def put_user(self, user_id: str, request: UserRequest) -> tuple[User, bool]:
        """Create or replace the user ``user_id``; return it and whether it was created.

        A replace keeps the creation time, the devices and the subscriptions; fields left out are cleared.
        """
        params = (
            _plain("user_id", user_id),
            request.timezone,
            request.email and _plain("email", request.email),
            request.telegram_chat_id,
            json.dumps(request.data),
        )

        def work(cursor: Any) -> tuple[User, bool]:
            cursor.execute(
                "INSERT INTO users AS u (id, timezone, email, telegram_chat_id, data)"
                " VALUES (%s, %s, %s, %s, %s::jsonb)"
                " ON CONFLICT (id) DO UPDATE SET timezone = EXCLUDED.timezone, email = EXCLUDED.email,"
                " telegram_chat_id = EXCLUDED.telegram_chat_id, data = EXCLUDED.data, updated_at = now()"
                f" RETURNING {_USER_COLUMNS}, (u.xmax = 0) AS created",
                params,
            )
            row = cursor.fetchone()
            return _user(row), bool(row[7])

        return self._db.run(work, "writing user")

    def get_user(self, user_id: str) -> User:
        """Return the user ``user_id`` with its devices and subscriptions; raise ``NotFoundError`` when none."""
        _plain("user_id", user_id)

        def work(cursor: Any) -> User:
            cursor.execute(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = %s", (user_id,))
            row = cursor.fetchone()
            if row is None:
                raise NotFoundError("the user does not exist")
            return _user(row, self._devices(cursor, user_id), self._subscriptions(cursor, user_id))

        return self._db.run(work, "reading user")

    def delete_user(self, user_id: str) -> list[Device]:
        """Delete the user ``user_id`` with its devices and subscriptions; return the devices it had.

        Raises ``NotFoundError`` when there is no such user.
        """
        _plain("user_id", user_id)

        def work(cursor: Any) -> list[Device]:
            # Locked first: a registration holding the user's row commits its device before the devices are read,
            # so the cascade deletes no device whose endpoint the caller is not told of.
            cursor.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))
            if cursor.fetchone() is None:
                raise NotFoundError("the user does not exist")
            devices = self._devices(cursor, user_id)
            cursor.execute("DELETE FROM users WHERE id = %s", (user_id,))
            return devices

        return self._db.run(work, "deleting user")

    def users_by_ids(self, user_ids: Sequence[str]) -> list[User]:
        """Return the users of these ids that exist, in id order, without devices or subscriptions."""
        ids = [_plain("user_ids", user_id) for user_id in user_ids]

        def work(cursor: Any) -> list[User]:
            cursor.execute(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = ANY(%s) ORDER BY u.id", (ids,))
            return [_user(row) for row in cursor.fetchall()]

        return self._db.run(work, "reading users")

    def users_page(self, condition: SqlCondition, after_user_id: str | None, limit: int) -> UserPage:
        """Return up to ``limit`` users matching ``condition`` with ids after ``after_user_id``, in id order.

        ``condition`` is a segment compiled by ``core/audience/segments.py``: SQL over ``users u`` and its parameters.
        Keyset pagination: a page costs the same however deep it is, and users added meanwhile are not skipped.
        """
        _limit(limit)
        keyset = "" if after_user_id is None else " AND u.id > %s"
        params = (*condition.params, *(() if after_user_id is None else (_plain("after", after_user_id),)), limit)
        query = f"SELECT {_USER_COLUMNS} FROM users u WHERE ({condition.sql}){keyset} ORDER BY u.id LIMIT %s"

        def work(cursor: Any) -> UserPage:
            cursor.execute(query, params)
            return _page([_user(row) for row in cursor.fetchall()], limit)

        return self._db.run(work, "reading the audience")

    def count_users(self, condition: SqlCondition) -> int:
        """Return how many users match ``condition`` (a compiled segment)."""
        query = f"SELECT count(*) FROM users u WHERE ({condition.sql})"

        def work(cursor: Any) -> int:
            cursor.execute(query, condition.params)
            return int(cursor.fetchone()[0])

        return self._db.run(work, "counting the audience")

    # Apps

    def put_app(self, name: str, request: AppRequest) -> tuple[App, bool]:
        """Create or replace the app ``name``; return it and whether it was created.

        Raises ``ConflictError`` when another app has its platform application (one SNS endpoint per token and
        platform application: two apps' devices of one phone would share it, the second user's registration taking
        the first user's pushes), or when the app's devices would be left on the platform application it leaves
        (their endpoints are there: every push to them would fail once it is gone).
        """
        params = (_plain("app", name), request.platform, request.platform_application_arn)

        def work(cursor: Any) -> tuple[App, bool]:
            # One app writes at a time: the check below and the write are one decision (apps are written rarely).
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('notify.apps'))")
            cursor.execute(
                "SELECT name FROM apps WHERE platform_application_arn = %s AND name <> %s ORDER BY name LIMIT 1",
                (request.platform_application_arn, name),
            )
            other = cursor.fetchone()
            if other is not None:
                raise ConflictError(
                    f"platform_application_arn: the app {other[0]!r} has this platform application; an app is the only"
                    " one on its platform application (a phone's token has one endpoint there)"
                )
            # The app's row locked first: a registration holding it (FOR SHARE, its endpoint made on the platform
            # application) commits its device before the count, which then sees it.
            cursor.execute("SELECT 1 FROM apps WHERE name = %s FOR UPDATE", (name,))
            cursor.execute(
                "SELECT a.platform, a.platform_application_arn, count(d.id) FROM apps a"
                " LEFT JOIN devices d ON d.app = a.name WHERE a.name = %s GROUP BY a.name",
                (name,),
            )
            earlier = cursor.fetchone()
            moved = earlier is not None and (earlier[0], earlier[1]) != (
                request.platform,
                request.platform_application_arn,
            )
            if moved and earlier[2]:
                raise ConflictError(
                    f"platform_application_arn: the app has {earlier[2]} devices on its platform application, whose"
                    " endpoints would stay there; delete the app (DELETE /v1/apps/{app}) and register its devices"
                    " again, or put the new platform application under another app"
                )
            cursor.execute(
                "INSERT INTO apps AS a (name, platform, platform_application_arn) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET platform = EXCLUDED.platform,"
                " platform_application_arn = EXCLUDED.platform_application_arn, updated_at = now()"
                f" RETURNING {_APP_COLUMNS}, (a.xmax = 0) AS created",
                params,
            )
            row = cursor.fetchone()
            return _app(row), bool(row[5])

        return self._db.run(work, "writing app")

    def get_app(self, name: str) -> App:
        """Return the app ``name``; raise ``NotFoundError`` when there is none."""
        _plain("app", name)

        def work(cursor: Any) -> App:
            cursor.execute(f"SELECT {_APP_COLUMNS} FROM apps WHERE name = %s", (name,))
            row = cursor.fetchone()
            if row is None:
                raise NotFoundError("the app does not exist")
            return _app(row)

        return self._db.run(work, "reading app")

    def delete_app(self, name: str) -> list[Device]:
        """Delete the app ``name`` and its devices; return the devices (their endpoints are to be deleted too).

        Raises ``NotFoundError`` when there is no such app.
        """
        _plain("app", name)

        def work(cursor: Any) -> list[Device]:
            # Locked first: a registration whose device refers to the app commits before the devices are read.
            cursor.execute("SELECT 1 FROM apps WHERE name = %s FOR UPDATE", (name,))
            if cursor.fetchone() is None:
                raise NotFoundError("the app does not exist")
            cursor.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices d JOIN apps a ON a.name = d.app"
                " WHERE d.app = %s ORDER BY d.created_at, d.id",
                (name,),
            )
            devices = [_device(row) for row in cursor.fetchall()]
            cursor.execute("DELETE FROM apps WHERE name = %s", (name,))
            return devices

        return self._db.run(work, "deleting app")

    def app_devices(self, name: str, limit: int) -> list[Device]:
        """Return up to ``limit`` devices of the app ``name``, oldest first; raise ``NotFoundError`` when there is no
        such app."""
        _plain("app", name)

        def work(cursor: Any) -> list[Device]:
            cursor.execute("SELECT 1 FROM apps WHERE name = %s", (name,))
            if cursor.fetchone() is None:
                raise NotFoundError("the app does not exist")
            cursor.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices d JOIN apps a ON a.name = d.app"
                " WHERE d.app = %s ORDER BY d.created_at, d.id LIMIT %s",
                (name, limit),
            )
            return [_device(row) for row in cursor.fetchall()]

        return self._db.run(work, "reading app devices")

    def delete_devices(self, devices: Sequence[Device]) -> int:
        """Delete these devices, each only while it still has the endpoint it had when read (one registered again
        since has a new endpoint, which stays with it); return how many were deleted."""
        if not devices:
            return 0
        ids = [device.device_id for device in devices]
        arns = [device.endpoint_arn for device in devices]

        def work(cursor: Any) -> int:
            cursor.execute(
                "DELETE FROM devices d USING unnest(%s::uuid[], %s::text[]) AS gone(id, endpoint_arn)"
                " WHERE d.id = gone.id AND d.endpoint_arn = gone.endpoint_arn",
                (ids, arns),
            )
            return int(cursor.rowcount)

        return self._db.run(work, "deleting devices")

    def list_apps(self) -> list[App]:
        """Return every app, by name."""

        def work(cursor: Any) -> list[App]:
            cursor.execute(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY name")
            return [_app(row) for row in cursor.fetchall()]

        return self._db.run(work, "listing apps")

    # Devices

    def register_device(
        self,
        user_id: str,
        app: str,
        token: str,
        endpoint: Callable[[str], str],
        forget: Callable[[Sequence[Device]], object] | None = None,
    ) -> Registration:
        """Register the push ``token`` of ``app`` for ``user_id``, with the SNS endpoint ``endpoint`` returns.

        ``endpoint(platform_application_arn)`` (SNS) runs inside the transaction, once the user's and the app's rows
        are locked and other registrations of the token wait: a deletion of the user or the app waits for the device
        and deletes its endpoint with it, and two users registering one token go one after the other, the second from
        the endpoint the first left (an endpoint made before the transaction could be left named by no device). The
        same token of the same app again is the same device (its id kept): moved to this user if it belonged to
        another, enabled again, ``last_seen`` now. Raises ``NotFoundError`` when the user does not exist and
        ``InvalidRequestError`` (field ``app``) when the app does not, before SNS is asked; what ``endpoint`` raises,
        with nothing written.

        ``forget(devices)`` deletes the endpoints of the devices removed beyond the bound, inside the transaction:
        after it, a registration of such a token meanwhile (it waited for this user) took the endpoint SNS still had,
        which was then deleted under it. A removed device whose token another registration holds keeps its endpoint:
        that registration takes it.
        """
        params = (_plain("user_id", user_id), _plain("app", app), _plain("token", token))

        def work(cursor: Any) -> Registration:
            cursor.execute(f"SELECT pg_advisory_xact_lock({_DEVICE_LOCK})", (app, token))
            # Shared: registrations of the app run together; its deletion or a new platform waits for them.
            cursor.execute("SELECT platform_application_arn FROM apps WHERE name = %s FOR SHARE", (app,))
            found = cursor.fetchone()
            if found is None:
                raise InvalidRequestError("app", "no app of that name is registered")
            # Locked, the user's registrations remove its least recently seen devices one after another (from a
            # stale view, a device seen again meanwhile was removed, and two at once passed the bound).
            _user_exists(cursor, user_id, lock=True)
            endpoint_arn = _plain("endpoint_arn", endpoint(found[0]))
            # The owner before, its row locked: the consumer disabling the endpoint it had waits for the new one.
            cursor.execute("SELECT user_id FROM devices WHERE app = %s AND token = %s FOR UPDATE", (app, token))
            earlier = cursor.fetchone()
            # clock_timestamp(), not now() (the transaction's start, before SNS answered): a push that met the endpoint
            # disabled before SNS enabled it again would find the device seen before it, and disable it again.
            cursor.execute(
                "WITH written AS ("
                " INSERT INTO devices AS d (user_id, app, token, endpoint_arn, last_seen)"
                " VALUES (%s, %s, %s, %s, clock_timestamp())"
                " ON CONFLICT (app, token) DO UPDATE SET user_id = EXCLUDED.user_id,"
                " endpoint_arn = EXCLUDED.endpoint_arn, enabled = true, last_seen = EXCLUDED.last_seen,"
                " updated_at = now()"
                " RETURNING d.*, (d.xmax = 0) AS created)"
                f" SELECT {_DEVICE_COLUMNS}, d.created FROM written d JOIN apps a ON a.name = d.app",
                (*params, endpoint_arn),
            )
            row = cursor.fetchone()
            device = _device(row)
            # Beyond the bound, the user's least recently seen devices go, disabled ones first; never this one.
            # The user is checked again on the row as the DELETE finds it: a device another user's registration took
            # meanwhile (it waited on that row's lock) is theirs now, never removed with this user's.
            cursor.execute(
                "WITH gone AS (DELETE FROM devices WHERE user_id = %s AND id IN ("
                " SELECT id FROM devices WHERE user_id = %s AND id <> %s::uuid"
                " ORDER BY enabled DESC, last_seen DESC, created_at DESC, id OFFSET %s) RETURNING *)"
                f" SELECT {_DEVICE_COLUMNS} FROM gone d JOIN apps a ON a.name = d.app",
                (user_id, user_id, device.device_id, MAX_DEVICES_PER_USER - 1),
            )
            removed = tuple(_device(gone) for gone in cursor.fetchall())
            if forget is not None and removed:
                # Without waiting: a registration holding the token waits for this user's lock (a deadlock).
                unheld = []
                for gone in removed:
                    cursor.execute(f"SELECT pg_try_advisory_xact_lock({_DEVICE_LOCK})", (gone.app, gone.token))
                    if cursor.fetchone()[0]:
                        unheld.append(gone)
                forget(unheld)
            previous = earlier[0] if earlier is not None and earlier[0] != user_id else None
            return Registration(device=device, created=bool(row[9]), previous_user_id=previous, removed=removed)

        return self._db.run(work, "registering device")

    def _devices(self, cursor: Any, user_id: str) -> list[Device]:
        cursor.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices d JOIN apps a ON a.name = d.app"
            " WHERE d.user_id = %s ORDER BY d.created_at, d.id",
            (user_id,),
        )
        return [_device(row) for row in cursor.fetchall()]

    def list_devices(self, user_id: str) -> list[Device]:
        """Return the devices of ``user_id``, oldest first; raise ``NotFoundError`` when the user does not exist."""
        _plain("user_id", user_id)

        def work(cursor: Any) -> list[Device]:
            _user_exists(cursor, user_id)
            return self._devices(cursor, user_id)

        return self._db.run(work, "listing devices")

    def get_device(self, user_id: str, device_id: str) -> Device:
        """Return the device ``device_id`` of ``user_id``; raise ``NotFoundError`` when the user has no such device."""
        _plain("user_id", user_id)

        def work(cursor: Any) -> Device:
            cursor.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices d JOIN apps a ON a.name = d.app"
                " WHERE d.user_id = %s AND d.id::text = %s",
                (user_id, _plain("device_id", device_id)),
            )
            row = cursor.fetchone()
            if row is None:
                raise NotFoundError("the device does not exist")
            return _device(row)

        return self._db.run(work, "reading device")

    def delete_device(
        self, user_id: str, device_id: str, forget: Callable[[Sequence[Device]], object] | None = None
    ) -> Device:
        """Delete the device ``device_id`` of ``user_id`` and return it; ``forget([device])`` deletes its endpoint
        inside the transaction, under the lock registrations of its token hold: a registration of the token meanwhile
        took the endpoint SNS still had, which was then deleted under it (a device on a deleted endpoint).

        Raises ``NotFoundError`` when the user has no such device.
        """
        _plain("user_id", user_id)
        key = _plain("device_id", device_id)

        def work(cursor: Any) -> Device:
            # d.id compared as text: a device id from a URL that is not a UUID is simply not found.
            cursor.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices d JOIN apps a ON a.name = d.app"
                " WHERE d.user_id = %s AND d.id::text = %s",
                (user_id, key),
            )
            found = cursor.fetchone()
            if found is None:
                raise NotFoundError("the device does not exist")
            seen = _device(found)
            cursor.execute(f"SELECT pg_advisory_xact_lock({_DEVICE_LOCK})", (seen.app, seen.token))
            cursor.execute(
                "WITH gone AS (DELETE FROM devices WHERE user_id = %s AND id::text = %s RETURNING *)"
                f" SELECT {_DEVICE_COLUMNS} FROM gone d JOIN apps a ON a.name = d.app",
                (user_id, key),
            )
            row = cursor.fetchone()
            if row is None:
                # Gone meanwhile: removed beyond the user's bound by a registration, which left its endpoint to the
                # holder of this lock (this deletion). Deleted here when no device names it any more.
                cursor.execute("SELECT 1 FROM devices WHERE endpoint_arn = %s LIMIT 1", (seen.endpoint_arn,))
                if cursor.fetchone() is None and forget is not None:
                    forget([seen])
                raise NotFoundError("the device does not exist")
            device = _device(row)
            if forget is not None:
                forget([device])
            return device

        return self._db.run(work, "deleting device")

    def disable_device(self, endpoint_arn: str, observed_at: datetime | None = None) -> int:
        """Disable the devices of the SNS endpoint ``endpoint_arn`` (SNS answered ``EndpointDisabled``), those last
        registered before ``observed_at`` (when SNS answered so) when it is given: one registered again since has its
        endpoint enabled again.

        Return how many were enabled until now (0 when none, or when already disabled: it is safe to repeat).
        """
        _plain("endpoint_arn", endpoint_arn)

        def work(cursor: Any) -> int:
            cursor.execute(
                "UPDATE devices SET enabled = false, updated_at = now() WHERE endpoint_arn = %s AND enabled"
                " AND (%s::timestamptz IS NULL OR last_seen < %s::timestamptz)",
                (endpoint_arn, observed_at, observed_at),
            )
            return int(cursor.rowcount)

        return self._db.run(work, "disabling device")

    def devices_of(self, user_ids: Sequence[str], *, enabled_only: bool = True) -> dict[str, list[Device]]:
        """Return the devices of ``user_ids`` (the enabled ones unless told otherwise), by user id, oldest first.

        Users without devices are left out. One query for a whole page of an audience.
        """
        ids = [_plain("user_ids", user_id) for user_id in user_ids]
        enabled = " AND d.enabled" if enabled_only else ""

        def work(cursor: Any) -> dict[str, list[Device]]:
            cursor.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices d JOIN apps a ON a.name = d.app"
                f" WHERE d.user_id = ANY(%s){enabled} ORDER BY d.user_id, d.created_at, d.id",
                (ids,),
            )
            found: dict[str, list[Device]] = {}
            for row in cursor.fetchall():
                device = _device(row)
                found.setdefault(device.user_id, []).append(device)
            return found

        return self._db.run(work, "reading devices")

    # Subscriptions

    def put_subscription(self, user_id: str, channel: str, topic: str) -> bool:
        """Subscribe ``user_id`` to ``channel``/``topic``; return whether it is new (subscribing twice is one).

        Raises ``NotFoundError`` when the user does not exist.
        """
        params = (_plain("user_id", user_id), _plain("channel", channel), _plain("topic", topic))

        def work(cursor: Any) -> bool:
            # Locked, subscriptions written at once are counted one after another.
            _user_exists(cursor, user_id, lock=True)
            cursor.execute(
                "SELECT count(*), coalesce(bool_or(channel = %s AND topic = %s), false) FROM subscriptions"
                " WHERE user_id = %s",
                (channel, topic, user_id),
            )
            count, subscribed = cursor.fetchone()
            if subscribed:
                return False
            if count >= MAX_SUBSCRIPTIONS_PER_USER:
                raise ConflictError(SUBSCRIPTIONS_FULL)
            cursor.execute("INSERT INTO subscriptions (user_id, channel, topic) VALUES (%s, %s, %s)", params)
            return True

        return self._db.run(work, "writing subscription")

    def delete_subscription(self, user_id: str, channel: str, topic: str) -> None:
        """Unsubscribe ``user_id`` from ``channel``/``topic``; raise ``NotFoundError`` when it was not subscribed."""
        params = (_plain("user_id", user_id), _plain("channel", channel), _plain("topic", topic))

        def work(cursor: Any) -> None:
            cursor.execute("DELETE FROM subscriptions WHERE user_id = %s AND channel = %s AND topic = %s", params)
            if cursor.rowcount == 0:
                raise NotFoundError("the subscription does not exist")

        self._db.run(work, "deleting subscription")

    def _subscriptions(self, cursor: Any, user_id: str) -> list[Subscription]:
        cursor.execute(
            "SELECT user_id, channel, topic, created_at FROM subscriptions WHERE user_id = %s ORDER BY channel, topic",
            (user_id,),
        )
        return [_subscription(row) for row in cursor.fetchall()]

    def list_subscriptions(self, user_id: str) -> list[Subscription]:
        """Return the subscriptions of ``user_id``; raise ``NotFoundError`` when the user does not exist."""
        _plain("user_id", user_id)

        def work(cursor: Any) -> list[Subscription]:
            _user_exists(cursor, user_id)
            return self._subscriptions(cursor, user_id)

        return self._db.run(work, "listing subscriptions")

    def subscribers_page(
        self,
        channel: str,
        topic: str,
        after_user_id: str | None,
        limit: int,
        zones: Sequence[str] | None = None,
    ) -> UserPage:
        """Return up to ``limit`` users subscribed to ``channel``/``topic`` with ids after ``after_user_id`` (in
        ``zones`` only, when given)."""
        _limit(limit)
        keyset = "" if after_user_id is None else " AND s.user_id > %s"
        in_zones = "" if zones is None else " AND u.timezone = ANY(%s)"
        params = (
            _plain("channel", channel),
            _plain("topic", topic),
            *(() if after_user_id is None else (_plain("after", after_user_id),)),
            *(() if zones is None else (list(zones),)),
            limit,
        )

        def work(cursor: Any) -> UserPage:
            cursor.execute(
                f"SELECT {_USER_COLUMNS} FROM subscriptions s JOIN users u ON u.id = s.user_id"
                f" WHERE s.channel = %s AND s.topic = %s{keyset}{in_zones} ORDER BY s.user_id LIMIT %s",
                params,
            )
            return _page([_user(row) for row in cursor.fetchall()], limit)

        return self._db.run(work, "reading subscribers")

    # Segments

    def put_segment(self, name: str, definition: dict[str, Any]) -> tuple[Segment, bool]:
        """Create or replace the segment ``name``; return it and whether it was created."""
        params = (_plain("name", name), json.dumps(definition))

        def work(cursor: Any) -> tuple[Segment, bool]:
            cursor.execute(
                "INSERT INTO segments AS s (name, definition) VALUES (%s, %s::jsonb)"
                " ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()"
                f" RETURNING {_SEGMENT_COLUMNS}, (s.xmax = 0) AS created",
                params,
            )
            row = cursor.fetchone()
            return _segment(row), bool(row[4])

        return self._db.run(work, "writing segment")

    def get_segment(self, name: str) -> Segment:
        """Return the segment ``name``; raise ``NotFoundError`` when there is none."""
        _plain("name", name)

        def work(cursor: Any) -> Segment:
            cursor.execute(f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE name = %s", (name,))
            row = cursor.fetchone()
            if row is None:
                raise NotFoundError("the segment does not exist")
            return _segment(row)

        return self._db.run(work, "reading segment")

    def delete_segment(self, name: str) -> None:
        """Delete the segment ``name``; raise ``NotFoundError`` when there is none, ``ConflictError`` while a send to
        it has not ended (scheduled, queued or expanding, with zones of a local-time schedule to come, or with zones
        handed over and not yet expanded): each of its jobs reads the segment again, and a send whose segment was gone
        failed halfway, the zones to come unreached.

        A send's job counts while it may still come (``EXPANSION_JOB_MAX_AGE_SECONDS`` since the send or its schedule
        last changed: failed for now, a job waits in the expansion DLQ until an operator moves it back), as for the
        purge of a send's recipients: a send whose job was lost (its accept's hand-off failed and was not retried, its
        job expired in the DLQ) no longer holds the segment. The last hand-off marks the schedule ``sent`` and the send
        said ``expanded`` since its first zone. A schedule still to fire holds it for as long as it waits."""
        _plain("name", name)

        def work(cursor: Any) -> None:
            # A send accepted at the very moment of the delete may still find the segment gone: it fails, saying so.
            cursor.execute("SELECT 1 FROM segments WHERE name = %s FOR UPDATE", (name,))
            if cursor.fetchone() is None:
                raise NotFoundError("the segment does not exist")
            # A local-time send is expanded zone by zone: between two, the send says expanded, its schedule scheduled.
            cursor.execute(
                "SELECT 1 FROM sends s LEFT JOIN scheduled_sends ss ON ss.send_id = s.id"
                " WHERE s.target->>'segment' = %(name)s AND (ss.status IN ('scheduled', 'claimed')"
                " OR (GREATEST(ss.updated_at, s.updated_at) > now() - make_interval(secs => %(latest)s)"
                "  AND (s.status IN ('scheduled', 'queued', 'expanding')"
                "   OR (s.status NOT IN ('cancelled', 'failed') AND NOT s.zones_handed <@ s.zones_done)))) LIMIT 1",
                {"name": name, "latest": EXPANSION_JOB_MAX_AGE_SECONDS},
            )
            if cursor.fetchone() is not None:
                raise ConflictError(
                    "a send to this segment has not ended (scheduled, queued, expanding, or with zones handed over"
                    " to expand): delete it once the send is done, or cancel its schedule first"
                )
            cursor.execute("DELETE FROM segments WHERE name = %s", (name,))

        self._db.run(work, "deleting segment")

    def list_segments(self) -> list[Segment]:
        """Return every segment, by name."""

        def work(cursor: Any) -> list[Segment]:
            cursor.execute(f"SELECT {_SEGMENT_COLUMNS} FROM segments ORDER BY name")
            return [_segment(row) for row in cursor.fetchall()]

        return self._db.run(work, "listing segments")

    # --- Scheduled sends (the cron's side: core/audience/schedules.py) ------------------------------------------
    # Every instant comes from the caller (the cron's run instant), so a run's claims, marks and zone hand-offs
    # agree on one "now"; updated_at alone is the server's clock.

    def create_scheduled_send(self, send: NewScheduledSend) -> Schedule:
        """Record ``send`` (status ``scheduled``) and its schedule in one transaction; return the schedule.

        Raises ``ConflictError`` when a send of the same notification id exists.
        """
        if send.fire_at.tzinfo is None:
            raise ValueError("fire_at must be an instant, with an offset")
        if send.local_at is not None and send.local_at.tzinfo is not None:
            raise ValueError("local_at must be a wall-clock time, without an offset")
        params = (
            _plain("notification_id", send.notification_id),
            json.dumps(send.target),
            json.dumps(send.content),
            list(send.channels),
            send.caller,
        )
        # An instant's time as asked, kept when a retry moves fire_at (a repeat under the key is compared with it).
        asked_at = send.fire_at if send.local_at is None else None

        def work(cursor: Any) -> Schedule:
            cursor.execute(
                "INSERT INTO sends (notification_id, target, content, channels, caller, status)"
                " VALUES (%s, %s::jsonb, %s::jsonb, %s::text[], %s, 'scheduled') RETURNING id",
                params,
            )
            send_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO scheduled_sends (send_id, fire_at, local_time, local_at, asked_at)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (send_id, send.fire_at, send.local_at is not None, send.local_at, asked_at),
            )
            return self._schedule(cursor, str(cursor.fetchone()[0]))

        return self._db.run(work, "scheduling send")

    def user_zones(self) -> list[str]:
        """Return every time zone that has users, sorted."""

        def work(cursor: Any) -> list[str]:
            cursor.execute("SELECT DISTINCT timezone FROM users ORDER BY timezone")
            return [row[0] for row in cursor.fetchall()]

        return self._db.run(work, "reading time zones")

    def claim_due(self, now: datetime, limit: int, claim_timeout: timedelta) -> list[ClaimedSend]:
        """Claim up to ``limit`` due rows at ``now``, earliest first, in one statement; return them with their send.

        Due: ``scheduled`` with ``fire_at`` not after ``now``, or ``claimed`` before ``now - claim_timeout`` (the run
        that claimed it died). ``FOR UPDATE SKIP LOCKED``: a row another run is claiming is left to it. A claim
        counts an attempt. The zones that have users are read in the same transaction when a local-time row is
        claimed.
        """
        _limit(limit)
        if now.tzinfo is None:
            raise ValueError("now must be an instant, with an offset")
        params = {"now": now, "stale": now - claim_timeout, "limit": limit}

        def work(cursor: Any) -> list[ClaimedSend]:
            # The CTE locks and limits once; an IN (subquery) may be evaluated again and claim more than the limit.
            cursor.execute(
                "WITH due AS (SELECT id FROM scheduled_sends"
                " WHERE (status = 'scheduled' AND fire_at <= %(now)s)"
                " OR (status = 'claimed' AND claimed_at < %(stale)s)"
                " ORDER BY fire_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                " UPDATE scheduled_sends ss SET status = 'claimed', claimed_at = %(now)s,"
                " attempts = ss.attempts + 1, updated_at = now()"
                " FROM due, sends d WHERE ss.id = due.id AND d.id = ss.send_id"
                " RETURNING ss.id::text, ss.send_id::text, d.notification_id, d.target, d.content, d.channels,"
                " ss.fire_at, ss.local_at, ss.zones_done_until, ss.attempts, ss.claimed_at",
                params,
            )
            rows = sorted(cursor.fetchall(), key=lambda row: (row[6], row[0]))
            zones: tuple[str, ...] = ()
            if any(row[7] is not None for row in rows):
                cursor.execute("SELECT DISTINCT timezone FROM users ORDER BY timezone")
                zones = tuple(row[0] for row in cursor.fetchall())
            return [_claimed(row, zones if row[7] is not None else ()) for row in rows]

        return self._db.run(work, "claiming scheduled sends")

    def mark_sent(self, handoffs: Sequence[Handoff]) -> int:
        """Mark enqueued claims in one statement: ``sent``, or back to ``scheduled`` at the next instant a zone's
        clock shows the send's time (``Handoff.next_fire_at``) with the zones done until the hand-off (attempts start
        again for that zone). Return how many were still claimed by these claims (a claim taken over by another run
        is left to it)."""
        if not handoffs:
            return 0
        params = (
            [handoff.claim.schedule_id for handoff in handoffs],
            [handoff.claim.claimed_at for handoff in handoffs],
            [handoff.until for handoff in handoffs],
            [handoff.next_fire_at for handoff in handoffs],
        )

        def work(cursor: Any) -> int:
            cursor.execute(
                "UPDATE scheduled_sends ss SET"
                " status = CASE WHEN v.next_fire IS NULL THEN 'sent' ELSE 'scheduled' END,"
                " sent_at = CASE WHEN v.next_fire IS NULL THEN v.until ELSE ss.sent_at END,"
                " fire_at = COALESCE(v.next_fire, ss.fire_at),"
                " zones_done_until = CASE WHEN ss.local_time THEN v.until ELSE ss.zones_done_until END,"
                " attempts = CASE WHEN v.next_fire IS NULL THEN ss.attempts ELSE 0 END,"
                " last_error = NULL, updated_at = now()"
                " FROM unnest(%s::uuid[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[])"
                " AS v(id, claimed_at, until, next_fire)"
                " WHERE ss.id = v.id AND ss.status = 'claimed' AND ss.claimed_at = v.claimed_at",
                params,
            )
            marked = int(cursor.rowcount)
            for handoff in handoffs:
                if handoff.zones:
                    _hand_over_zones(cursor, _send_key(handoff.claim.send_id), handoff.zones)
            return marked

        return self._db.run(work, "marking scheduled sends sent")

    def mark_failed_attempt(self, claim: ClaimedSend, error: str, retry_at: datetime) -> bool:
        """Put a claim back to ``scheduled`` at ``retry_at`` with its error (never deleted); return whether it was
        still this claim's."""
        params = (retry_at, error[:1000], claim.schedule_id, claim.claimed_at)

        def work(cursor: Any) -> bool:
            cursor.execute(
                "UPDATE scheduled_sends SET status = 'scheduled', fire_at = %s, last_error = %s, updated_at = now()"
                " WHERE id = %s::uuid AND status = 'claimed' AND claimed_at = %s",
                params,
            )
            return bool(cursor.rowcount)

        return self._db.run(work, "retrying scheduled send")

    def mark_failed(self, claim: ClaimedSend, error: str) -> bool:
        """Mark a claim and its send ``failed`` with the error, kept for reading; return whether it was still this
        claim's."""
        params = (error[:1000], claim.schedule_id, claim.claimed_at)

        def work(cursor: Any) -> bool:
            cursor.execute(
                "UPDATE scheduled_sends SET status = 'failed', last_error = %s, updated_at = now()"
                " WHERE id = %s::uuid AND status = 'claimed' AND claimed_at = %s RETURNING send_id, last_error",
                params,
            )
            row = cursor.fetchone()
            if row is None:
                return False
            cursor.execute(
                "UPDATE sends SET status = 'failed', last_error = %s, updated_at = now() WHERE id = %s",
                (row[1], row[0]),
            )
            return True

        return self._db.run(work, "failing scheduled send")

    def cancel_schedule(self, schedule_id: str) -> Schedule:
        """Cancel a ``scheduled`` row, and its send unless its expansion began (a local-time send's zones handed over
        are expanded to the end, the zones to come are not handed over); cancelling again returns it as it is.

        Raises ``NotFoundError`` when there is none, ``ConflictError`` when it is ``sent``, ``claimed`` (a run is
        sending it) or ``failed``, and when an instant row's send is being expanded though the row says ``scheduled``
        (a hand-off whose answer SQS lost: the cron tries again, but the job was queued and a worker took it). The
        row's lock orders this against a claim: whichever comes second sees the other; the send's, against a worker.
        """
        key = _schedule_key(schedule_id)

        def work(cursor: Any) -> Schedule:
            cursor.execute("SELECT status, send_id, local_time FROM scheduled_sends WHERE id = %s FOR UPDATE", (key,))
            row = cursor.fetchone()
            if row is None:
                raise NotFoundError("the schedule does not exist")
            if row[0] == "scheduled" and not row[2]:
                cursor.execute("SELECT status FROM sends WHERE id = %s FOR UPDATE", (row[1],))
                if cursor.fetchone()[0] not in ("scheduled", "cancelled"):
                    raise ConflictError(_NOT_CANCELLABLE["claimed"])
            if row[0] == "scheduled":
                cursor.execute(
                    "UPDATE scheduled_sends SET status = 'cancelled', updated_at = now() WHERE id = %s", (key,)
                )
                # A send no expansion began (still ``scheduled``) is cancelled with it, though a claim moved
                # ``zones_done_until`` on: most claims of a local-time send hand over zones without users, and a job
                # enqueued for this one finds it cancelled. A send whose expansion began keeps going: the zones
                # handed over are expanded to the end; only the zones to come stop. The send's row lock orders
                # this against the worker's start (start_expansion leaves a cancelled send).
                cursor.execute(
                    "UPDATE sends SET status = 'cancelled', updated_at = now() WHERE id = %s AND status = 'scheduled'",
                    (row[1],),
                )
            elif row[0] != "cancelled":
                raise ConflictError(_NOT_CANCELLABLE[row[0]])
            return self._schedule(cursor, key)

        return self._db.run(work, "cancelling schedule")

    def find_schedule(self, notification_id: str) -> Schedule | None:
        """Return the schedule of the send of ``notification_id``, or ``None`` when it has none."""

        def work(cursor: Any) -> Schedule | None:
            cursor.execute(f"{_SCHEDULE_SELECT} WHERE d.notification_id = %s", (notification_id,))
            row = cursor.fetchone()
            return _schedule(row) if row is not None else None

        return self._db.run(work, "reading schedule")

    def get_schedule(self, schedule_id: str) -> Schedule:
        """Return the schedule ``schedule_id``; raise ``NotFoundError`` when there is none."""
        key = _schedule_key(schedule_id)
        return self._db.run(lambda cursor: self._schedule(cursor, key), "reading schedule")

    def list_schedules(
        self, status: ScheduleStatus | None, after: tuple[datetime, str] | None, limit: int, caller: str | None = None
    ) -> list[Schedule]:
        """Return up to ``limit`` schedules (of ``status``, of sends ``caller`` asked for, when given), newest first,
        after the keyset ``after`` (``created_at``, id): ``created_at`` descending, then id ascending, as
        ``scheduled_sends_status_idx``."""
        _limit(limit)
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("ss.status = %s")
            params.append(status)
        if caller is not None:
            # A send made before sends recorded their caller is any key's, as its notification's status is.
            where.append("(d.caller = %s OR d.caller IS NULL)")
            params.append(caller)
        if after is not None:
            where.append("(ss.created_at < %s OR (ss.created_at = %s AND ss.id > %s))")
            params.extend([after[0], after[0], _schedule_key(after[1])])
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        query = f"{_SCHEDULE_SELECT}{condition} ORDER BY ss.created_at DESC, ss.id LIMIT %s"

        def work(cursor: Any) -> list[Schedule]:
            cursor.execute(query, (*params, limit))
            return [_schedule(row) for row in cursor.fetchall()]

        return self._db.run(work, "listing schedules")

    def _schedule(self, cursor: Any, key: str) -> Schedule:
        cursor.execute(f"{_SCHEDULE_SELECT} WHERE ss.id = %s", (key,))
        row = cursor.fetchone()
        if row is None:
            raise NotFoundError("the schedule does not exist")
        return _schedule(row)

    # --- Sends and their expansion (POST /v1/sends, core/audience/expansion.py) ----------------------------------
    # The expansion worker's cursor: ``expanded_through`` (the last user id enqueued) and ``recipients`` (the
    # deliveries accounted for, enqueued and skipped) move together after each page, so a worker that dies resumes
    # after the last page it finished.

    def create_send(self, send: NewSend) -> tuple[StoredSend, bool]:
        """Record ``send`` (``queued``) unless a send of its notification id exists; return it and whether it is new."""
        params = (
            _plain("notification_id", send.notification_id),
            json.dumps(send.target),
            json.dumps(send.content),
            list(send.channels),
            send.caller,
        )

        def work(cursor: Any) -> tuple[StoredSend, bool]:
            cursor.execute(
                "INSERT INTO sends (notification_id, target, content, channels, caller, status)"
                " VALUES (%s, %s::jsonb, %s::jsonb, %s::text[], %s, 'queued')"
                " ON CONFLICT ON CONSTRAINT sends_notification_id_key DO NOTHING RETURNING id::text",
                params,
            )
            row = cursor.fetchone()
            if row is not None:
                return self._send(cursor, "id = %s", row[0]), True
            return self._send(cursor, "notification_id = %s", send.notification_id), False

        return self._db.run(work, "recording send")

    def get_send(self, send_id: str) -> StoredSend:
        """Return the send ``send_id``; raise ``NotFoundError`` when there is none."""
        key = _send_key(send_id)
        return self._db.run(lambda cursor: self._send(cursor, "id = %s", key), "reading send")

    def start_expansion(self, send_id: str, lease: str, lease_seconds: float, zones: Sequence[str] = ()) -> StoredSend:
        """Take the send's lease (``lease``, until ``lease_seconds`` from now), mark it ``expanding`` and return it,
        with its cursors as the last run left them. ``zones`` (a hand-off's) are marked handed over, whether or not
        the lease is taken.

        A send ``cancelled`` or ``failed`` is returned as it is (the worker leaves it). Raises ``SendBusyError`` when
        another run holds a live lease on it.
        """
        key = _send_key(send_id)

        def work(cursor: Any) -> StoredSend:
            if zones:
                _hand_over_zones(cursor, key, zones)
            cursor.execute(
                "UPDATE sends SET status = 'expanding', lease = %s,"
                " leased_until = now() + make_interval(secs => %s), updated_at = now()"
                " WHERE id = %s AND status NOT IN ('cancelled', 'failed')"
                " AND (lease IS NULL OR lease = %s OR leased_until < now())",
                (lease, lease_seconds, key, lease),
            )
            taken = cursor.rowcount == 1
            send = self._send(cursor, "id = %s", key)
            if not taken and send.status not in ("cancelled", "failed"):
                raise SendBusyError("another run is expanding the send")
            return send

        return self._db.run(work, "starting expansion")

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
        """Record a page enqueued (the cursor after it: ``zone``'s when given, and the deliveries accounted for so
        far) and hold the lease on; return ``False``, recording nothing, when the lease is no longer this run's.

        ``handed`` are the users the page handed over (a zone hand-off's), recorded in ``send_recipients`` in the same
        transaction as the cursor and the count, so ``handed_over`` never names a user the count leaves out.
        """
        moved, cursor_params = "expanded_through = %s", [expanded_through]
        if zone is not None:
            # ``||`` sets this zone's cursor and keeps the other zones' as they are.
            moved = "zone_cursors = zone_cursors || jsonb_build_object(%s::text, %s::text)"
            cursor_params = [zone, expanded_through]
        key = _send_key(send_id)
        users = [_plain("user_ids", user_id) for user_id in handed]
        params = (*cursor_params, recipients, bool(users), lease_seconds, key, lease)

        def work(cursor: Any) -> bool:
            cursor.execute(
                f"UPDATE sends SET {moved}, recipients = %s, recipients_kept = recipients_kept OR %s,"
                " leased_until = now() + make_interval(secs => %s), updated_at = now() WHERE id = %s AND lease = %s",
                params,
            )
            if cursor.rowcount != 1:
                return False
            if users:
                cursor.execute(
                    "INSERT INTO send_recipients (send_id, user_id) SELECT %s, unnest(%s::text[])"
                    " ON CONFLICT DO NOTHING",
                    (key, users),
                )
            return True

        return self._db.run(work, "recording expansion")

    def purge_send_recipients(self, kept_seconds: float, rows: int = PURGE_ROWS) -> int | None:
        """Delete at most ``rows`` of the recorded recipients (``send_recipients``) of one send whose schedule ended
        (sent, cancelled or failed) ``kept_seconds`` ago or more and that no run holds; return how many went, ``None``
        when no send is left to purge. A send whose rows are all gone is no longer ``recipients_kept``.

        Their zones were all handed over, but a hand-off's job may still come back (failed for now, it waits in the
        expansion DLQ until an operator moves it back): the recipients stay while a zone a hand-off named has no
        finished run, or a ``user_ids`` send's sweep (``SWEEP_ZONE`` in ``zones_done``) none, until no job can be left
        (``EXPANSION_JOB_MAX_AGE_SECONDS``). Purged before, a sweep run later skipped as too late, and counted again,
        users it had reached. A send a run holds (its lease, or its row locked) is left for a later purge. Bounded,
        a statement stays short however large the send was: the caller repeats while it has time.
        """

        def work(cursor: Any) -> int | None:
            cursor.execute(
                "SELECT s.id FROM sends s JOIN scheduled_sends ss ON ss.send_id = s.id"
                " WHERE s.recipients_kept AND ss.status IN ('sent', 'cancelled', 'failed')"
                " AND ss.updated_at <= now() - make_interval(secs => %(kept)s)"
                " AND (s.lease IS NULL OR s.leased_until IS NULL OR s.leased_until < now())"
                " AND ((s.zones_handed <@ s.zones_done"
                "   AND (NOT s.target ? 'user_ids' OR %(sweep)s = ANY (s.zones_done)))"
                "  OR ss.updated_at <= now() - make_interval(secs => %(latest)s))"
                " ORDER BY ss.updated_at LIMIT 1 FOR UPDATE OF s SKIP LOCKED",
                {"kept": kept_seconds, "sweep": SWEEP_ZONE, "latest": EXPANSION_JOB_MAX_AGE_SECONDS},
            )
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(
                "DELETE FROM send_recipients WHERE send_id = %s AND user_id IN"
                " (SELECT user_id FROM send_recipients WHERE send_id = %s LIMIT %s)",
                (row[0], row[0], rows),
            )
            deleted = int(cursor.rowcount)
            if deleted < rows:
                cursor.execute("UPDATE sends SET recipients_kept = false WHERE id = %s", (row[0],))
            return deleted

        return self._db.run(work, "purging the recipients of ended sends")

    def finish_zone(self, send_id: str, zone: str, lease: str) -> bool:
        """Mark the pages of a hand-off's ``zone`` done; ``False`` when the lease is no longer this run's."""
        key = _send_key(send_id)

        def work(cursor: Any) -> bool:
            cursor.execute(
                "UPDATE sends SET zones_done = array_append(zones_done, %s::text), updated_at = now()"
                " WHERE id = %s AND lease = %s AND NOT (%s::text = ANY (zones_done))",
                (zone, key, lease, zone),
            )
            return cursor.rowcount == 1

        return self._db.run(work, "finishing a zone of a send")

    def zones_pending(self, send_id: str) -> set[str]:
        """Return the zones hand-offs named whose pages no run finished yet."""
        key = _send_key(send_id)

        def work(cursor: Any) -> set[str]:
            cursor.execute(
                "SELECT array(SELECT unnest(zones_handed) EXCEPT SELECT unnest(zones_done)) FROM sends WHERE id = %s",
                (key,),
            )
            row = cursor.fetchone()
            return set(row[0]) if row is not None else set()

        return self._db.run(work, "reading a send's zones")

    def handed_over(self, send_id: str, user_ids: Sequence[str]) -> set[str]:
        """Return those of ``user_ids`` a page of the send recorded as handed over (``advance_send``'s ``handed``)."""
        key = _send_key(send_id)
        ids = [_plain("user_ids", user_id) for user_id in user_ids]

        def work(cursor: Any) -> set[str]:
            cursor.execute(
                "SELECT user_id FROM send_recipients WHERE send_id = %s AND user_id = ANY(%s)",
                (key, ids),
            )
            return {row[0] for row in cursor.fetchall()}

        return self._db.run(work, "reading the recipients of a send")

    def finish_send(self, send_id: str, status: str, error: str | None = None) -> None:
        """Mark a send ``expanded`` or ``failed`` (with its error) and free its lease."""
        params = (status, error[:1000] if error else None, _send_key(send_id))

        def work(cursor: Any) -> None:
            cursor.execute(
                "UPDATE sends SET status = %s, last_error = %s, lease = NULL, leased_until = NULL, updated_at = now()"
                " WHERE id = %s",
                params,
            )

        self._db.run(work, "recording expansion")

    def _send(self, cursor: Any, where: str, value: str) -> StoredSend:
        cursor.execute(
            "SELECT id::text, notification_id, target, content, channels, status, expanded_through, recipients,"
            f" last_error, caller, zone_cursors FROM sends WHERE {where}",
            (value,),
        )
        row = cursor.fetchone()
        if row is None:
            raise NotFoundError("the send does not exist")
        return StoredSend(
            send_id=row[0],
            notification_id=row[1],
            target=row[2],
            content=row[3],
            channels=list(row[4]),
            status=row[5],
            expanded_through=row[6],
            recipients=row[7],
            last_error=row[8],
            caller=row[9],
            zone_cursors=dict(row[10]),
        )


# --- Scheduled sends: rows to models -----------------------------------------------------------------------------

_SCHEDULE_SELECT = (
    "SELECT ss.id::text, ss.send_id::text, d.notification_id, ss.status, ss.fire_at, ss.local_time, ss.local_at,"
    " ss.zones_done_until, ss.attempts, ss.last_error, ss.claimed_at, ss.sent_at, ss.created_at, ss.updated_at,"
    " d.target, d.channels, d.content, ss.asked_at, d.caller FROM scheduled_sends ss JOIN sends d ON d.id = ss.send_id"
)
_NOT_CANCELLABLE = {
    "sent": "the schedule was sent already",
    "claimed": "the schedule is being sent",
    "failed": "the schedule failed and will not be sent",
}


def _send_key(send_id: str) -> str:
    try:
        return str(uuid.UUID(send_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFoundError("the send does not exist") from None


def _schedule_key(schedule_id: str) -> str:
    # An id that is not a UUID names no schedule (and the primary key is compared as uuid, so its index serves).
    try:
        return str(uuid.UUID(schedule_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFoundError("the schedule does not exist") from None


def _schedule(row: Sequence[Any]) -> Schedule:
    return Schedule(
        schedule_id=row[0],
        send_id=row[1],
        notification_id=row[2],
        status=row[3],
        fire_at=row[4],
        local_time=row[5],
        local_at=row[6],
        zones_done_until=row[7],
        attempts=row[8],
        last_error=row[9],
        claimed_at=row[10],
        sent_at=row[11],
        created_at=row[12],
        updated_at=row[13],
        to=row[14],
        channels=list(row[15]),
        content=row[16],
        asked_at=row[17],
        caller=row[18],
    )


def _claimed(row: Sequence[Any], zones: tuple[str, ...]) -> ClaimedSend:
    return ClaimedSend(
        schedule_id=row[0],
        send_id=row[1],
        notification_id=row[2],
        target=row[3],
        content=row[4],
        channels=list(row[5]),
        fire_at=row[6],
        local_at=row[7],
        zones_done_until=row[8],
        attempts=row[9],
        claimed_at=row[10],
        user_zones=zones,
    )
