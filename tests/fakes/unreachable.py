"""An AWS client whose endpoint cannot be reached, for tests of how a store translates transport errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from botocore.exceptions import EndpointConnectionError


class UnreachableClient:
    """Stands in for any boto3 client: every operation fails as botocore does when the connection is refused.

    The error names the service's endpoint, as botocore's does, so a test can show that a store's error never does.
    Each operation called is recorded in ``calls``.
    """

    def __init__(self, service: str, region: str = "us-east-1") -> None:
        self.endpoint_url = f"https://{service}.{region}.amazonaws.com/"
        self.calls: list[str] = []

    def __getattr__(self, operation: str) -> Callable[..., NoReturn]:
        if operation.startswith("_"):
            raise AttributeError(operation)

        def call(**kwargs: Any) -> NoReturn:
            self.calls.append(operation)
            raise EndpointConnectionError(endpoint_url=self.endpoint_url)

        return call
