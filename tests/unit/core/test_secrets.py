"""Unit tests of core/secrets.py: what the secret store raises when SSM cannot be reached."""

from __future__ import annotations

from typing import NoReturn

import pytest
from botocore.exceptions import EndpointConnectionError

from core.errors import UpstreamError
from core.secrets import SecretStore

PREFIX = "/notify/test"
ENDPOINT = "https://ssm.us-east-1.amazonaws.com/"


class UnreachableSsm:
    """An SSM client whose endpoint cannot be reached."""

    def get_parameter(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)

    def put_parameter(self, **kwargs: object) -> NoReturn:
        """Fail as botocore does when the connection is refused."""
        raise EndpointConnectionError(endpoint_url=ENDPOINT)


def test_secret_store_get_unreachable_ssm_raises_upstream_error_without_url() -> None:
    store = SecretStore(UnreachableSsm(), PREFIX)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading credentials failed \(EndpointConnectionError\)$"):
        store.get(f"{PREFIX}/integrations/orders/shipped/hook")


def test_secret_store_add_unreachable_ssm_raises_upstream_error_not_next_name() -> None:
    store = SecretStore(UnreachableSsm(), PREFIX)
    names = store.integration_refs("orders", "shipped", "hook")

    with pytest.raises(UpstreamError, match=r"^storing credentials failed \(EndpointConnectionError\)$"):
        store.add(names, {"token": "t"})
