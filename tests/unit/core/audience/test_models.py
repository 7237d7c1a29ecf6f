"""Unit tests of core/audience/models.py: the request models' validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.audience.models import AppRequest, DeviceRequest, UserRequest


def _invalid_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.value.errors()}


@pytest.mark.parametrize("zone", ["Europe/Paris", "Pacific/Kiritimati", "Asia/Kathmandu", "UTC"])
def test_user_request_iana_zone_accepted(zone: str) -> None:
    assert UserRequest(timezone=zone).timezone == zone


# localtime: the host's own zone (a link to /etc/localtime on Debian), so sends fired at the machine's zone.
@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "+02:00", "CEST", "../../etc/passwd", "", "europe/paris", "localtime", "Factory", "posixrules"],
)
def test_user_request_unknown_zone_refused_naming_timezone(zone: str) -> None:
    with pytest.raises(ValidationError) as raised:
        UserRequest(timezone=zone)

    assert _invalid_fields(raised) == {"timezone"}


def test_user_request_numeric_telegram_chat_id_stored_as_text() -> None:
    request = UserRequest.model_validate({"timezone": "UTC", "telegram_chat_id": -1001234})

    assert request.telegram_chat_id == "-1001234"


@pytest.mark.parametrize("chat", ["\u0661\u0662\u0663\u0664\u0665", "\uff11\uff12\uff13", "-\u0967\u0968"])
def test_user_request_telegram_chat_id_of_digits_of_another_script_refused(chat: str) -> None:
    # Python's \d took any script's digits: stored, then every Telegram delivery failed (no such chat).
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "telegram_chat_id": chat})

    assert _invalid_fields(raised) == {"telegram_chat_id"}


def test_user_request_bad_email_and_unknown_field_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "email": "not-an-address", "extra": 1})

    assert _invalid_fields(raised) == {"email", "extra"}


def test_user_request_data_over_16_kib_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        UserRequest(timezone="UTC", data={"blob": "x" * 17_000})

    assert _invalid_fields(raised) == {"data"}


def test_user_request_data_bound_counts_bytes_of_utf8_not_escapes() -> None:
    # 8,000 bytes of UTF-8 were refused as over 16,384: json's escapes counted each "é" as 6 characters.
    assert UserRequest(timezone="UTC", data={"bio": "\u00e9" * 4000}).data == {"bio": "\u00e9" * 4000}
    with pytest.raises(ValidationError):
        UserRequest(timezone="UTC", data={"bio": "\u00e9" * 8200})


@pytest.mark.parametrize(
    ("arn", "platform"),
    [
        ("arn:aws:sns:us-east-1:123456789012:app/APNS/ios", "APNS"),
        ("arn:aws:sns:eu-west-1:123456789012:app/APNS_SANDBOX/ios-dev", "APNS_SANDBOX"),
        ("arn:aws:sns:us-east-1:123456789012:app/GCM/android", "GCM"),
    ],
)
def test_app_request_platform_parsed_from_the_arn(arn: str, platform: str) -> None:
    assert AppRequest(platform_application_arn=arn).platform == platform


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:us-east-1:123456789012:app/BAIDU/x",
        "arn:aws:sns:us-east-1:123456789012:my-topic",
        "arn:aws:sns:us-east-1:123456789012:app/GCM/android\n",
    ],
)
def test_app_request_other_arn_refused_naming_the_field(arn: str) -> None:
    with pytest.raises(ValidationError) as raised:
        AppRequest(platform_application_arn=arn)

    assert _invalid_fields(raised) == {"platform_application_arn"}


def test_device_request_empty_token_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        DeviceRequest(app="android", token="")

    assert _invalid_fields(raised) == {"token"}


@pytest.mark.parametrize("token", ["a\x01b", "a\ufffeb", "a\uffffb", "a b", "tök"])
def test_device_request_token_no_platform_gives_refused_naming_the_field(token: str) -> None:
    """A control character or U+FFFF reached SNS, whose XML answer could not carry it back: a 500."""
    with pytest.raises(ValidationError) as raised:
        DeviceRequest(app="android", token=token)

    assert _invalid_fields(raised) == {"token"}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"plan": "pro\ud800"}, "data.plan"),
        ({"tags": ["a", "\udfff"]}, "data.tags.1"),
        ({"plan": "pro\x00"}, "data.plan"),
        ({"nested": {"k": ["\x00"]}}, "data.nested.k.0"),
    ],
)
def test_user_request_data_lone_surrogate_or_nul_refused_naming_where(data: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "data": data})

    assert _invalid_fields(raised) == {where}


def test_user_request_data_key_lone_surrogate_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "data": {"plan": "pro", "pro\ud800": True}})

    # pydantic writes the key in an error's location with the surrogate replaced: the key is named, not echoed.
    [error] = raised.value.errors()
    assert (error["type"], error["loc"][0], len(error["loc"])) == ("invalid_text", "data", 2)
    assert str(error["loc"][1]).startswith("pro")


def test_user_request_data_noncharacters_stored_as_they_are() -> None:
    # Data is stored and matched on, never sent: PostgreSQL's UTF-8 holds U+FFFE and U+FFFF.
    assert UserRequest(timezone="UTC", data={"k\ufffe": "\uffff"}).data == {"k\ufffe": "\uffff"}


def test_user_request_email_non_ascii_before_the_at_refused_naming_email() -> None:
    # Stored, every email to the user failed at send: SES sends no SMTPUTF8 (a non-ASCII domain goes as punycode).
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "email": "zoë@example.com"})

    assert _invalid_fields(raised) == {"email"}
    assert UserRequest.model_validate({"timezone": "UTC", "email": "zoe@exämple.com"}).email == "zoe@exämple.com"


@pytest.mark.parametrize(
    "email", ["ada\ud800@example.com", "ada\uffff@example.com", "ada@example.com\ufffe", "ada\x00@example.com"]
)
def test_user_request_email_a_message_cannot_carry_refused_naming_email(email: str) -> None:
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "email": email})

    assert _invalid_fields(raised) == {"email"}


@pytest.mark.parametrize(
    "email",
    ["a" * 65 + "@example.com", "ada@" + "b" * 64 + ".com", "first..last@example.com", ".ada@example.com"],
    ids=["local-part-of-65", "label-of-64", "two-dots", "leading-dot"],
)
def test_user_request_email_the_email_channel_refuses_is_refused_naming_email(email: str) -> None:
    # Stored with a 201, every email delivery to the user then failed "invalid target: to[0]".
    from core.channels.base import parse_settings
    from core.channels.email import EmailTarget
    from core.errors import PermanentDeliveryError

    with pytest.raises(PermanentDeliveryError):
        parse_settings(EmailTarget, {"to": [email], "from": "shop@example.com"}, "target")
    with pytest.raises(ValidationError) as raised:
        UserRequest.model_validate({"timezone": "UTC", "email": email})

    assert _invalid_fields(raised) == {"email"}


def test_user_request_email_at_rfc_5321_lengths_is_taken() -> None:
    email = "a" * 64 + "@" + "b" * 63 + ".example"

    assert UserRequest.model_validate({"timezone": "UTC", "email": email}).email == email
