"""Unit tests of the email channel (core/channels/email.py) with a fake SES client: rendering, pacing, sending."""

from __future__ import annotations

from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.channels import ChannelResources, Limit, destination_key
from core.channels.email import EmailChannel, EmailTarget
from core.errors import DeliveryError, MissingTemplateVariablesError, PermanentDeliveryError, RetryableDeliveryError
from core.http import describe_validation_error
from core.models import Content
from tests.fakes.delivery import FakeClock, FakeSendingClient

TARGET = {"to": ["ada@example.com"], "from": "Shop <noreply@example.com>"}
# What a person is told of a malformed address (core/channels/email.py's words).
_ADDRESS = "is not an email address (write it as name@example.com)"
_SENDER = "is not an email address (write it as name@example.com or Name <name@example.com>)"
_ANGLE = "must be an address, or a name and one address in angle brackets: write it as Name <name@example.com>"
_QUOTE = (
    "has a name with punctuation outside double quotes: a name may hold letters, digits, spaces, dots and "
    '!#$%&\'*+-/=?^_`{|}~ as they are; quote any other, as in "Doe, John" <john@example.com>'
)
_ASCII_LOCAL = (
    "must have only ASCII letters, digits and !#$%&'*+-/=?^_`{|}~ before the @ (SES sends no other; "
    "the domain may be in any script)"
)


def _send(resources: ChannelResources, content: Content | None = None, target: dict | None = None) -> str | None:
    content = content or Content(subject="Shipped", text="Order 42", html="<p>Order &lt;42&gt;</p>")
    return (
        EmailChannel(resources)
        .send(content, target or TARGET, None, notification_id="n-1", delivery_key="k-1")
        .provider_message_id
    )


def test_email_sends_subject_text_and_html(resources: ChannelResources, client: FakeSendingClient) -> None:
    _send(resources)

    [call] = client.calls
    assert call == {
        "Source": "Shop <noreply@example.com>",
        "Destination": {"ToAddresses": ["ada@example.com"]},
        "Message": {
            "Subject": {"Data": "Shipped", "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": "Order 42", "Charset": "UTF-8"},
                "Html": {"Data": "<p>Order &lt;42&gt;</p>", "Charset": "UTF-8"},
            },
        },
    }


def test_email_subject_with_line_breaks_goes_as_one_line(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    # A value inserted into the subject holding a line break reached SES as written: a header folded, or another begun.
    _send(resources, Content(subject="Hi\r\nBcc: eve@example.com\u2028X-Evil: 1", text="Order 42"))

    assert client.calls[0]["Message"]["Subject"]["Data"] == "Hi Bcc: eve@example.com X-Evil: 1"


def test_email_without_html_sends_text_only(resources: ChannelResources, client: FakeSendingClient) -> None:
    _send(resources, Content(subject="Shipped", text="Order 42"))

    assert set(client.calls[0]["Message"]["Body"]) == {"Text"}


def test_email_returns_ses_message_id(resources: ChannelResources) -> None:
    assert _send(resources) == "provider-1"


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("MessageRejected", 400, PermanentDeliveryError),
        ("MailFromDomainNotVerifiedException", 400, PermanentDeliveryError),
        ("AccountSendingPausedException", 400, RetryableDeliveryError),
        ("ConfigurationSetSendingPausedException", 400, RetryableDeliveryError),
        ("Throttling", 400, RetryableDeliveryError),
        ("ServiceUnavailable", 503, RetryableDeliveryError),
        ("InternalFailure", 500, RetryableDeliveryError),
    ],
)
def test_email_ses_error_is_classified(code: str, status: int, kind: type[DeliveryError]) -> None:
    client = FakeSendingClient(code, status)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(DeliveryError) as raised:
        _send(resources)

    # AWS's message is said for a refusal (which identity, which quota), not for a 5xx.
    said = f"email: {code}" + (" (fake)" if status < 500 else "")
    assert (type(raised.value), raised.value.reason) == (kind, said)  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", ["AccountSendingPausedException", "ConfigurationSetSendingPausedException"])
def test_email_ses_sending_paused_is_retried_without_slowing_the_pace(code: str) -> None:
    # Paused sending is sent once it resumes, within the retry window; it says nothing of the account's rate.
    client = FakeSendingClient(code, 400)
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources)

    assert raised.value.rate_limited is False


