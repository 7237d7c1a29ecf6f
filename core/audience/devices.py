"""What the audience routes do with devices and their SNS endpoints: register, unregister, and the endpoints of
deleted users and apps.

The database is written after SNS when a device is registered (the row holds the endpoint SNS returned) and before
SNS when something is deleted: once a row is gone nothing sends to its endpoint, so an endpoint that could not be
deleted is only logged (the delete is done and cannot be taken back); the row never points at a missing endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.audience.endpoints import PushEndpointsPort
from core.audience.models import MAX_DEVICES_PER_USER, Device, DeviceRequest, Registration
from core.audience.ports import AudienceRepositoryPort
from core.errors import InvalidRequestError, NotFoundError, UpstreamError
from core.observability import logger


def register_device(
    user_id: str, request: DeviceRequest, repository: AudienceRepositoryPort, endpoints: PushEndpointsPort
) -> Registration:
    """Register a push token of an app for a user: its SNS endpoint created (or re-enabled and given to this user),
    then the device written; the same token of the same app again is the same device. A user keeps at most
    ``MAX_DEVICES_PER_USER`` devices: the least recently seen beyond it are removed, their endpoints deleted after.

    Raises
    ------
    InvalidRequestError
        No app of that name (``app``), or SNS refuses the token (``token``).
    NotFoundError
        The user does not exist.
    """
    try:
        app = repository.get_app(request.app)
    except NotFoundError:
        raise InvalidRequestError("app", "no app of that name is registered") from None
    # Checked before SNS is asked, so that an unknown user leaves no endpoint behind.
    repository.get_user(user_id)
    endpoint_arn = endpoints.register(app.platform_application_arn, request.token, user_id)
    registration = repository.register_device(user_id, app.name, request.token, endpoint_arn)
    if registration.previous_user_id is not None:
        logger.info("device moved between users", extra={"device_id": registration.device.device_id})
    if registration.removed:
        logger.info(
            "least recently seen devices removed",
            extra={"device_ids": [device.device_id for device in registration.removed], "limit": MAX_DEVICES_PER_USER},
        )
        delete_endpoints(registration.removed, endpoints)
    return registration


def unregister_device(
    user_id: str, device_id: str, repository: AudienceRepositoryPort, endpoints: PushEndpointsPort
) -> Device:
    """Delete a user's device and then its SNS endpoint; return the device.

    Raises
    ------
    NotFoundError
        The user has no such device.
    """
    device = repository.delete_device(user_id, device_id)
    delete_endpoints([device], endpoints)
    return device


def delete_user(user_id: str, repository: AudienceRepositoryPort, endpoints: PushEndpointsPort) -> list[Device]:
    """Delete a user with its devices and subscriptions, then its devices' SNS endpoints; return the devices."""
    devices = repository.delete_user(user_id)
    delete_endpoints(devices, endpoints)
    return devices


def delete_app(name: str, repository: AudienceRepositoryPort, endpoints: PushEndpointsPort) -> list[Device]:
    """Delete an app with its devices, then their SNS endpoints (the platform application itself is the team's)."""
    devices = repository.delete_app(name)
    delete_endpoints(devices, endpoints)
    return devices


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
