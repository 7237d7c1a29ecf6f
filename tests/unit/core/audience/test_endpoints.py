"""Unit tests of the devices' SNS platform endpoints (core/audience/endpoints.py) over an in-memory SNS."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.parsers import ResponseParserError

from core.audience.endpoints import PushEndpoints
from core.errors import InvalidRequestError, UpstreamError
from tests.fakes.sns_endpoints import FakeSnsEndpoints

APPLICATION = "arn:aws:sns:eu-west-1:123456789012:app/APNS/ios"


class VanishingSns(FakeSnsEndpoints):
    """Deletes the endpoint right after creating it, as another caller could in between."""

    def create_platform_endpoint(
        self, PlatformApplicationArn: str, Token: str, CustomUserData: str = ""
    ) -> dict[str, Any]:
        created = super().create_platform_endpoint(PlatformApplicationArn, Token, CustomUserData)
        if self.calls.count("CreatePlatformEndpoint") == 1:
            self.endpoints.clear()
        return created


class UnreachableSns(FakeSnsEndpoints):
    """Cannot be reached at all."""

    def delete_endpoint(self, EndpointArn: str) -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="https://sns.eu-west-1.amazonaws.com")


def test_push_endpoints_register_new_token_creates_one_enabled_endpoint() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))

    arn = PushEndpoints(sns).register(APPLICATION, "t1", "ada")

    assert sns.endpoints[arn] == {"Application": APPLICATION, "Token": "t1", "CustomUserData": "ada", "Enabled": "true"}
    assert "SetEndpointAttributes" not in sns.calls


def test_push_endpoints_register_existing_disabled_enables_that_endpoint() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))
    arn = PushEndpoints(sns).register(APPLICATION, "t1", "ada")
    sns.endpoints[arn]["Enabled"] = "false"

    again = PushEndpoints(sns).register(APPLICATION, "t1", "ada")

    assert again == arn
    assert (sns.endpoints[arn]["CustomUserData"], sns.endpoints[arn]["Enabled"]) == ("ada", "true")


def test_push_endpoints_register_token_of_another_user_gets_a_new_endpoint_the_old_deleted() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))
    arn = PushEndpoints(sns).register(APPLICATION, "t1", "ada")
    sns.endpoints[arn]["Enabled"] = "false"

    moved = PushEndpoints(sns).register(APPLICATION, "t1", "bob")

    # What was queued for ada names the old endpoint: it must find it gone, never reach bob.
    assert moved != arn
    assert sns.endpoints == {
        moved: {"Application": APPLICATION, "Token": "t1", "CustomUserData": "bob", "Enabled": "true"}
    }


def test_push_endpoints_register_endpoint_without_user_data_is_given_it() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))
    arn = PushEndpoints(sns).register(APPLICATION, "t1", "")

    again = PushEndpoints(sns).register(APPLICATION, "t1", "ada")

    assert again == arn
    assert sns.endpoints[arn]["CustomUserData"] == "ada"


def test_push_endpoints_register_endpoint_deleted_meanwhile_creates_it_again() -> None:
    sns = VanishingSns((APPLICATION,))

    arn = PushEndpoints(sns).register(APPLICATION, "t1", "ada")

    assert list(sns.endpoints) == [arn]


def test_push_endpoints_delete_already_gone_is_fine() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))

    PushEndpoints(sns).delete(APPLICATION.replace(":app/", ":endpoint/") + "/gone")

    assert sns.calls == ["DeleteEndpoint"]


def test_push_endpoints_delete_sns_unreachable_raises_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="EndpointConnectionError"):
        PushEndpoints(UnreachableSns()).delete("arn:aws:sns:eu-west-1:123456789012:endpoint/APNS/ios/1")


def test_push_endpoints_register_other_invalid_parameter_is_not_taken_for_an_existing_endpoint() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))

    with pytest.raises(InvalidRequestError) as raised:
        PushEndpoints(sns).register(APPLICATION, "bad-token", "ada")

    assert raised.value.field == "token"


@pytest.mark.parametrize("code", ["NotFound", "InvalidParameter", "AuthorizationError"])
def test_push_endpoints_check_application_sns_cannot_read_is_refused_naming_the_arn(code: str) -> None:
    # AuthorizationError: an ARN of another account, which the function's role may not read (a 502 before).
    sns = FakeSnsEndpoints((APPLICATION,))
    sns.failing = code

    with pytest.raises(InvalidRequestError) as raised:
        PushEndpoints(sns).check_application(APPLICATION)

    assert raised.value.field == "platform_application_arn"


def test_push_endpoints_check_application_sns_failing_otherwise_is_upstream() -> None:
    sns = FakeSnsEndpoints((APPLICATION,))
    sns.failing = "InternalError"

    with pytest.raises(UpstreamError):
        PushEndpoints(sns).check_application(APPLICATION)


def test_push_endpoints_check_application_known_one_passes() -> None:
    PushEndpoints(FakeSnsEndpoints((APPLICATION,))).check_application(APPLICATION)


class GarbledSns(FakeSnsEndpoints):
    """SNS (or a proxy before it) answering what botocore cannot parse."""

    def get_endpoint_attributes(self, EndpointArn: str) -> dict[str, Any]:
        raise ResponseParserError("Unable to parse response (not well-formed (invalid token))")


def test_push_endpoints_register_answer_botocore_cannot_parse_is_upstream_error() -> None:
    """botocore's ResponseParserError is no BotoCoreError: it escaped every translation, and the route answered 500."""
    with pytest.raises(UpstreamError, match=r"\(ResponseParserError\)"):
        PushEndpoints(GarbledSns((APPLICATION,))).register(APPLICATION, "t1", "ada")
