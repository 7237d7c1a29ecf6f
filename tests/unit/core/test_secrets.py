"""Unit tests of core/secrets.py: what the secret store raises when SSM cannot be reached, and the names it gives;
SecureString parameters read and kept for a while."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from core.errors import AWS_ERRORS, UpstreamError, error_code
from core.secrets import SecretStore, SecureParameters
from tests.fakes.unreachable import UnreachableClient
from tests.support.aws import AwsResources, client

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


class _LostAnswers:
    """Makes SSM apply the next ``PutParameter`` but lose its answer (a read timeout), as a slow network does: botocore
    then retries, for real, and finds the parameter its first try wrote."""

    def __init__(self, ssm: Any) -> None:
        self._params: dict[str, Any] = {}
        self.lost = 0
        ssm.meta.events.register("before-parameter-build.ssm.PutParameter", self._keep)
        ssm.meta.events.register("before-send.ssm.PutParameter", self._lose)

    def _keep(self, params: dict[str, Any], **_: Any) -> None:
        self._params = dict(params)

    def _lose(self, request: Any, **_: Any) -> None:
        if self.lost:
            return
        self.lost += 1
        with contextlib.suppress(ClientError):  # applied already, by moto's own hook before this one
            client("ssm").put_parameter(**self._params)  # the write SSM applies
        raise ReadTimeoutError(endpoint_url=request.url)


def test_secret_store_add_whose_answer_was_lost_keeps_the_parameter_its_retry_found(aws: AwsResources) -> None:
    ssm = client("ssm")
    lost = _LostAnswers(ssm)
    store = SecretStore(ssm, PREFIX)
    names = store.integration_refs("orders", "shipped", "hook")

    name = store.add(names, {"token": "t-1"})

    # The retry's ParameterAlreadyExists was taken for another's parameter: the second name was written, and the
    # first left holding the credentials, named by no topic and deleted by nothing.
    stored = aws.ssm.get_parameters_by_path(Path=f"{PREFIX}/integrations", Recursive=True)["Parameters"]
    assert (lost.lost, name, [parameter["Name"] for parameter in stored]) == (1, names[0], [names[0]])


def test_secret_store_add_first_name_holding_other_credentials_writes_the_second(aws: AwsResources) -> None:
    store = SecretStore(client("ssm"), PREFIX)
    names = store.integration_refs("orders", "shipped", "hook")
    aws.ssm.put_parameter(Name=names[0], Value='{"token": "another"}', Type="SecureString")

    name = store.add(names, {"token": "t-1"})

    assert name == names[1]
    assert store.get(names[0]) == {"token": "another"}
    assert store.get(names[1]) == {"token": "t-1"}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_secure_parameters_read_decrypted_and_keep_the_value_max_age(aws: AwsResources) -> None:
    aws.ssm.put_parameter(Name="/notify/test/stripe/key", Value="sk_first", Type="SecureString")
    clock = _Clock()
    parameters = SecureParameters(client("ssm"), clock)

    assert parameters.get("/notify/test/stripe/key", max_age=300) == "sk_first"
    aws.ssm.put_parameter(Name="/notify/test/stripe/key", Value="sk_rolled", Type="SecureString", Overwrite=True)
    clock.now += 299
    kept = parameters.get("/notify/test/stripe/key", max_age=300)
    clock.now += 1
    read_again = parameters.get("/notify/test/stripe/key", max_age=300)

    assert (kept, read_again) == ("sk_first", "sk_rolled")


def test_secure_parameters_failure_raises_botocore_error_and_keeps_nothing(aws: AwsResources) -> None:
    parameters = SecureParameters(client("ssm"), _Clock())

    with pytest.raises(ClientError) as raised:
        parameters.get("/notify/test/stripe/missing", max_age=300)
    aws.ssm.put_parameter(Name="/notify/test/stripe/missing", Value="sk_now", Type="SecureString")

    assert error_code(raised.value) == "ParameterNotFound"
    assert parameters.get("/notify/test/stripe/missing", max_age=300) == "sk_now"


def test_secure_parameters_unreachable_ssm_raises_botocore_error() -> None:
    with pytest.raises(AWS_ERRORS) as raised:
        SecureParameters(UnreachableClient("ssm")).get("/notify/test/stripe/key", max_age=300)

    assert error_code(raised.value) == "EndpointConnectionError"
