"""What the audience routes do with devices and their SNS endpoints: register, unregister, and the endpoints of
deleted users and apps.

The database is written after SNS when a device is registered (the row holds the endpoint SNS returned) and before
SNS when a device or a user is deleted: once a row is gone nothing sends to its endpoint, so an endpoint that could not
be deleted is only logged (the delete is done and cannot be taken back); the row never points at a missing endpoint.
A device deleted alone, or removed beyond a user's bound, has its endpoint deleted before its transaction ends, while
registrations of its token wait: one of them after it makes a new endpoint, never takes the one being deleted.
An app's devices are the exception (``delete_app``): too many for one call, each endpoint goes before its row, so
that a call cut short leaves rows the next call clears, never an endpoint no row names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from core.audience.endpoints import PushEndpointsPort
from core.audience.models import MAX_DEVICES_PER_USER, Device, DeviceRequest, Registration
from core.audience.ports import AudienceRepositoryPort
from core.errors import NotFoundError, UpstreamError
from core.observability import logger
from core.times import utc_now

# The devices of an app deleted at once, and the seconds a call deleting them keeps for its answer.
APP_DELETION_BATCH = 500
APP_DELETION_MARGIN_SECONDS = 3.0


def register_device(
    user_id: str, request: DeviceRequest, repository: AudienceRepositoryPort, endpoints: PushEndpointsPort
) -> Registration:
    """Register a push token of an app for a user: its SNS endpoint created (or re-enabled and given to this user),
    then the device written; the same token of the same app again is the same device. A user keeps at most
    ``MAX_DEVICES_PER_USER`` devices: the least recently seen beyond it are removed, their endpoints deleted with them.

    Raises
    ------
    InvalidRequestError
        No app of that name (``app``), or SNS refuses the token (``token``).
    NotFoundError
        The user does not exist.
    """
    # SNS is asked inside the registration's transaction, once the user and the app are found: a deletion of either
    # meanwhile waits and deletes the endpoint with the device, and an unknown user or app leaves no endpoint.
    registration = repository.register_device(
        user_id,
        request.app,
        request.token,
        lambda platform_application_arn: endpoints.register(platform_application_arn, request.token, user_id),
        lambda removed: delete_endpoints(removed, endpoints),
    )
    if registration.previous_user_id is not None:
        logger.info("device moved between users", extra={"device_id": registration.device.device_id})
    if registration.removed:
        logger.info(
            "least recently seen devices removed",
            extra={"device_ids": [device.device_id for device in registration.removed], "limit": MAX_DEVICES_PER_USER},
        )
    return registration


def unregister_device(
    user_id: str, device_id: str, repository: AudienceRepositoryPort, endpoints: PushEndpointsPort
) -> Device:
    """Delete a user's device and its SNS endpoint, while registrations of its token wait; return the device.

    Raises
    ------
    NotFoundError
        The user has no such device.
    """
    return repository.delete_device(user_id, device_id, lambda devices: delete_endpoints(devices, endpoints))


class DeletedUsersPort(Protocol):
    """Where a user's deletion is recorded for the consumer: the ledger (``DeliveryLedger.mark_user_deleted``)."""

    def mark_user_deleted(self, user_id: str, at: str) -> None:
        """Record that ``user_id`` was deleted at ``at`` (ISO 8601 UTC)."""
        ...


def delete_user(
    user_id: str,
    repository: AudienceRepositoryPort,
    endpoints: PushEndpointsPort,
    deleted: DeletedUsersPort,
    now: Callable[[], str] = utc_now,
) -> list[Device]:
    """Delete a user with its devices and subscriptions, record the deletion for the consumer (deliveries to the
    user expanded before it are not sent), then delete its devices' SNS endpoints; return the devices.

    The deletion is recorded after the user is gone, so that no send expanded in between escapes it, and for a user
    not found too (``NotFoundError`` still raised): a retry of a deletion whose record failed (a 502) writes it.
    """
    try:
        devices = repository.delete_user(user_id)
    except NotFoundError:
        deleted.mark_user_deleted(user_id, now())
        raise
    try:
        deleted.mark_user_deleted(user_id, now())
    finally:
        # Even when the record failed (a 502 the caller retries): the retry finds no user, and no list of devices.
        delete_endpoints(devices, endpoints)
    return devices


class AppDeletion(NamedTuple):
    """What a call deleting an app did: how many devices (and endpoints) it deleted, and whether the app is gone."""

    devices: int
    done: bool


def delete_app(
    name: str,
    repository: AudienceRepositoryPort,
    endpoints: PushEndpointsPort,
    time_left: Callable[[], float] | None = None,
) -> AppDeletion:
    """Delete an app's devices a batch at a time, then the app (the platform application itself is the team's).

    An app may have millions of devices, and SNS deletes one endpoint a call: the call stops while ``time_left`` still
    says ``APP_DELETION_MARGIN_SECONDS``, with the app there (``done`` false), and a call again goes on. Unlike a
    device's or a user's delete, each batch's endpoints go before their rows: a call cut short (its time, a crash)
    leaves rows whose endpoints are gone, which the next call deletes (SNS's delete is idempotent), never an endpoint
    no row names. Raises ``NotFoundError`` when there is no such app.
    """
    deleted = 0
    while True:
        devices = repository.app_devices(name, APP_DELETION_BATCH)
        done: list[Device] = []
        for device in devices:
            if time_left is not None and time_left() <= APP_DELETION_MARGIN_SECONDS:
                break
            delete_endpoints([device], endpoints)  # one that cannot be deleted is logged, and its row goes anyway
            done.append(device)
        deleted += repository.delete_devices(done)
        if len(done) < len(devices):
            return AppDeletion(deleted, False)
        if len(devices) < APP_DELETION_BATCH:
            # The devices registered since the last batch go with the app, their endpoints after.
            last = repository.delete_app(name)
            delete_endpoints(last, endpoints)
            return AppDeletion(deleted + len(last), True)


def delete_endpoints(devices: Iterable[Device], endpoints: PushEndpointsPort) -> int:
    """Delete the SNS endpoints of devices already deleted; return how many could not be, each logged, never raised."""
    failed = 0
    for device in devices:
        try:
            endpoints.delete(device.endpoint_arn)
        except UpstreamError as exc:
            failed += 1
            logger.warning("push endpoint not deleted", extra={"device_id": device.device_id, "error": str(exc)})
    return failed
