"""Unit tests of core/secrets.py: what the secret store raises when SSM cannot be reached."""

from __future__ import annotations

import pytest

from core.errors import UpstreamError
from core.secrets import SecretStore
from tests.fakes.unreachable import UnreachableClient

PREFIX = "/notify/test"


def test_secret_store_get_unreachable_ssm_raises_upstream_error_without_url() -> None:
    store = SecretStore(UnreachableClient("ssm"), PREFIX)

    # The whole text is matched: botocore's message names the endpoint, the error's never does.
    with pytest.raises(UpstreamError, match=r"^reading credentials failed \(EndpointConnectionError\)$"):
        store.get(f"{PREFIX}/integrations/orders/shipped/hook")


def test_secret_store_add_unreachable_ssm_raises_upstream_error_not_next_name() -> None:
    store = SecretStore(UnreachableClient("ssm"), PREFIX)
    names = store.integration_refs("orders", "shipped", "hook")

    with pytest.raises(UpstreamError, match=r"^storing credentials failed \(EndpointConnectionError\)$"):
        store.add(names, {"token": "t"})
