"""Integration tests of the webhook channel (core/channels/webhook.py) against a loopback receiver."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.channels import ChannelResources, DeliveryReceipt
from core.channels.webhook import DELIVERY_KEY_HEADER, WebhookChannel
from core.errors import BlockedTargetError, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from core.models import Content
from core.outbound import OutboundSession
from tests.support.receivers import Answer, Receiver, running_receiver

SECRET = "webhook-secret-2b7e-0123456789"


def _send(
    resources: ChannelResources, url: str, content: Content | None = None, secret: str | None = None
) -> DeliveryReceipt:
    channel = WebhookChannel(resources, clock=lambda: 1_800_000_000.0)
    credentials = {"signing_secret": secret} if secret else None
    return channel.send(
        content or Content(text="hi"), {"url": url}, credentials, notification_id="n-1", delivery_key="k-1"
    )


def test_webhook_posts_object_model_as_json(resources: ChannelResources, receiver: Receiver) -> None:
    _send(resources, f"{receiver.url}/hook", Content(data={"order": 42, "items": ["a"]}))

    assert receiver.requests[0].json() == {"order": 42, "items": ["a"]}


def test_webhook_model_with_one_variable_posts_the_value_with_its_json_type(
    resources: ChannelResources, receiver: Receiver
) -> None:
    model = {"order": "$order", "total": "$total", "paid": "${paid}", "label": "Total: $total"}
    content = WebhookChannel.render(model, {"order": "A-1", "total": 42.5, "paid": True})

    _send(resources, f"{receiver.url}/hook", content)

    assert receiver.requests[0].body == b'{"order":"A-1","total":42.5,"paid":true,"label":"Total: 42.5"}'
    assert receiver.requests[0].json() == {"order": "A-1", "total": 42.5, "paid": True, "label": "Total: 42.5"}


def test_webhook_carries_notification_id_and_timestamp(resources: ChannelResources, receiver: Receiver) -> None:
    _send(resources, f"{receiver.url}/hook")

    headers = receiver.requests[0].headers
    assert (headers["X-Notification-Id"], headers["X-Notification-Timestamp"]) == ("n-1", "1800000000")


def test_webhook_carries_delivery_key(resources: ChannelResources, receiver: Receiver) -> None:
    _send(resources, f"{receiver.url}/hook")

    assert receiver.requests[0].headers[DELIVERY_KEY_HEADER] == "k-1"


def test_webhook_without_secret_sends_no_signature(resources: ChannelResources, receiver: Receiver) -> None:
    _send(resources, f"{receiver.url}/hook")

    assert "X-Notification-Signature" not in receiver.requests[0].headers


def test_webhook_signature_verifies_over_timestamp_and_raw_body(
    resources: ChannelResources, receiver: Receiver
) -> None:
    _send(resources, f"{receiver.url}/hook", Content(data={"order": 42}), SECRET)

    request = receiver.requests[0]
    signed = request.headers["X-Notification-Timestamp"].encode() + b"." + request.body
    expected = "v1=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Notification-Signature"], expected)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_webhook_any_2xx_is_success(resources: ChannelResources, receiver: Receiver, status: int) -> None:
    receiver.script(Answer(status, b""))

    receipt = _send(resources, f"{receiver.url}/hook")

    assert receipt == DeliveryReceipt()


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Answer(500, b""), RetryableDeliveryError),
        (Answer(503, b""), RetryableDeliveryError),
        (Answer(429, b""), RetryableDeliveryError),
        (Answer(400, b""), PermanentDeliveryError),
        (Answer(401, b""), PermanentDeliveryError),
        (Answer(404, b""), PermanentDeliveryError),
        (Answer(410, b""), PermanentDeliveryError),
        (Answer(408, b""), RetryableDeliveryError),
        (Answer(425, b""), RetryableDeliveryError),
        (Answer(delay=1.5), RetryableDeliveryError),
        (Answer(reset=True), RetryableDeliveryError),
    ],
    ids=["500", "503", "429", "400", "401", "404", "410", "408", "425", "slow", "reset"],
)
def test_webhook_answer_is_classified(
    resources: ChannelResources, receiver: Receiver, answer: Answer, kind: type[DeliveryError]
) -> None:
    receiver.script(answer)

    with pytest.raises(DeliveryError) as raised:
        _send(resources, f"{receiver.url}/hook")

    assert type(raised.value) is kind


def test_webhook_429_carries_retry_after(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(429, b"", headers={"Retry-After": "90"}))

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources, f"{receiver.url}/hook")

    assert raised.value.retry_after == 90


def test_webhook_connection_refused_is_retryable(resources: ChannelResources) -> None:
    with running_receiver() as stopped:
        url = f"{stopped.url}/hook"

    with pytest.raises(RetryableDeliveryError):
        _send(resources, url)


@pytest.fixture
def self_signed_receiver(tmp_path: Path) -> Iterator[str]:
    """An HTTPS receiver on loopback whose certificate no CA issued (as one self-signed, or expired)."""
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_webhook_certificate_not_trusted_is_said_so(resources: ChannelResources, self_signed_receiver: str) -> None:
    # It was "connection failed", retried for a day: nothing said that the receiver's certificate is what to fix.
    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources, self_signed_receiver)

    assert raised.value.reason == "webhook: TLS handshake failed (certificate not trusted: self-signed certificate)"


def test_webhook_https_url_to_a_plain_http_receiver_names_openssls_reason(
    resources: ChannelResources, receiver: Receiver
) -> None:
    # An ssl.SSLError's ``reason`` is a string: walked as an exception, naming the failure raised AttributeError.
    url = receiver.url.replace("http://", "https://") + "/hook"

    with pytest.raises(RetryableDeliveryError) as raised:
        _send(resources, url)

    assert raised.value.reason == "webhook: TLS handshake failed (no TLS connection: WRONG_VERSION_NUMBER)"


def test_slack_tls_failure_keeps_the_webhook_secret_out_of_the_error_and_its_chain(
    resources: ChannelResources, receiver: Receiver
) -> None:
    """The consumer logs an exception it did not expect with its traceback: the AttributeError that escaped the TLS
    naming had the requests error, whose text holds the webhook's path, as its context."""
    import traceback

    from core.channels.slack import SlackChannel

    credentials = {"webhook_url": receiver.url.replace("http://", "https://") + "/services/T0/B0/url-secret-9f"}

    with pytest.raises(RetryableDeliveryError) as raised:
        SlackChannel(resources).send(Content(text="hi"), {}, credentials, notification_id="n-1", delivery_key="k-1")

    assert "url-secret-9f" not in "".join(traceback.format_exception(raised.value))


