"""Unit tests of what channels share (core/channels/base.py): retry hints, keys and limits, settings parsing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import requests
from botocore.exceptions import ClientError

from core.channels.base import (
    Limit,
    aws_failure,
    classify_status,
    destination_key,
    limit_at,
    parse_settings,
    post,
    redact,
    retry_after_seconds,
    short_text,
    truncate,
    url_problem,
)
from core.channels.telegram import TelegramCredentials
from core.errors import BlockedTargetError, PermanentDeliveryError, RetryableDeliveryError

NOW = datetime(2026, 11, 21, 20, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sat, 21 Nov 2026 20:01:30 GMT", 90.0),
        ("Sat, 21 Nov 2026 19:00:00 GMT", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("nan", None),
        (None, None),
        # A year no platform time holds: OverflowError made the 429 an internal error, counted as an attempt.
        ("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None),
    ],
)
def test_retry_after_seconds_parses_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, lambda: NOW) == seconds


def test_truncate_marks_cut_with_ellipsis() -> None:
    assert truncate("abcdef", 4) == "abc…"


def test_truncate_short_text_unchanged() -> None:
    assert truncate("abc", 4) == "abc"


def test_destination_key_is_kind_and_32_hex_of_sha256() -> None:
    digest = hashlib.sha256(b"a\nb").hexdigest()[:32]

    assert destination_key("slack", "a", "b") == f"slack:{digest}"


def test_destination_key_parts_boundary_changes_key() -> None:
    assert destination_key("k", "ab", "c") != destination_key("k", "a", "bc")


def test_destination_key_holds_no_part_in_clear() -> None:
    assert "hunter2" not in destination_key("telegram-bot", "123:hunter2")


@pytest.mark.parametrize(("per_second", "cost"), [(0.0, 1.0), (-1.0, 1.0), (float("inf"), 1.0), (1.0, 0.0)])
def test_rate_limit_non_positive_or_infinite_raises(per_second: float, cost: float) -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        Limit("k", per_second, cost)


@pytest.mark.parametrize(
    ("declared", "given", "expected"),
    [
        (None, None, []),
        (1.0, None, [Limit("k", 1.0)]),
        (None, 5.0, [Limit("k", 5.0)]),
        (1.0, 0.5, [Limit("k", 0.5)]),
        (1.0, 5.0, [Limit("k", 1.0)]),
    ],
)
def test_limit_at_keeps_the_stricter_rate(declared: float | None, given: float | None, expected: list) -> None:
    assert limit_at("k", declared, given) == expected


def test_parse_settings_invalid_names_fields_not_values() -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        parse_settings(TelegramCredentials, {"bot_token": "", "extra": "hunter2"}, "credentials")

    assert raised.value.reason == "invalid credentials: bot_token, extra"


@pytest.mark.parametrize(
    "module",
    ["core.channels", "core.channels.base", "core.channels.slack", "core.channels.telegram", "core.channels.webhook"],
)
def test_channels_import_loads_no_http_stack(module: str) -> None:
    # The publish Lambda imports channels to render; requests must load only when a channel posts.
    code = f"import sys, {module}; sys.exit('requests' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


class _Session:
    """An outbound session whose every request raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def post(self, url: str, **kwargs: object) -> None:
        raise self._error


