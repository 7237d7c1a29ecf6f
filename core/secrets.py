"""Integration secrets in SSM Parameter Store as SecureString parameters; items and messages hold only their names."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from core.errors import AWS_ERRORS, NotFoundError, aws_error, error_code


class SecretStore:
    """Stores and reads JSON objects of secrets under a parameter-name prefix.

    Parameters
    ----------
    client:
        A boto3 SSM client.
    prefix:
        Parameter path every name of this store begins with, for example ``/notify/prod``.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix.rstrip("/")

    def integration_ref(self, channel: str, topic: str, integration: str) -> str:
        """Return the parameter name that holds an integration's credentials."""
        return f"{self._prefix}/integrations/{channel}/{topic}/{integration}"

    def put(self, name: str, secret: dict[str, str]) -> None:
        """Store a secret object as a SecureString, replacing any earlier value."""
        try:
            self._client.put_parameter(
                Name=name, Value=json.dumps(secret), Type="SecureString", Overwrite=True, Tier="Standard"
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "storing credentials") from exc

    def get(self, name: str) -> dict[str, str]:
        """Return a secret object; raise ``NotFoundError`` when the parameter does not exist."""
        try:
            response = self._client.get_parameter(Name=name, WithDecryption=True)
        except AWS_ERRORS as exc:
            if error_code(exc) == "ParameterNotFound":
                raise NotFoundError(f"credentials {name} do not exist") from exc
            raise aws_error(exc, "reading credentials") from exc
        value: dict[str, str] = json.loads(response["Parameter"]["Value"])
        return value

    def delete(self, names: Iterable[str]) -> None:
        """Delete parameters; names that do not exist are ignored."""
        pending = list(names)
        for start in range(0, len(pending), 10):
            try:
                self._client.delete_parameters(Names=pending[start : start + 10])
            except AWS_ERRORS as exc:
                raise aws_error(exc, "deleting credentials") from exc
