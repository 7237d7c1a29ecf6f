"""An in-memory SNS client for platform endpoints, answering as SNS does (``core/audience/endpoints.py``'s client).

One endpoint per (platform application, token): creating it again with the same attributes returns it; with others
(another ``CustomUserData``, a disabled endpoint) it is refused with ``InvalidParameter`` naming the existing
endpoint, in SNS's words. ``failing`` makes every call fail with that error code.
"""

from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import ClientError


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class FakeSnsEndpoints:
    """Platform applications' endpoints in a dict, by ARN."""

    def __init__(self, applications: tuple[str, ...] = ()) -> None:
        self.applications = set(applications)
        self.endpoints: dict[str, dict[str, str]] = {}
        self.failing: str | None = None
        self.calls: list[str] = []

    def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if self.failing is not None:
            raise _error(self.failing, "the fake was told to fail", operation)

    def create_platform_endpoint(
        self, PlatformApplicationArn: str, Token: str, CustomUserData: str = ""
    ) -> dict[str, Any]:
        """Return the endpoint of the token, as SNS's idempotent create does."""
        self._call("CreatePlatformEndpoint")
        if PlatformApplicationArn not in self.applications:
            raise _error("NotFound", "PlatformApplication does not exist", "CreatePlatformEndpoint")
        if Token.startswith("bad"):
            raise _error("InvalidParameter", "Invalid parameter: Token Reason: malformed", "CreatePlatformEndpoint")
        for arn, endpoint in self.endpoints.items():
            if endpoint["Application"] == PlatformApplicationArn and endpoint["Token"] == Token:
                if endpoint["CustomUserData"] == CustomUserData and endpoint["Enabled"] == "true":
                    return {"EndpointArn": arn}
                raise _error(
                    "InvalidParameter",
                    f"Invalid parameter: Token Reason: Endpoint {arn} already exists with the same Token, but "
                    "different attributes.",
                    "CreatePlatformEndpoint",
                )
        arn = PlatformApplicationArn.replace(":app/", ":endpoint/") + f"/{uuid.uuid4()}"
        self.endpoints[arn] = {
            "Application": PlatformApplicationArn,
            "Token": Token,
            "CustomUserData": CustomUserData,
            "Enabled": "true",
        }
        return {"EndpointArn": arn}

    def get_endpoint_attributes(self, EndpointArn: str) -> dict[str, Any]:
        """Return an endpoint's attributes."""
        self._call("GetEndpointAttributes")
        if EndpointArn not in self.endpoints:
            raise _error("NotFound", "Endpoint does not exist", "GetEndpointAttributes")
        attributes = {key: value for key, value in self.endpoints[EndpointArn].items() if key != "Application"}
        return {"Attributes": attributes}

    def set_endpoint_attributes(self, EndpointArn: str, Attributes: dict[str, str]) -> dict[str, Any]:
        """Change an endpoint's attributes."""
        self._call("SetEndpointAttributes")
        if EndpointArn not in self.endpoints:
            raise _error("NotFound", "Endpoint does not exist", "SetEndpointAttributes")
        self.endpoints[EndpointArn].update(Attributes)
        return {}

    def get_platform_application_attributes(self, PlatformApplicationArn: str) -> dict[str, Any]:
        """Return an application's attributes; one the fake was not given is not found, as in SNS."""
        self._call("GetPlatformApplicationAttributes")
        if PlatformApplicationArn not in self.applications:
            raise _error("NotFound", "PlatformApplication does not exist", "GetPlatformApplicationAttributes")
        return {"Attributes": {"Enabled": "true"}}

    def delete_endpoint(self, EndpointArn: str) -> dict[str, Any]:
        """Delete an endpoint; one already gone is fine, as in SNS."""
        self._call("DeleteEndpoint")
        self.endpoints.pop(EndpointArn, None)
        return {}