@pytest.mark.parametrize(
    "error",
    [
        ValueError("netloc 'hooks.example\uff0fservices\uff0furl-secret' contains invalid characters"),
        UnicodeError("encoding with 'idna' codec failed (UnicodeError: label empty or too long)"),
    ],
    ids=["value-error", "unicode-error"],
)
def test_post_url_parse_error_is_a_blocked_target_named_without_the_url(error: Exception) -> None:
    with pytest.raises(BlockedTargetError) as raised:
        post(_Session(error), "http://hooks.example\uff0fservices\uff0furl-secret", "slack")  # type: ignore[arg-type]

    assert raised.value.reason == "slack: invalid target URL"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.example/services/T0/B0/x",
        "http://127.0.0.1:3001/webhook/erp?rate=2",
        "https://[2001:db8::1]:8443/hook",
        "https://bücher.example/hook",
        "HTTPS://Hooks.Example/x#frag",
    ],
)
def test_url_problem_usual_url_has_none(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://hooks.example/url-secret", "must be an http(s) URL with a host"),
        ("https:///url-secret", "must be an http(s) URL with a host"),
        ("hooks.example/url-secret", "must be an http(s) URL with a host"),
        ("http://exa\uff0fmple.com/url-secret", "is not a valid URL"),
        ("http://[::1/url-secret", "is not a valid URL"),
        ("http://[v1.x]/url-secret", "has an invalid host name"),
        ("http://hooks.example:99999/url-secret", "has an invalid port"),
        ("http://hooks.example:8o/url-secret", "has an invalid port"),
        ("http://hooks.example:0/url-secret", "has an invalid port"),
        ("http://a..example/url-secret", "has an invalid host name"),
        (f"http://{'a' * 64}.example/url-secret", "has an invalid host name"),
        ("http://user:pw@hooks.example/url-secret", "must not carry user information"),
        ("http://hooks.example/url-secret\n", "must not contain spaces or control characters"),
        ("http://hooks.example/url secret", "must not contain spaces or control characters"),
        ("http://hooks.exa\u0000mple/url-secret", "must not contain spaces or control characters"),
        ("http://hooks.exa\udc80mple/url-secret", "must not contain spaces or control characters"),
        ("http://\uff11\uff12\uff17.0.0.1/url-secret", "is not a URL an HTTP request can be made to"),
        ("http://[::1]]/url-secret", "is not a URL an HTTP request can be made to"),
    ],
)
def test_url_problem_names_the_problem_without_the_url(url: str, problem: str) -> None:
    assert url_problem(url) == problem


def _answer(body: bytes, content_type: str | None = None) -> requests.Response:
    """Return an answer as requests builds it: the encoding is the charset its Content-Type names, if any."""
    response = requests.Response()
    response.status_code = 400
    response._content = body
    if content_type:
        response.headers["Content-Type"] = content_type
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response


def test_short_text_decodes_utf_8_by_default_on_one_line() -> None:
    answer = _answer('{"error":\n  "déjà vu"}'.encode(), "application/json")

    assert short_text(answer) == '{"error": "déjà vu"}'


SECRET = "123456789:AAE-tokenSecret_xyz"


@pytest.mark.parametrize(
    "quoted",
    [
        SECRET,
        SECRET.upper(),
        "123456789%3AAAE-tokenSecret_xyz",
        "123456789%3aAAE%2DtokenSecret_xyz",  # over-encoded, in lower case
        "123456789%253AAAE-tokenSecret_xyz",  # encoded twice
    ],
    ids=["plain", "upper", "quoted", "over-quoted", "quoted-twice"],
)
def test_redact_hides_a_secret_however_an_answer_quotes_it(quoted: str) -> None:
    assert redact(f"no route for /bot{quoted}/sendMessage", [SECRET]) == "no route for /bot***/sendMessage"


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        ("Ab3%2BkQ9%2Fz7Xw%3D%3D", "No hook at /hooks/Ab3+kQ9/z7Xw=="),  # the URL's part encoded, the page's decoded
        ("Ab3%2BkQ9%2Fz7Xw%3D%3D", "No hook at /hooks/Ab3%2BkQ9%2Fz7Xw%3D%3D"),
        ("abc%41def123", "bad token abc%41def123"),  # a literal %41 in the secret
    ],
    ids=["encoded-secret-decoded-text", "encoded-both", "percent-in-secret"],
)
def test_redact_hides_a_secret_written_encoded(secret: str, text: str) -> None:
    assert "***" in redact(text, [secret])
    for part in ("kQ9", "z7Xw", "def123"):
        assert part not in redact(text, [secret])


def test_short_text_with_nothing_to_hide_keeps_the_answer_as_it_came() -> None:
    assert short_text(_answer(b"bad path %2Fx%20y", "text/plain")) == "bad path %2Fx%20y"