def test_email_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, target={"to": ["not-an-address"], "from": "noreply@example.com"})

    assert raised.value.reason == "invalid target: to[0]"


def test_email_too_many_recipients_is_permanent(resources: ChannelResources) -> None:
    target = {"to": [f"user{index}@example.com" for index in range(51)], "from": "noreply@example.com"}

    with pytest.raises(PermanentDeliveryError):
        _send(resources, target=target)


# --- rendering ----------------------------------------------------------------------------------------------------


def test_email_render_escapes_values_in_html_only() -> None:
    model = {"subject": "$v", "text": "t $v", "html": "<p>$v</p>"}

    content = EmailChannel.render(model, {"v": "<A&B>"})

    assert content == Content(subject="<A&B>", text="t <A&B>", html="<p>&lt;A&amp;B&gt;</p>")


def test_email_render_without_html_has_no_html() -> None:
    assert EmailChannel.render({"subject": "s", "text": "t"}, {}).html is None


def test_email_render_missing_variable_raises_naming_it() -> None:
    with pytest.raises(MissingTemplateVariablesError) as raised:
        EmailChannel.render({"subject": "$who", "text": "t"}, {})

    assert raised.value.names == ["who"]


# --- pacing -------------------------------------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limits(channel: EmailChannel, target: dict | None = None, rate: float | None = None) -> list[Limit]:
    return channel.rate_limits(target or TARGET, None, rate)


def test_email_rate_limits_account_send_rate_costs_one_per_recipient(resources: ChannelResources) -> None:
    target = {"to": ["a@example.com", "b@example.com", "c@example.com"], "from": "noreply@example.com"}

    limits = _limits(EmailChannel(resources), target)

    assert limits == [Limit(destination_key("ses", "us-east-1"), 14.0, cost=3.0)]


def test_email_rate_limits_quota_read_once_an_hour(resources: ChannelResources, client: FakeSendingClient) -> None:
    clock = Clock()
    channel = EmailChannel(resources, clock=clock)

    _limits(channel)
    clock.now += 3599
    _limits(channel)

    assert client.quota_calls == 1


def test_email_rate_limits_quota_read_again_after_an_hour(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    clock = Clock()
    channel = EmailChannel(resources, clock=clock)
    _limits(channel)
    client.max_send_rate = 50.0
    clock.now += 3600

    [limit] = _limits(channel)

    assert (client.quota_calls, limit.per_second) == (2, 50.0)


def test_email_rate_limits_quota_error_falls_back_to_sandbox_rate() -> None:
    client = FakeSendingClient(quota_error="AccessDenied")
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""))  # type: ignore[arg-type]

    [limit] = _limits(channel)

    assert limit.per_second == 1.0


def test_email_rate_limits_quota_error_logs_warning_with_code(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeSendingClient(quota_error="AccessDenied")
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""))  # type: ignore[arg-type]

    _limits(channel)

    [record] = [record for record in caplog.records if record.message.startswith("SES send quota unreadable")]
    assert (record.levelname, record.reason) == ("WARNING", "AccessDenied")  # type: ignore[attr-defined]


def test_email_rate_limits_quota_refused_read_again_after_a_minute() -> None:
    client = FakeSendingClient(quota_error="AccessDenied")
    clock = Clock()
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""), clock)  # type: ignore[arg-type]
    _limits(channel)
    client.quota_error = None
    clock.now += 60

    [limit] = _limits(channel)

    assert (client.quota_calls, limit.per_second) == (2, 14.0)