def test_webhook_same_host_redirect_is_followed(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(307, b"", headers={"Location": "/moved"}), Answer(200))

    _send(resources, f"{receiver.url}/hook")

    assert [request.path for request in receiver.requests] == ["/hook", "/moved"]


@pytest.mark.parametrize("status", [301, 302, 303])
def test_webhook_redirect_that_would_resend_as_a_get_is_refused_and_never_followed(
    resources: ChannelResources, receiver: Receiver, status: int
) -> None:
    receiver.script(Answer(status, b"", headers={"Location": "/landing"}), Answer(200))

    with pytest.raises(BlockedTargetError, match=f"redirected \\(HTTP {status}\\)"):
        _send(resources, f"{receiver.url}/hook")

    # Followed, it was a GET without the body, answered 200, and counted as delivered.
    assert [(request.method, request.path) for request in receiver.requests] == [("POST", "/hook")]


def test_webhook_redirect_to_other_host_is_refused(resources: ChannelResources, receiver: Receiver) -> None:
    other = receiver.url.replace("127.0.0.1", "localhost")
    receiver.script(Answer(307, b"", headers={"Location": f"{other}/elsewhere"}))

    with pytest.raises(BlockedTargetError):
        _send(resources, f"{receiver.url}/hook")

    assert [request.path for request in receiver.requests] == ["/hook"]


