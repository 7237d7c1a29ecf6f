"""Unit tests of reading integration credentials (consumer/credentials.py) through a fake SSM provider."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import ClientError

from consumer.credentials import CredentialSource
from core.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from tests.fakes.delivery import FakeParameterProvider


def _wrapped(code: str) -> GetParameterError:
    """Return the error powertools raises for an SSM error: wrapped, with the ClientError as its context."""
    error = GetParameterError("fake")
    error.__context__ = ClientError({"Error": {"Code": code, "Message": "fake"}}, "GetParameter")
    return error


def test_credential_source_returns_json_object_with_cache_age() -> None:
    provider = FakeParameterProvider({"/ref": {"bot_token": "t"}})

    value = CredentialSource(provider, max_age=120).get("/ref")

    assert value == {"bot_token": "t"}
    assert provider.calls == [("/ref", {"decrypt": True, "transform": "json", "max_age": 120})]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_wrapped("ParameterNotFound"), PermanentDeliveryError),
        (_wrapped("AccessDeniedException"), PermanentDeliveryError),
        (_wrapped("ThrottlingException"), RetryableDeliveryError),
        (_wrapped("InternalServerError"), RetryableDeliveryError),
        (TransformParameterError("bad json"), PermanentDeliveryError),
    ],
    ids=["missing", "denied", "throttled", "ssm-down", "not-json"],
)
def test_credential_source_error_is_classified(error: Exception, kind: type[DeliveryError]) -> None:
    with pytest.raises(DeliveryError) as raised:
        CredentialSource(FakeParameterProvider(error=error), max_age=0).get("/ref")

    assert type(raised.value) is kind


def test_credential_source_non_object_is_permanent() -> None:
    with pytest.raises(PermanentDeliveryError):
        CredentialSource(FakeParameterProvider({"/ref": ["a"]}), max_age=0).get("/ref")
