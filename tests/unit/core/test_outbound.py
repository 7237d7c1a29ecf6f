"""Unit tests of the outbound HTTP guard and send deadline (core/outbound.py); names are resolved by fakes, nothing
is sent."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from core.errors import BlockedTargetError
from core.outbound import (
    NameResolutionError,
    OutboundSession,
    check_address,
    check_url,
    send_deadline,
    send_seconds,
)


def _resolver(*addresses: str):
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.10.10",
        "fe80::1",
        "fc00::1",
        "0.0.0.0",
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        # 6to4 forms of 127.0.0.1, 10.0.0.1 and 169.254.169.254, and a site-local address: Python counts them global.
        "2002:7f00:1::",
        "2002:a00:1::",
        "2002:a9fe:a9fe::",
        "fec0::1",
    ],
)
def test_check_address_private_address_is_refused(address: str) -> None:
    with pytest.raises(BlockedTargetError):
        check_address(address, allow_private=False)


# ::ffff:93.184.216.34: judged as its IPv4 address (Python before 3.11.10 counts all of ::ffff:0:0/96 private).
@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8", "2002:5db8:d822::", "::ffff:93.184.216.34"],
)
def test_check_address_public_address_is_allowed(address: str) -> None:
    check_address(address, allow_private=False)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "::1"])
def test_check_address_private_address_allowed_by_setting(address: str) -> None:
    check_address(address, allow_private=True)


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "2002:a9fe:a9fe::"])
def test_check_address_metadata_refused_even_when_private_allowed(address: str) -> None:
    with pytest.raises(BlockedTargetError):
        check_address(address, allow_private=True)


def test_check_url_name_resolving_to_private_address_is_refused() -> None:
    with pytest.raises(BlockedTargetError):
        check_url("https://hooks.example.com/x", False, _resolver("93.184.216.34", "10.1.2.3"))


def test_check_url_name_resolving_to_public_addresses_is_allowed() -> None:
    check_url("https://hooks.example.com/x", False, _resolver("93.184.216.34"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "https:///nohost",
        "https://user:pw@example.com/",
        # Port 0 was checked as the scheme's default, then connected to, and failed for now at every retry.
        "http://example.com:0/x",
        "https://example.com:99999/x",
    ],
)
def test_check_url_unsupported_url_is_refused(url: str) -> None:
    with pytest.raises(BlockedTargetError):
        check_url(url, False, _resolver("93.184.216.34"))


def _failing(error: OSError) -> Callable[[str, int], list[str]]:
    def fail(host: str, port: int) -> list[str]:
        raise error

    return fail


@pytest.mark.parametrize(
    "code", [socket.EAI_NONAME, socket.EAI_NODATA, socket.EAI_SERVICE], ids=["no-such-name", "no-address", "service"]
)
def test_check_url_name_that_does_not_resolve_is_refused(code: int) -> None:
    with pytest.raises(BlockedTargetError, match="does not resolve"):
        check_url("https://nowhere.example/", False, _failing(socket.gaierror(code, "Name or service not known")))


@pytest.mark.parametrize(
    "error",
    [
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure in name resolution"),
        OSError("resolver unreachable"),
    ],
    ids=["again", "fail", "os-error"],
)
def test_check_url_resolver_failing_for_now_is_a_connection_failure_not_a_refusal(error: OSError) -> None:
    """A DNS timeout or SERVFAIL once failed the delivery for good: it is retried, as a refused connection is."""
    with pytest.raises(NameResolutionError) as raised:
        check_url("https://hooks.example.com/secret-path", False, _failing(error))

    assert isinstance(raised.value, requests.ConnectionError)
    assert not isinstance(raised.value, BlockedTargetError)
    assert "secret-path" not in str(raised.value)
    assert raised.value.__cause__ is None


def _redirect(url: str, location: str, status: int = 307) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response.request = requests.Request("POST", url).prepare()
    response.headers["Location"] = location
    response._content = b""
    response._content_consumed = True  # type: ignore[attr-defined]
    return response


def test_session_redirect_to_other_host_is_refused() -> None:
    session = OutboundSession(1, 1, resolve=_resolver("93.184.216.34"))

    with pytest.raises(BlockedTargetError):
        session.get_redirect_target(_redirect("https://a.example/x", "https://b.example/y"))


def test_session_redirect_on_same_host_is_followed() -> None:
    session = OutboundSession(1, 1, resolve=_resolver("93.184.216.34"))

    assert session.get_redirect_target(_redirect("https://a.example/x", "/y")) == "/y"


@pytest.mark.parametrize("status", [301, 302, 303])
def test_session_redirect_that_would_turn_the_post_into_a_get_is_refused(status: int) -> None:
    session = OutboundSession(1, 1, resolve=_resolver("93.184.216.34"))

    with pytest.raises(BlockedTargetError, match=f"redirected \\(HTTP {status}\\), which would drop the body"):
        session.get_redirect_target(_redirect("https://a.example/x", "/y", status))


@pytest.mark.parametrize("status", [307, 308])
def test_session_redirect_keeping_the_post_is_followed(status: int) -> None:
    session = OutboundSession(1, 1, resolve=_resolver("93.184.216.34"))

    assert session.get_redirect_target(_redirect("https://a.example/x", "/y", status)) == "/y"


def test_session_ignores_proxy_environment() -> None:
    assert OutboundSession(1, 1).trust_env is False


# --- URLs that do not parse are blocked targets, named without the URL ----------------------------------------------

UNPARSABLE = [
    pytest.param("http://exa\uff0fmple.com/services/T0/B0/url-secret", id="nfkc-netloc"),
    pytest.param("https://hooks.slack.example\uff0fservices\uff0furl-secret", id="nfkc-whole-path"),
    pytest.param("http://[::1/services/url-secret", id="unclosed-ipv6"),
    pytest.param("http://hooks.example:99999/url-secret", id="port-out-of-range"),
    pytest.param("http://hooks.example:8o/url-secret", id="port-not-a-number"),
    pytest.param("http://a..example/url-secret", id="empty-label"),
    pytest.param(f"http://{'a' * 64}.example/url-secret", id="label-too-long"),
    pytest.param("http://hooks.exa\udc80mple/url-secret", id="lone-surrogate"),
]


def _real_resolver_refusing(host: str, port: int) -> list[str]:
    # The encoding a real resolution does, without a network: names that cannot be encoded fail as they would.
    host.encode("idna")
    return ["93.184.216.34"]


@pytest.mark.parametrize("url", UNPARSABLE)
def test_check_url_unparsable_url_is_blocked_without_naming_it(url: str) -> None:
    with pytest.raises(BlockedTargetError) as raised:
        check_url(url, False, _real_resolver_refusing)

    assert "url-secret" not in str(raised.value)
    assert "example" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_check_url_name_that_cannot_be_encoded_for_resolution_is_blocked() -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise UnicodeError("label empty or too long")

    with pytest.raises(BlockedTargetError):
        check_url("https://hooks.example/x", False, resolve)


@pytest.mark.parametrize("location", ["http://[::1/elsewhere", "http://a\uff0fb.example/x", "http://a.example:99999/x"])
def test_session_redirect_to_unparsable_url_is_blocked(location: str) -> None:
    session = OutboundSession(1, 1, resolve=_resolver("93.184.216.34"))

    # http.client hands header values over as latin-1 text; requests turns the bytes back into UTF-8.
    sent = location.encode().decode("latin-1")

    with pytest.raises(BlockedTargetError) as raised:
        session.get_redirect_target(_redirect("https://a.example/x", sent))

    assert "elsewhere" not in str(raised.value)


@pytest.mark.parametrize("url", UNPARSABLE)
def test_session_request_to_unparsable_url_is_blocked(url: str) -> None:
    session = OutboundSession(1, 1, resolve=_real_resolver_refusing)

    with pytest.raises(BlockedTargetError):
        session.post(url, data=b"{}")


# --- the send deadline ----------------------------------------------------------------------------------------------


def test_send_seconds_is_the_connect_plus_the_read_timeout() -> None:
    # consumer/handler.py latest_start reserves this sum (plus a margin) for a send: the defaults are 3.05 s and 10 s.
    assert send_seconds((3.05, 10.0)) == pytest.approx(13.05)


def test_send_seconds_of_one_number_counts_it_for_connect_and_read() -> None:
    assert send_seconds(2) == 4.0


def test_send_deadline_inside_another_keeps_the_outer_one() -> None:
    with send_deadline((1.0, 1.0)) as outer, send_deadline((60.0, 60.0)) as inner:
        assert inner == outer


def test_send_deadline_ends_with_its_block() -> None:
    with send_deadline((1.0, 1.0)) as first:
        pass
    with send_deadline((60.0, 60.0)) as second:
        assert second - first > 100