def test_short_text_hides_a_secret_past_the_cut_of_an_answer_quoting_it_many_times() -> None:
    # Cut before it was redacted, the copy across the cut was left; its rest moved into the text once the earlier
    # copies shrank to ***.
    url = f"https://hooks.example/bot{SECRET}/x"
    answer = _answer((("see " + url + " ") * 12 + "end").encode(), "text/plain")

    text = short_text(answer, 100, hide=[url, SECRET])

    assert "tokenSecret" not in text
    assert text.startswith("see *** see ***")


def test_short_text_decodes_the_charset_the_answer_names() -> None:
    assert short_text(_answer("café".encode("latin-1"), "text/plain; charset=latin-1")) == "café"


def test_short_text_unknown_charset_falls_back_to_utf_8() -> None:
    assert short_text(_answer("café".encode(), "text/plain; charset=no-such-charset")) == "café"


def test_short_text_cut_inside_a_character_stays_text() -> None:
    assert short_text(_answer("é".encode() * 300, "application/json"), limit=5) == "ééééé"


def test_short_text_of_an_empty_answer_is_empty() -> None:
    assert short_text(_answer(b"")) == ""


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=idna", "text/plain; charset=undefined", "text/plain; charset=punycode"],
    ids=["idna", "undefined", "punycode"],
)
def test_short_text_codec_that_is_not_a_text_encoding_falls_back_to_utf_8(content_type: str) -> None:
    # These codecs raise UnicodeError whatever the errors handler: raised here, it came after a send that happened.
    assert short_text(_answer("reçu, café".encode(), content_type)) == "reçu, café"


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("code", "rate_limited"),
    [
        pytest.param("KMSThrottling", True, id="sns-kms-throttling"),
        pytest.param("KMSThrottlingException", True, id="kms-throttling-exception"),
        pytest.param("AccountSendingPausedException", False, id="ses-account-paused"),
        pytest.param("ConfigurationSetSendingPausedException", False, id="ses-configuration-set-paused"),
    ],
)
def test_aws_failure_not_now_400_is_retryable(code: str, rate_limited: bool) -> None:
    error = aws_failure(_client_error(code), "push")

    assert isinstance(error, RetryableDeliveryError)
    assert (error.reason, error.rate_limited) == (f"push: {code} (m)", rate_limited)


def test_aws_failure_message_rejected_stays_permanent() -> None:
    error = aws_failure(_client_error("MessageRejected"), "email")

    assert isinstance(error, PermanentDeliveryError)
    assert (type(error), error.reason) == (PermanentDeliveryError, "email: MessageRejected (m)")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Not Found: /bot123456789:AAE-tokenSec…", "Not Found: ***"),  # cut short
        ("invalid token secret AAE-tokenSecret_xyz", "invalid token secret ***"),  # the part after ':'
        ("bad token 'aae-TOKENSECRET'", "bad token '***'"),  # a part, in another case
        ("unknown bot 1234567", "unknown bot 1234567"),  # fewer than SECRET_RUN characters of it: left
    ],
    ids=["truncated", "after-colon", "part-other-case", "short-run"],
)
def test_redact_hides_a_word_quoting_part_of_a_secret(text: str, shown: str) -> None:
    assert redact(text, [SECRET]) == shown


def test_redact_leaves_the_words_of_an_answer_that_quotes_no_secret() -> None:
    text = "Bad Request: chat not found (see https://core.telegram.org/bots/api)"

    assert redact(text, [SECRET, "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/xoxbsecretvalue1"]) == text


@pytest.mark.parametrize("status", [102, 103])
def test_classify_status_interim_answer_is_an_unknown_outcome_tried_again(status: int) -> None:
    # http.client skips only 100 Continue: a 102 or 103 before the receiver's 200 reaches us as the answer.
    answer = _answer(b"")
    answer.status_code = status

    with pytest.raises(RetryableDeliveryError, match=rf"^webhook: HTTP {status} \(an interim answer"):
        classify_status(answer, "webhook")
