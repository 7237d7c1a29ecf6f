"""Unit tests of core/secrets.py: what the secret store raises when SSM cannot be reached, and the names it gives."""

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


def test_secret_store_integration_refs_stay_under_the_integrations_path() -> None:
    store = SecretStore(object(), PREFIX)

    names = store.integration_refs("orders", "shipped", "hook")

    # The functions' SSM permissions name the parameters by this prefix.
    assert all(name.startswith(f"{PREFIX}/integrations/orders/shipped/hook/") for name in names)


def test_secret_store_integration_refs_of_a_recreated_topic_never_repeat_a_name() -> None:
    store = SecretStore(object(), PREFIX)
    # Earlier versions stored credentials under the integration's path itself: a topic deleted and created again
    # wrote its new credentials where deliveries queued under the deleted one still read.
    legacy = f"{PREFIX}/integrations/orders/shipped/hook"

    deleted_topics = store.integration_refs("orders", "shipped", "hook")
    recreated_topics = store.integration_refs("orders", "shipped", "hook")

    assert len({*deleted_topics, *recreated_topics, legacy}) == 5