class QuotaThrottlingClient(FakeSendingClient):
    """An SES client whose first ``failures`` quota reads are answered ``Throttling``, as SES answers a burst."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def get_send_quota(self) -> dict[str, Any]:
        """Answer ``Throttling`` while failures are left, then the quota."""
        self.quota_error = "Throttling" if self.quota_calls < self.failures else None
        return super().get_send_quota()


def _channel(client: FakeSendingClient, clock: FakeClock) -> EmailChannel:
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]
    return EmailChannel(resources, clock, sleep=clock.sleep, rand=lambda: 1.0)


def test_email_rate_limits_quota_throttled_once_is_read_again_after_a_short_backoff() -> None:
    client, clock = QuotaThrottlingClient(failures=1), FakeClock(1000.0)

    [limit] = _limits(_channel(client, clock))

    assert (limit.per_second, client.quota_calls) == (14.0, 2)
    assert 0 < sum(clock.slept) <= 1.0


def test_email_rate_limits_quota_unreadable_with_no_rate_known_retries_the_send_soon_unpaced() -> None:
    # No slot is taken at a guessed rate: slots a burst took at the sandbox rate outlived the failed read by hours.
    client, clock = FakeSendingClient(quota_error="Throttling"), FakeClock(1000.0)

    with pytest.raises(RetryableDeliveryError) as raised:
        _limits(_channel(client, clock))

    error = raised.value
    assert (error.reason, error.rate_limited, client.quota_calls) == (
        "email: SES send quota: Throttling (fake)",
        True,
        3,
    )
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 5.0


def test_email_rate_limits_quota_unreadable_is_not_read_again_by_every_send() -> None:
    client, clock = FakeSendingClient(quota_error="Throttling"), FakeClock(1000.0)
    channel = _channel(client, clock)
    with pytest.raises(RetryableDeliveryError):
        _limits(channel)

    with pytest.raises(RetryableDeliveryError) as raised:
        _limits(channel)

    assert (client.quota_calls, raised.value.rate_limited) == (3, True)


def test_email_rate_limits_quota_unreadable_is_read_again_when_the_send_retries() -> None:
    client, clock = FakeSendingClient(quota_error="Throttling"), FakeClock(1000.0)
    channel = _channel(client, clock)
    with pytest.raises(RetryableDeliveryError) as raised:
        _limits(channel)
    client.quota_error = None
    clock.advance(raised.value.retry_after or 0.0)

    [limit] = _limits(channel)

    assert (limit.per_second, client.quota_calls) == (14.0, 4)


def test_email_rate_limits_quota_outage_with_no_rate_known_is_an_attempt_retried() -> None:
    client, clock = FakeSendingClient(quota_error="ServiceUnavailable"), FakeClock(1000.0)

    with pytest.raises(RetryableDeliveryError) as raised:
        _limits(_channel(client, clock))

    assert (raised.value.reason, raised.value.rate_limited) == (
        "email: SES send quota: ServiceUnavailable (fake)",
        False,
    )


@pytest.mark.parametrize("code", ["Throttling", "AccessDenied"])
def test_email_rate_limits_failed_refresh_keeps_the_last_rate_read(code: str) -> None:
    client, clock = FakeSendingClient(), FakeClock(1000.0)
    channel = _channel(client, clock)
    _limits(channel)
    clock.advance(3600)
    client.quota_error = code

    [limit] = _limits(channel)

    # The container's sends go on at the rate it knows: no backoff holds them.
    assert (limit.per_second, client.quota_calls, clock.slept) == (14.0, 2, [])


def test_email_rate_limits_failed_refresh_is_read_again_after_a_minute() -> None:
    client, clock = FakeSendingClient(), FakeClock(1000.0)
    channel = _channel(client, clock)
    _limits(channel)
    clock.advance(3600)
    client.quota_error = "Throttling"
    _limits(channel)
    client.quota_error, client.max_send_rate = None, 50.0
    clock.advance(60)

    [limit] = _limits(channel)

    assert limit.per_second == 50.0


@pytest.mark.parametrize("rate", [0.0, -3.0, float("inf")])
def test_email_rate_limits_unusable_quota_falls_back_to_sandbox_rate(rate: float) -> None:
    client = FakeSendingClient(max_send_rate=rate)
    channel = EmailChannel(ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base=""))  # type: ignore[arg-type]

    [limit] = _limits(channel)

    assert limit.per_second == 1.0


def test_email_rate_limits_integration_rate_adds_limit_on_its_recipients(resources: ChannelResources) -> None:
    limits = _limits(EmailChannel(resources), rate=0.5)

    assert limits[1:] == [Limit(destination_key("email", "Shop <noreply@example.com>", "ada@example.com"), 0.5)]


def test_email_rate_limits_invalid_target_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _limits(EmailChannel(resources), {"to": [], "from": "noreply@example.com"})

    assert raised.value.reason == "invalid target: to"


# --- addresses --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field"),
    [
        pytest.param({"to": ["ada@example.com\n"], "from": "noreply@example.com"}, "to[0]", id="to-trailing-lf"),
        pytest.param(
            {"to": ["ada@example.com\r\nBcc: x@evil.example"], "from": "noreply@example.com"}, "to[0]", id="to-crlf"
        ),
        pytest.param(
            {"to": ["ada@example.com", "ada@exa\x00mple.com"], "from": "noreply@example.com"}, "to[1]", id="to-nul"
        ),
        pytest.param({"to": ["ada@example.com"], "from": "noreply@example.com\n"}, "from", id="from-trailing-lf"),
        pytest.param(
            {"to": ["ada@example.com"], "from": "Shop\r\nBcc: x@evil.example <noreply@example.com>"},
            "from",
            id="from-header-injection",
        ),
        pytest.param({"to": ["ada@example.com"], "from": "Shop <noreply@example.com>\n"}, "from", id="from-name-lf"),
        pytest.param({"to": ["ada@example.com"], "from": "Shop\u2028<noreply@example.com>"}, "from", id="from-u2028"),
    ],
)
def test_email_address_with_control_characters_is_refused_naming_the_field(
    resources: ChannelResources, client: FakeSendingClient, target: dict, field: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, target=target)

    assert raised.value.reason == f"invalid target: {field}"
    assert client.calls == []


@pytest.mark.parametrize(
    "sender",
    [
        "noreply@example.com",
        "Shop <noreply@example.com>",
        '"Shop, Inc." <noreply@example.com>',
        '"Doe, John" <john@example.com>',
        '"Shop \\"Best\\"" <noreply@example.com>',
        "O'Brien & Sons <first.last+tag@mail.example.com>",
        "=?utf-8?q?Zo=C3=AB?= <notify@example.com>",
    ],
)
def test_email_usual_ascii_senders_are_sent_as_written(
    resources: ChannelResources, client: FakeSendingClient, sender: str
) -> None:
    _send(resources, target={"to": ["ada@example.com"], "from": sender})

    assert client.calls[0]["Source"] == sender


def test_email_sender_of_an_address_in_brackets_alone_is_sent_bare(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    _send(resources, target={"to": ["ada@example.com"], "from": "<noreply@example.com>"})

    assert client.calls[0]["Source"] == "noreply@example.com"


# --- sender syntax (RFC 5322: a name with punctuation is quoted) -------------------------------------------------


def _problem(target: dict) -> str:
    with pytest.raises(ValidationError) as raised:
        EmailTarget.model_validate(target)
    return describe_validation_error(raised.value, EmailTarget)


@pytest.mark.parametrize(
    ("sender", "problem"),
    [
        pytest.param("Doe, John <john@example.com>", _QUOTE, id="unquoted-comma"),
        pytest.param("x <y> <john@example.com>", _QUOTE, id="two-angle-addresses"),
        pytest.param("Shop <john@example.com", _ANGLE, id="no-closing-bracket"),
        pytest.param("john@example.com>", _ANGLE, id="no-opening-bracket"),
        pytest.param("Shop <john@example.com> Sales", _ANGLE, id="text-after-address"),
        pytest.param("Shop john@example.com", _SENDER, id="name-without-brackets"),
        pytest.param("Shop (Sales) <john@example.com>", _QUOTE, id="unquoted-parentheses"),
        pytest.param("Shop: Sales <john@example.com>", _QUOTE, id="unquoted-colon"),
        pytest.param('"Shop <john@example.com>', _QUOTE, id="unclosed-quote"),
        pytest.param("john@example.com, ann@example.com", _SENDER, id="two-addresses"),
        pytest.param("Shop <>", _SENDER, id="empty-address"),
        pytest.param("Shop <john@@example.com>", _SENDER, id="two-at-signs"),
        pytest.param("Shop <john..doe@example.com>", _SENDER, id="empty-local-part-atom"),
        pytest.param("Shop <john@example>", _SENDER, id="domain-without-dot"),
        pytest.param("Shop <john@exa_mple.com>", _SENDER, id="domain-underscore"),
        pytest.param("Shop <john@-example.com>", _SENDER, id="domain-label-hyphen"),
        pytest.param("Shop <zoë@example.com>", _ASCII_LOCAL, id="non-ascii-local-part"),
    ],
)
def test_email_malformed_sender_is_refused_saying_what_is_allowed(sender: str, problem: str) -> None:
    assert _problem({"to": ["ada@example.com"], "from": sender}) == f"from: {problem}"


@pytest.mark.parametrize(
    ("recipient", "problem"),
    [
        pytest.param("Ada <ada@example.com>", _ADDRESS, id="name-and-address"),
        pytest.param("ada@example", _ADDRESS, id="domain-without-dot"),
        pytest.param("ada..b@example.com", _ADDRESS, id="empty-local-part-atom"),
        pytest.param("zoë@example.com", _ASCII_LOCAL, id="non-ascii-local-part"),
    ],
)
def test_email_malformed_recipient_is_refused_saying_what_is_allowed(recipient: str, problem: str) -> None:
    assert _problem({"to": [recipient], "from": "noreply@example.com"}) == f"to[0]: {problem}"


def test_email_malformed_sender_is_permanent_and_sends_nothing(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, target={"to": ["ada@example.com"], "from": "Doe, John <john@example.com>"})

    assert (raised.value.reason, client.calls) == ("invalid target: from", [])


# --- sending what SES takes: 7-bit ASCII addresses (RFC 2047 names, IDNA domains) --------------------------------


def test_email_non_ascii_sender_name_is_sent_as_encoded_words(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    _send(resources, target={"to": ["ada@example.com"], "from": "Zoë Café <notify@example.com>"})

    assert client.calls[0]["Source"] == "=?utf-8?b?Wm/DqyBDYWbDqQ==?= <notify@example.com>"


def test_email_non_ascii_sender_keeps_the_target_as_written(resources: ChannelResources) -> None:
    target = {"to": ["ada@bücher.example"], "from": "Zoë <notify@bücher.example>"}

    _send(resources, target=target)

    assert target == {"to": ["ada@bücher.example"], "from": "Zoë <notify@bücher.example>"}


def test_email_long_non_ascii_sender_name_is_split_into_encoded_words_of_75_characters(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    name = "株式会社サンプル通知センター・お客様サポート窓口"

    _send(resources, target={"to": ["ada@example.com"], "from": f"{name} <notify@example.com>"})

    source = client.calls[0]["Source"]
    words = source.removesuffix(" <notify@example.com>").split(" ")
    assert len(words) > 1
    assert all(len(word) <= 75 and word.startswith("=?utf-8?b?") for word in words)
    assert str(make_header(decode_header(source.removesuffix(" <notify@example.com>")))) == name


def test_email_obsolete_dotted_sender_name_is_sent_quoted(
    resources: ChannelResources, client: FakeSendingClient
) -> None:
    _send(resources, target={"to": ["ada@example.com"], "from": "John Q. Public <john@example.com>"})

    assert client.calls[0]["Source"] == '"John Q. Public" <john@example.com>'


def test_email_non_ascii_domains_are_sent_as_punycode(resources: ChannelResources, client: FakeSendingClient) -> None:
    target = {"to": ["ada@bücher.example", "bob@example.com"], "from": "Shop <shop@Bücher.example>"}

    _send(resources, target=target)

    call = client.calls[0]
    assert (call["Source"], call["Destination"]) == (
        "Shop <shop@xn--bcher-kva.example>",
        {"ToAddresses": ["ada@xn--bcher-kva.example", "bob@example.com"]},
    )


@pytest.mark.parametrize("domain", ["bücher..example", "xn--zz.example", "b\u00fccher.-example"])
def test_email_domain_idna_cannot_encode_is_refused(domain: str) -> None:
    assert _problem({"to": [f"ada@{domain}"], "from": "noreply@example.com"}) == f"to[0]: {_ADDRESS}"


_NAME_CHARACTERS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))


@settings(max_examples=300, deadline=None)
@given(name=st.text(_NAME_CHARACTERS, min_size=1, max_size=80).filter(lambda name: name.strip() == name))
def test_email_any_quoted_sender_name_reaches_ses_as_ascii_that_reads_back_as_written(name: str) -> None:
    client = FakeSendingClient()
    resources = ChannelResources(http=None, aws_client=lambda _: client, telegram_api_base="")  # type: ignore[arg-type]
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    _send(resources, target={"to": ["ada@example.com"], "from": f"{quoted} <notify@example.com>"})

    source = client.calls[0]["Source"]
    name_read, address_read = parseaddr(source)
    assert source.isascii()
    assert (str(make_header(decode_header(name_read))), address_read) == (name, "notify@example.com")