def test_webhook_name_resolution_failing_for_now_is_retryable_and_never_sent(receiver: Receiver) -> None:
    """``getaddrinfo``'s EAI_AGAIN (DNS timing out, SERVFAIL) once made the delivery `failed` after one attempt."""

    def resolver_down(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    session = OutboundSession(0.5, 0.5, allow_private=True, resolve=resolver_down)
    resources = ChannelResources(http=session, aws_client=lambda _: None, telegram_api_base="")

    with pytest.raises(RetryableDeliveryError, match="could not be resolved now") as raised:
        _send(resources, f"{receiver.url}/hook")

    assert not isinstance(raised.value, PermanentDeliveryError)
    assert receiver.requests == []


def test_webhook_loopback_target_refused_by_guard(receiver: Receiver) -> None:
    guarded = ChannelResources(
        http=OutboundSession(0.5, 0.5, allow_private=False), aws_client=lambda _: None, telegram_api_base=""
    )

    with pytest.raises(BlockedTargetError):
        _send(guarded, f"{receiver.url}/hook")

    assert receiver.requests == []


def test_webhook_name_resolving_to_loopback_refused_at_connection(receiver: Receiver) -> None:
    # The resolver used before the request says "public"; the connection still finds itself on loopback.
    session = OutboundSession(0.5, 0.5, allow_private=False, resolve=lambda host, port: ["93.184.216.34"])
    guarded = ChannelResources(http=session, aws_client=lambda _: None, telegram_api_base="")

    with pytest.raises(BlockedTargetError):
        _send(guarded, f"{receiver.url}/hook")

    assert receiver.requests == []


def test_webhook_invalid_url_is_permanent(resources: ChannelResources) -> None:
    with pytest.raises(PermanentDeliveryError):
        _send(resources, "ftp://example.com/hook")


# --- what a receiver runs: the code of README.md, "Verifying a webhook" ----------------------------------------------

README = Path(__file__).resolve().parents[4] / "README.md"


def _readme_verify() -> Callable[..., bool]:
    """Return the ``verify`` function of the README's verification snippet, run as a receiver would copy it."""
    text = README.read_text()
    section = text[text.index("### Verifying a webhook") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    namespace: dict[str, Any] = {}
    exec(compile(code[: code.index("```")], "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    verify: Callable[..., bool] = namespace["verify"]
    return verify


def _signed_request(resources: ChannelResources, receiver: Receiver, delivery_key: str = "erp.v2") -> Any:
    channel = WebhookChannel(resources)  # the real clock: the snippet refuses stale timestamps
    credentials = {"signing_secret": SECRET}
    channel.send(
        Content(data={"order": 42}),
        {"url": f"{receiver.url}/hook"},
        credentials,
        notification_id="n-1",
        delivery_key=delivery_key,
    )
    return receiver.requests[-1]


def test_webhook_readme_verifier_accepts_a_real_request(resources: ChannelResources, receiver: Receiver) -> None:
    request = _signed_request(resources, receiver)

    assert _readme_verify()(SECRET, request.headers, request.body) is True


@pytest.mark.parametrize(
    "replayed",
    [
        pytest.param({"X-Notification-Id": "n-2"}, id="other-notification-id"),
        pytest.param({"X-Delivery-Key": "erp.v3"}, id="other-delivery-key"),
        pytest.param({"X-Notification-Id": "n-1.erp", "X-Delivery-Key": "v2"}, id="dot-moved-from-key-to-id"),
        pytest.param({"X-Notification-Timestamp": "1800000000"}, id="other-timestamp"),
    ],
)
def test_webhook_readme_verifier_refuses_a_replay_under_other_ids(
    resources: ChannelResources, receiver: Receiver, replayed: dict[str, str]
) -> None:
    request = _signed_request(resources, receiver)

    assert _readme_verify()(SECRET, {**request.headers, **replayed}, request.body) is False


def test_webhook_readme_verifier_refuses_another_body(resources: ChannelResources, receiver: Receiver) -> None:
    request = _signed_request(resources, receiver)

    assert _readme_verify()(SECRET, request.headers, request.body.replace(b"42", b"43")) is False


def test_webhook_readme_verifier_refuses_a_stale_request(resources: ChannelResources, receiver: Receiver) -> None:
    WebhookChannel(resources, clock=lambda: time.time() - 301).send(
        Content(text="hi"),
        {"url": f"{receiver.url}/hook"},
        {"signing_secret": SECRET},
        notification_id="n-1",
        delivery_key="k",
    )
    request = receiver.requests[-1]

    assert _readme_verify()(SECRET, request.headers, request.body) is False


@pytest.mark.parametrize("signature", ["", "v2=", "v2=ünicode", "v1=00"])
def test_webhook_readme_verifier_refuses_a_forged_signature_without_raising(
    resources: ChannelResources, receiver: Receiver, signature: str
) -> None:
    request = _signed_request(resources, receiver)
    headers = {**request.headers, "X-Notification-Signature-V2": signature}

    assert _readme_verify()(SECRET, headers, request.body) is False


# --- URLs that do not parse ------------------------------------------------------------------------------------------


def test_webhook_redirect_to_an_unparsable_location_is_blocked(resources: ChannelResources, receiver: Receiver) -> None:
    receiver.script(Answer(307, b"", headers={"Location": "http://[::1/elsewhere"}))

    with pytest.raises(BlockedTargetError) as raised:
        _send(resources, f"{receiver.url}/hook")

    assert "elsewhere" not in raised.value.reason


@pytest.mark.parametrize(
    "url",
    ["http://exa\uff0fmple.com/hooks/url-secret", "http://[::1/hooks/url-secret", "http://a..example/hooks/url-secret"],
)
def test_webhook_stored_url_that_does_not_parse_is_permanent_without_the_url(
    resources: ChannelResources, url: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        _send(resources, url)

    assert "url-secret" not in raised.value.reason
    assert "example" not in raised.value.reason
