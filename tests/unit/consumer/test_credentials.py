"""Unit tests of reading integration credentials (consumer/credentials.py) through a fake SSM client."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from consumer.credentials import CredentialSource, MissingCredentialsError
from core.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from tests.fakes.delivery import FakeSsmParameters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refused(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "fake"}}, "GetParameter")


def test_credential_source_returns_json_object_read_decrypted() -> None:
    ssm = FakeSsmParameters({"/ref": {"bot_token": "t"}})

    value = CredentialSource(ssm, max_age=120).get("/ref")

    assert value == {"bot_token": "t"}
    assert ssm.calls == [{"Name": "/ref", "WithDecryption": True}]


def test_credential_source_reuses_a_value_until_max_age_then_reads_it_again() -> None:
    ssm = FakeSsmParameters({"/ref": {"bot_token": "old"}})
    clock = Clock()
    source = CredentialSource(ssm, max_age=120, clock=clock)
    source.get("/ref")
    ssm.values["/ref"] = {"bot_token": "rotated"}

    clock.now += 119.9
    reused = source.get("/ref")
    clock.now += 0.1
    read_again = source.get("/ref")

    assert (reused, read_again, len(ssm.calls)) == ({"bot_token": "old"}, {"bot_token": "rotated"}, 2)


def test_credential_source_max_age_zero_reads_every_time() -> None:
    ssm = FakeSsmParameters({"/ref": {"bot_token": "t"}})
    source = CredentialSource(ssm, max_age=0, clock=Clock())

    source.get("/ref")
    source.get("/ref")

    assert len(ssm.calls) == 2


def test_credential_source_keeps_each_reference_apart() -> None:
    ssm = FakeSsmParameters({"/a": {"k": "a"}, "/b": {"k": "b"}})
    source = CredentialSource(ssm, max_age=300, clock=Clock())

    assert (source.get("/a"), source.get("/b"), source.get("/a")) == ({"k": "a"}, {"k": "b"}, {"k": "a"})
    assert [call["Name"] for call in ssm.calls] == ["/a", "/b"]


def test_credential_source_failed_read_is_not_cached() -> None:
    ssm = FakeSsmParameters({"/ref": {"k": "v"}}, error=_refused("ThrottlingException"))
    source = CredentialSource(ssm, max_age=300, clock=Clock())
    with pytest.raises(RetryableDeliveryError):
        source.get("/ref")

    ssm.error = None

    assert source.get("/ref") == {"k": "v"}


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (_refused("ParameterNotFound"), MissingCredentialsError, "credentials are missing"),
        (_refused("ParameterVersionNotFound"), MissingCredentialsError, "credentials are missing"),
        (
            _refused("AccessDeniedException"),
            PermanentDeliveryError,
            "credentials cannot be read (AccessDeniedException)",
        ),
        (_refused("ThrottlingException"), RetryableDeliveryError, "reading credentials failed (ThrottlingException)"),
        (_refused("InternalServerError"), RetryableDeliveryError, "reading credentials failed (InternalServerError)"),
        (
            EndpointConnectionError(endpoint_url="https://ssm"),
            RetryableDeliveryError,
            "reading credentials failed (EndpointConnectionError)",
        ),
    ],
    ids=["missing", "version-missing", "denied", "throttled", "ssm-down", "unreachable"],
)
def test_credential_source_error_is_classified(error: Exception, kind: type[DeliveryError], message: str) -> None:
    with pytest.raises(DeliveryError) as raised:
        CredentialSource(FakeSsmParameters(error=error), max_age=0).get("/ref")

    assert (type(raised.value), str(raised.value)) == (kind, message)


@pytest.mark.parametrize(
    "text", ['["a"]', "not {json", '"secret-text"', "null"], ids=["list", "text", "string", "null"]
)
def test_credential_source_value_not_a_json_object_is_permanent_and_not_quoted(text: str) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        CredentialSource(FakeSsmParameters({"/ref": text}), max_age=0).get("/ref")

    assert str(raised.value) == "credentials are not a JSON object"
    # Nothing chained either: a parse error would quote the secret text.
    assert (raised.value.__cause__, raised.value.__context__) == (None, None)
