"""Unit tests of core/sns.py: SNS signatures (versions 1 and 2), the certificate and confirmation URLs, the fetcher."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from core.errors import BlockedTargetError, SnsEndpointError, SnsMessageError, SnsSignatureError
from core.http import error_response
from core.outbound import NameResolutionError
from core.sns import (
    SIGNED_FIELDS,
    HttpsFetcher,
    SnsMessage,
    SnsVerifier,
    canonical_string,
    check_sns_url,
    confirm_subscription,
)
from tests.support.sns import CERT_URL, FakeSnsFetcher, canonical, fetcher, issue, sample, sign, verifier

NOTIFICATION = "sns_notification.json"
CONFIRMATION = "sns_subscription_confirmation.json"


def _message(fields: dict[str, Any]) -> SnsMessage:
    return SnsMessage.model_validate(fields)


def _signed(name: str = NOTIFICATION, version: str = "1", **changes: Any) -> dict[str, Any]:
    return sign({**sample(name), **changes}, version)


@pytest.mark.parametrize("version", ["1", "2"])
def test_verify_signed_notification_passes(version: str) -> None:
    verifier().verify(_message(_signed(version=version)))


@pytest.mark.parametrize("version", ["1", "2"])
def test_verify_signed_subscription_confirmation_passes(version: str) -> None:
    verifier().verify(_message(_signed(CONFIRMATION, version)))


def test_verify_notification_without_subject_passes() -> None:
    fields = sample(NOTIFICATION)
    del fields["Subject"]

    verifier().verify(_message(sign(fields)))


def test_canonical_string_is_the_documented_one() -> None:
    fields = _signed()

    assert canonical_string(_message(fields)) == canonical(fields)
    assert canonical_string(_message(fields)).startswith(b"Message\n{")


def test_verify_tampered_message_raises_signature_error() -> None:
    fields = {**_signed(), "Message": '{"order_id": "A-2"}'}

    with pytest.raises(SnsSignatureError, match="Signature does not match the message"):
        verifier().verify(_message(fields))


def test_verify_subject_removed_after_signing_raises_signature_error() -> None:
    fields = _signed()
    del fields["Subject"]

    with pytest.raises(SnsSignatureError):
        verifier().verify(_message(fields))


def test_verify_signature_of_another_key_raises_signature_error() -> None:
    fields = sign(sample(NOTIFICATION), identity=issue())

    with pytest.raises(SnsSignatureError, match="does not match"):
        verifier().verify(_message(fields))


@pytest.mark.parametrize(("signed_as", "claimed"), [("1", "2"), ("2", "1")])
def test_verify_signature_of_the_other_version_raises_signature_error(signed_as: str, claimed: str) -> None:
    fields = {**_signed(version=signed_as), "SignatureVersion": claimed}

    with pytest.raises(SnsSignatureError, match="does not match"):
        verifier().verify(_message(fields))


@pytest.mark.parametrize("version", ["3", "0", "", "v1"])
def test_verify_unknown_signature_version_raises_naming_the_field(version: str) -> None:
    fetch = fetcher()

    with pytest.raises(SnsSignatureError, match="SignatureVersion must be one of: 1, 2"):
        verifier(fetch).verify(_message({**_signed(), "SignatureVersion": version}))
    assert fetch.asked == []


def test_verify_signature_not_base64_raises_signature_error() -> None:
    with pytest.raises(SnsSignatureError, match="Signature is not base64"):
        verifier().verify(_message({**_signed(), "Signature": "not base64!"}))


def test_verify_confirmation_without_token_raises_naming_it() -> None:
    fields = _signed(CONFIRMATION)
    del fields["Token"]

    with pytest.raises(SnsMessageError, match="Token is required in a SubscriptionConfirmation message"):
        verifier().verify(_message(fields))


FOREIGN_CERT_URLS = [
    pytest.param("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem", id="http"),
    pytest.param("https://evil.example.com/SimpleNotificationService-1.pem", id="other-host"),
    pytest.param("https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-1.pem", id="look-alike"),
    pytest.param("https://sns.us-east-1.amazonaws.com.cn.evil.com/a.pem", id="look-alike-cn"),
    pytest.param("https://xsns.us-east-1.amazonaws.com/a.pem", id="prefixed-host"),
    pytest.param("https://sns.us-east-1.amazonaws.co/a.pem", id="other-tld"),
    pytest.param("https://sns.amazonaws.com/a.pem", id="no-region"),
    pytest.param("https://sns.us-east-1.amazonaws.com@evil.com/a.pem", id="user-info-host"),
    pytest.param("https://evil.com@sns.us-east-1.amazonaws.com/a.pem", id="user-info"),
    pytest.param("https://evil.com\\@sns.us-east-1.amazonaws.com/a.pem", id="backslash"),
    pytest.param("https://sns.us-east-1.amazonaws.com:8443/a.pem", id="port"),
    pytest.param("https://SNS.us-east-1.amazonaws.com/a.pem", id="upper-case"),
    pytest.param("https://sns.us-east-1.amazonaws.com/a.pem\n", id="newline"),
    pytest.param("https://sns.us-east-1.amazon\taws.com/a.pem", id="tab"),
    pytest.param("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt", id="not-pem"),
    pytest.param("https://sns.us-east-1.amazonaws.com/a.txt?x=.pem", id="pem-in-query"),
    pytest.param("https://sns.us-east-1.amazonaws.com/a.pem?x=1", id="query"),
    pytest.param("https://sns.us-east-1.amazonaws.com/a.pem#x", id="fragment"),
    pytest.param("https://[::1/a.pem", id="unparsable"),
    pytest.param("sns.us-east-1.amazonaws.com/a.pem", id="no-scheme"),
    pytest.param("https://sns.s3.amazonaws.com/a.pem", id="s3-bucket-named-sns"),
    pytest.param("https://sns.s3-us-west-2.amazonaws.com/a.pem", id="s3-regional-bucket-named-sns"),
    pytest.param("https://sns.s3.us-east-1.amazonaws.com/a.pem", id="s3-dotted-bucket-named-sns"),
    pytest.param("https://sns.execute-api.amazonaws.com/a.pem", id="not-a-region"),
    pytest.param("https://sns.us-east-1a.amazonaws.com/a.pem", id="zone-not-region"),
]


@pytest.mark.parametrize("url", FOREIGN_CERT_URLS)
def test_verify_foreign_certificate_url_raises_and_fetches_nothing(url: str) -> None:
    fetch = FakeSnsFetcher({url: fetcher().documents[CERT_URL]})
    fields = sign({**sample(NOTIFICATION), "SigningCertURL": url})

    with pytest.raises(SnsSignatureError, match="SigningCertURL"):
        verifier(fetch).verify(_message(fields))
    assert fetch.asked == []


@pytest.mark.parametrize(
    ("url", "topic_arn"),
    [
        (
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
            "arn:aws-cn:sns:cn-north-1:123456789012:order-events",
        ),
        (
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-1.pem",
            "arn:aws-us-gov:sns:us-gov-west-1:123456789012:order-events",
        ),
        (
            "https://sns.eu-west-3.amazonaws.com/a/b/SimpleNotificationService-1.pem",
            "arn:aws:sns:eu-west-3:123456789012:order-events",
        ),
    ],
)
def test_verify_certificate_on_the_topic_region_sns_host_is_fetched(url: str, topic_arn: str) -> None:
    fetch = fetcher(url=url)

    verifier(fetch).verify(_message(sign({**sample(NOTIFICATION), "SigningCertURL": url, "TopicArn": topic_arn})))

    assert fetch.asked == [url]


def test_verify_certificate_of_another_region_than_the_topic_raises_and_fetches_nothing() -> None:
    url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
    fetch = fetcher(url=url)

    with pytest.raises(SnsSignatureError, match="SigningCertURL must be on the SNS host of the topic's region"):
        verifier(fetch).verify(_message(sign({**sample(NOTIFICATION), "SigningCertURL": url})))
    assert fetch.asked == []


@pytest.mark.parametrize("topic_arn", ["order-events", "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:sns::1:t"])
def test_verify_topic_arn_not_of_an_sns_topic_raises_naming_it(topic_arn: str) -> None:
    fetch = fetcher()

    with pytest.raises(SnsSignatureError, match="TopicArn"):
        verifier(fetch).verify(_message(sign({**sample(NOTIFICATION), "TopicArn": topic_arn})))
    assert fetch.asked == []


def test_verify_certificate_not_issued_to_sns_raises_signature_error() -> None:
    other = issue(common_name="bucket.s3.amazonaws.com")

    with pytest.raises(SnsSignatureError, match=r"not issued to sns\.amazonaws\.com"):
        verifier(fetcher(other)).verify(_message(sign(sample(NOTIFICATION), identity=other)))


def test_verify_certificate_url_refused_by_sns_raises_signature_error() -> None:
    with pytest.raises(SnsSignatureError, match=r"SigningCertURL: SNS refused the request \(HTTP 404\)"):
        verifier(FakeSnsFetcher()).verify(_message(_signed()))


def test_verify_certificate_url_serving_no_certificate_raises_signature_error() -> None:
    with pytest.raises(SnsSignatureError, match="does not serve a PEM certificate"):
        verifier(FakeSnsFetcher({CERT_URL: b"<html>not a certificate</html>"})).verify(_message(_signed()))


def test_verify_sns_unreachable_raises_endpoint_error() -> None:
    def unreachable(url: str) -> bytes:
        raise SnsEndpointError("SNS answered HTTP 503")

    with pytest.raises(SnsEndpointError, match="fetching the signing certificate failed: SNS answered HTTP 503"):
        SnsVerifier(unreachable).verify(_message(_signed()))


def test_verify_expired_certificate_raises_signature_error() -> None:
    now = datetime.now(UTC)
    expired = issue(not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))

    with pytest.raises(SnsSignatureError, match="expired or not yet valid"):
        verifier(fetcher(expired)).verify(_message(sign(sample(NOTIFICATION), identity=expired)))


def test_verify_cached_certificate_checked_at_the_clock() -> None:
    later = datetime.now(UTC) + timedelta(days=400)
    verify = SnsVerifier(fetcher(), clock=lambda: later)

    with pytest.raises(SnsSignatureError, match="expired or not yet valid"):
        verify.verify(_message(_signed()))


def test_verify_certificate_fetched_once_per_url() -> None:
    fetch = fetcher()
    verify = verifier(fetch)

    verify.verify(_message(_signed()))
    verify.verify(_message(_signed(CONFIRMATION)))

    assert fetch.asked == [CERT_URL]


def test_verify_certificate_cache_is_bounded_least_recent_first() -> None:
    other = CERT_URL.replace("6aad", "0000")
    fetch = fetcher()
    fetch.documents[other] = fetch.documents[CERT_URL]
    verify = SnsVerifier(fetch, cache_size=1)

    for url in (CERT_URL, other, CERT_URL):
        verify.verify(_message(sign({**sample(NOTIFICATION), "SigningCertURL": url})))

    assert fetch.asked == [CERT_URL, other, CERT_URL]


def test_verify_trusts_the_hosts_it_is_configured_with() -> None:
    url = "https://sns.test/cert.pem"
    verify = SnsVerifier(fetcher(url=url), trusted_host=re.compile(r"sns\.test"))

    verify.verify(_message(sign({**sample(NOTIFICATION), "SigningCertURL": url})))
    with pytest.raises(SnsSignatureError, match="SNS host"):
        verify.verify(_message(_signed()))


_SIGNED_MESSAGES = {
    (name, version): _signed(name, version) for name in (NOTIFICATION, CONFIRMATION) for version in "12"
}
_TYPES = list(SIGNED_FIELDS)


@st.composite
def _one_field_changed(draw: st.DrawFn) -> dict[str, Any]:
    fields = dict(draw(st.sampled_from(list(_SIGNED_MESSAGES.values()))))
    name = draw(st.sampled_from(SIGNED_FIELDS[fields["Type"]]))
    if name == "Type":
        value = draw(st.sampled_from([kind for kind in _TYPES if kind != fields["Type"]]))
    else:
        value = draw(st.text(min_size=1).filter(lambda text: text != fields.get(name)))
    fields[name] = value
    return fields


@given(_one_field_changed())
def test_verify_any_change_to_a_signed_field_fails(fields: dict[str, Any]) -> None:
    with pytest.raises(SnsMessageError):
        verifier().verify(_message(fields))


SUBSCRIBE_URL = sample(CONFIRMATION)["SubscribeURL"]


def test_subscribe_url_on_sns_host_is_returned() -> None:
    assert verifier().subscribe_url(_message(_signed(CONFIRMATION))) == SUBSCRIBE_URL


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(SUBSCRIBE_URL.replace("https://", "http://"), id="http"),
        pytest.param(SUBSCRIBE_URL.replace("amazonaws.com/", "amazonaws.com.evil.com/"), id="look-alike"),
        pytest.param(SUBSCRIBE_URL.replace("sns.us-east-1.amazonaws.com", "127.0.0.1"), id="loopback"),
        pytest.param(SUBSCRIBE_URL.replace("sns.us-east-1.", "sns.s3."), id="s3-bucket-named-sns"),
        pytest.param(SUBSCRIBE_URL.replace("sns.us-east-1.", "sns.eu-west-1."), id="other-region"),
        pytest.param(SUBSCRIBE_URL.replace("https://", "https://evil.com@"), id="user-info"),
        pytest.param(SUBSCRIBE_URL.replace("Action=ConfirmSubscription", "Action=Publish"), id="other-action"),
        pytest.param(SUBSCRIBE_URL.replace("Action=ConfirmSubscription&", ""), id="no-action"),
    ],
)
def test_confirm_subscription_url_off_sns_raises_and_fetches_nothing(url: str) -> None:
    fetch = fetcher()
    message = _message(_signed(CONFIRMATION, SubscribeURL=url))

    with pytest.raises(SnsSignatureError, match="SubscribeURL") as raised:
        confirm_subscription(message, verifier(fetch), fetch)
    assert fetch.asked == []
    assert sample(CONFIRMATION)["Token"] not in str(raised.value)


def test_confirm_subscription_gets_the_subscribe_url() -> None:
    fetch = fetcher()

    confirm_subscription(_message(_signed(CONFIRMATION)), verifier(fetch), fetch)

    assert fetch.asked == [SUBSCRIBE_URL]


def test_confirm_subscription_refused_by_sns_raises_without_the_token() -> None:
    message = _message(_signed(CONFIRMATION))

    with pytest.raises(SnsMessageError, match=r"SubscribeURL: SNS refused the request \(HTTP 404\)") as raised:
        confirm_subscription(message, verifier(), FakeSnsFetcher())
    assert sample(CONFIRMATION)["Token"] not in str(raised.value)


def test_check_sns_url_refusal_does_not_quote_the_url() -> None:
    url = "https://evil.example.com/?Token=secret-token-1234"

    with pytest.raises(SnsSignatureError) as raised:
        check_sns_url(url, "SubscribeURL")
    assert "secret-token" not in str(raised.value)


class _Session:
    """Answers every GET with one response, or raises; records the keyword arguments of the call."""

    def __init__(self, status: int = 200, body: bytes = b"", error: Exception | None = None) -> None:
        self.status, self.body, self.error = status, body, error
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append({"url": url, **kwargs})
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        response.raw = io.BytesIO(self.body)
        return response


def _fetch(session: _Session, max_bytes: int = 1024) -> bytes:
    return HttpsFetcher(session, max_bytes=max_bytes)(CERT_URL)  # type: ignore[arg-type]


def test_https_fetcher_returns_the_body_of_a_200_without_following_redirects() -> None:
    session = _Session(body=b"pem")

    assert _fetch(session) == b"pem"
    assert session.calls[0]["allow_redirects"] is False
    assert session.calls[0]["timeout"]


@pytest.mark.parametrize(
    ("session", "error", "message"),
    [
        (_Session(404), SnsMessageError, r"SNS refused the request \(HTTP 404\)"),
        (_Session(301), SnsEndpointError, "SNS answered HTTP 301"),
        (_Session(429), SnsEndpointError, "SNS answered HTTP 429"),
        (_Session(503), SnsEndpointError, "SNS answered HTTP 503"),
        (_Session(body=b"x" * 1025), SnsMessageError, "SNS answered more than 1 KiB"),
        (_Session(error=requests.ConnectTimeout(CERT_URL)), SnsEndpointError, r"not be reached \(ConnectTimeout\)"),
        (_Session(error=BlockedTargetError("target host does not resolve")), SnsMessageError, "does not resolve"),
        (
            _Session(error=NameResolutionError("the target host's name could not be resolved now")),
            SnsEndpointError,
            r"not be reached \(NameResolutionError\)",
        ),
    ],
)
def test_https_fetcher_failure_raises_by_whose_fault_it_is(
    session: _Session, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        _fetch(session)
    assert type(raised.value) is error
    assert raised.value.__cause__ is None
    assert CERT_URL not in str(raised.value)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SnsMessageError("not JSON"), 400),
        (SnsSignatureError("Signature does not match the message"), 400),
        (SnsEndpointError("SNS answered HTTP 503"), 502),
    ],
)
def test_sns_errors_map_to_their_status(error: Exception, status: int) -> None:
    assert error_response(error).status_code == status  # type: ignore[arg-type]
