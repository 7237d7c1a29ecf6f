"""SNS platform endpoints of devices: one per push token of an app, created on the app's platform application.

``CreatePlatformEndpoint`` is idempotent: the same token with the same attributes returns the endpoint that exists.
With different attributes (another user's ``CustomUserData``, a disabled endpoint) SNS refuses with
``InvalidParameter`` and names the existing endpoint in its message; AWS's documented way is then to read that
endpoint's attributes and set the token, the user data and ``Enabled`` again ("Creating an Amazon SNS platform
endpoint", pseudo code for the mobile token management). The existing endpoint's ARN is read from that message only,
as AWS's own sample does: SNS gives it nowhere else. One exception: a token another user's endpoint holds gets a new
endpoint, the old one deleted, so that nothing queued for that user reaches this one.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

from botocore.exceptions import ClientError

from core.errors import AWS_ERRORS, InvalidRequestError, aws_error, error_code

# "Invalid parameter: Token Reason: Endpoint arn:aws:sns:…:endpoint/GCM/app/… already exists with the same Token,
# but different attributes."
_EXISTING = re.compile(r"Endpoint (arn:aws[a-z-]*:sns:[^\s]+) already exists with the same [Tt]oken")
_NOT_FOUND = frozenset({"NotFound", "NotFoundException", "ResourceNotFound"})
# The platform application is gone or switched off: the app's registration is wrong, not the service.
_APPLICATION_UNUSABLE = frozenset({"PlatformApplicationDisabled"})


@runtime_checkable
class PushEndpointsPort(Protocol):
    """The SNS endpoints of devices, as the audience's logic uses them."""

    def register(self, platform_application_arn: str, token: str, user_id: str) -> str:
        """Return the enabled endpoint of ``token`` on the platform application, created or brought up to date."""
        ...

    def delete(self, endpoint_arn: str) -> None:
        """Delete an endpoint; one already gone is deleted."""
        ...

    def check_application(self, platform_application_arn: str) -> None:
        """Raise naming ``platform_application_arn`` unless SNS has that platform application, enabled."""
        ...


class PushEndpoints:
    """SNS platform endpoints over an injected boto3 SNS client.

    Parameters
    ----------
    client:
        A boto3 SNS client (``core.clients.get_client("sns", region)``).
    """

    def __init__(self, client: Any) -> None:
        self._sns = client

    def register(self, platform_application_arn: str, token: str, user_id: str) -> str:
        """Return the endpoint of ``token`` on ``platform_application_arn``, enabled, its user data ``user_id``.

        Raises
        ------
        InvalidRequestError
            SNS refuses the token (``token``), or the platform application is unknown or disabled (``app``).
        UpstreamError
            SNS failed or could not be reached.
        """
        arn = self._create(platform_application_arn, token, user_id)
        try:
            attributes = self._sns.get_endpoint_attributes(EndpointArn=arn)["Attributes"]
        except ClientError as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise aws_error(exc, "reading the push endpoint") from exc
            # Deleted between the two calls (or by someone else): a new one is made.
            return self._create(platform_application_arn, token, user_id)
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the push endpoint") from exc
        owner = str(attributes.get("CustomUserData", ""))
        if owner and owner != user_id:
            # The token moved to another user (a log-out and a log-in on a shared phone). Pushes queued for the owner
            # before name this endpoint: it is deleted and the new owner gets a new one, so that those find theirs gone
            # (their deliveries end failed) rather than reach the new owner, and one phone is not pushed twice by one
            # send that reaches both users.
            self.delete(arn)
            return self._create(platform_application_arn, token, user_id)
        wanted = {"Token": token, "Enabled": "true", "CustomUserData": user_id}
        current = {name: str(attributes.get(name, "")) for name in wanted}
        current["Enabled"] = current["Enabled"].lower()
        if current != wanted:
            try:
                self._sns.set_endpoint_attributes(EndpointArn=arn, Attributes=wanted)
            except AWS_ERRORS as exc:
                raise aws_error(exc, "updating the push endpoint") from exc
        return arn

    def _create(self, platform_application_arn: str, token: str, user_id: str) -> str:
        try:
            response = self._sns.create_platform_endpoint(
                PlatformApplicationArn=platform_application_arn, Token=token, CustomUserData=user_id
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidParameter":
                existing = _EXISTING.search(str(exc.response.get("Error", {}).get("Message", "")))
                if existing is not None:
                    return existing[1]
                raise InvalidRequestError("token", "is not a push token the app's platform accepts") from None
            if code in _NOT_FOUND or code in _APPLICATION_UNUSABLE:
                raise InvalidRequestError(
                    "app", f"its SNS platform application cannot take endpoints ({code}); register the app again"
                ) from None
            raise aws_error(exc, "creating the push endpoint") from exc
        except AWS_ERRORS as exc:
            raise aws_error(exc, "creating the push endpoint") from exc
        return str(response["EndpointArn"])

    def check_application(self, platform_application_arn: str) -> None:
        """Check that SNS has the platform application, enabled: an app saved with one it has not would refuse every
        device's registration later.

        Raises
        ------
        InvalidRequestError
            No such platform application (in this account and region), or it is disabled
            (``platform_application_arn``).
        UpstreamError
            SNS failed or could not be reached.
        """
        field = "platform_application_arn"
        try:
            attributes = self._sns.get_platform_application_attributes(
                PlatformApplicationArn=platform_application_arn
            ).get("Attributes", {})
        except ClientError as exc:
            code = error_code(exc)
            if code in _NOT_FOUND or code in ("InvalidParameter", "AuthorizationError"):
                # AuthorizationError: an ARN of another account or region, which this function's role may not read.
                raise InvalidRequestError(
                    field, f"SNS has no platform application of this ARN in this account and region ({code})"
                ) from None
            raise aws_error(exc, "reading the platform application") from exc
        except AWS_ERRORS as exc:
            raise aws_error(exc, "reading the platform application") from exc
        if str(attributes.get("Enabled", "true")).lower() == "false":
            raise InvalidRequestError(field, "its SNS platform application is disabled: renew its credentials in SNS")

    def delete(self, endpoint_arn: str) -> None:
        """Delete the endpoint ``endpoint_arn``; one already gone is fine (SNS's delete is idempotent too).

        Raises
        ------
        UpstreamError
            SNS failed or could not be reached.
        """
        try:
            self._sns.delete_endpoint(EndpointArn=endpoint_arn)
        except ClientError as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise aws_error(exc, "deleting the push endpoint") from exc
        except AWS_ERRORS as exc:
            raise aws_error(exc, "deleting the push endpoint") from exc
