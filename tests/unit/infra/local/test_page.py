"""Unit tests of the local page's data and rendering (infra/local/page.py), on fakes: no moto, no network."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import pytest

from infra.local.page import (
    LocalPage,
    MotoOutbox,
    SentLog,
    _delivery,
    _endpoint_platform,
    push_view,
    render_dead_letters,
    render_detail,
    render_email,
    render_message,
    render_purchases,
    render_push,
)
from infra.local.peers import Records

HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)">'
PUSH_MESSAGE = json.dumps(
    {
        "default": "Hello",
        "APNS": json.dumps({"aps": {"alert": "Hello"}}),
        "GCM": json.dumps({"notification": {"body": 'Hello "Ada" <b>'}}),
    }
)


class Elements(HTMLParser):
    """The elements of an HTML text, with their attributes."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    def tags(self) -> set[str]:
        """Every element name."""
        return {tag for tag, _ in self.found}

    def handlers(self) -> list[str]:
        """Every inline event handler attribute."""
        return [name for _, attrs in self.found for name in attrs if name.startswith("on")]


class FakeOutbox:
    """Email and push messages as ``MotoOutbox`` gives them."""

    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self.items = items or []
        self.scans = 0

    def scan(self) -> None:
        self.scans += 1

    def all(self) -> list[dict[str, Any]]:
        return list(self.items)


class FakeAdmin:
    """The admin API: answers from a table, records each call."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append((method, path, body))
        return self.answers[(method, path)]


def delivery(**fields: Any) -> dict[str, Any]:
    """A delivery as ``recent_notifications`` gives it."""
    return {
        "delivery_key": "hook",
        "integration": "hook",
        "type": "webhook",
        "status": "delivered",
        "attempts": 1,
        "last_error": None,
        "updated_at": "2026-01-02T10:00:01.500Z",
        "provider_message_id": None,
        "history": [{"at": "2026-01-02T10:00:01.500Z", "attempt": 1, "status": "delivered", "error": None}],
        "next_attempt_at": None,
        "redriven": 0,
        **fields,
    }


def notification(notification_id: str = "n-1", deliveries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A notification as ``recent_notifications`` gives it."""
    return {
        "notification_id": notification_id,
        "channel": "shop",
        "topic": "orders",
        "created_at": "2026-01-02T10:00:00.000Z",
        "deliveries": deliveries if deliveries is not None else [delivery()],
    }


def page(
    notifications: list[dict[str, Any]] | None = None,
    outbox: FakeOutbox | None = None,
    records: Records | None = None,
    **options: Any,
) -> LocalPage:
    """A page over fakes."""
    found = notifications if notifications is not None else []
    return LocalPage(records or Records(), outbox or FakeOutbox(), lambda: found, **options)


def body(answer: tuple[int, dict[str, list[str]], bytes]) -> str:
    return answer[2].decode()


@pytest.mark.parametrize(
    "item",
    [
        {"channel": "slack", "target": "chat", "text": HOSTILE},
        {"channel": "telegram", "target": f"chat {HOSTILE}", "text": HOSTILE},
        {"channel": "webhook", "target": HOSTILE, "text": json.dumps({"who": HOSTILE}), "notification_id": HOSTILE},
        {"channel": "sns", "target": "topic", "title": HOSTILE, "text": HOSTILE},
        {"channel": "email", "target": HOSTILE, "title": HOSTILE, "text": HOSTILE, "html": f"<p>{HOSTILE}</p>"},
        {"channel": "push", "target": "app", "text": PUSH_MESSAGE, "payload": push_view(PUSH_MESSAGE, "GCM")},
        {"channel": "slack", "target": "chat", "text": "ok", "status": HOSTILE, "time": HOSTILE},
    ],
    ids=["slack", "telegram", "webhook", "sns", "email", "push", "status-and-time"],
)
def test_render_message_hostile_values_in_every_channel_become_text(item: dict[str, Any]) -> None:
    rendered = render_message({"time": "2026-01-02T10:00:00.000Z", "status": 200, **item})

    elements = Elements(rendered)
    assert "script" not in elements.tags()
    assert "img" not in elements.tags()
    assert elements.handlers() == []


def test_render_message_slack_text_is_shown_as_sent() -> None:
    rendered = render_message({"channel": "slack", "time": "2026-01-02T10:00:00.000Z", "text": HOSTILE})

    assert html.escape(HOSTILE) in rendered


def test_render_email_html_part_is_framed_sandboxed_without_scripts() -> None:
    markup = f'<p style="color:red">Hi {HOSTILE}</p>'

    rendered = render_email({"text": "Hi there", "html": markup})

    frames = [attrs for tag, attrs in Elements(rendered).found if tag == "iframe"]
    assert len(frames) == 1
    assert frames[0]["sandbox"] == ""
    assert frames[0]["srcdoc"] == markup
    assert "script" not in Elements(rendered).tags()


def test_render_email_shows_the_text_part_as_text() -> None:
    rendered = render_email({"text": f"Hi {HOSTILE}", "html": None})

    assert f"<pre>Hi {html.escape(HOSTILE)}</pre>" in rendered
    assert "iframe" not in rendered


def test_push_view_decodes_the_endpoint_platform_payload_once() -> None:
    view = push_view(PUSH_MESSAGE, "GCM")

    assert view is not None
    assert view["platform"] == "GCM"
    assert view["message"] == {"notification": {"body": 'Hello "Ada" <b>'}}
    assert view["structure"]["APNS"] == {"aps": {"alert": "Hello"}}


def test_push_view_platform_without_payload_falls_back_to_default() -> None:
    view = push_view(PUSH_MESSAGE, "ADM")

    assert view is not None
    assert (view["platform"], view["message"]) == ("default", "Hello")


@pytest.mark.parametrize("message", ["plain text", "[1, 2]", '{"no": "default"}', "{not json"])
def test_push_view_message_that_is_no_sns_json_structure_is_none(message: str) -> None:
    assert push_view(message, "GCM") is None


def test_render_push_payload_reads_as_json_escaped_once() -> None:
    rendered = render_push({"text": PUSH_MESSAGE, "payload": push_view(PUSH_MESSAGE, "GCM")})

    first = rendered.split("<pre>", 1)[1].split("</pre>", 1)[0]
    shown = html.unescape(first)
    assert json.loads(shown) == {"notification": {"body": 'Hello "Ada" <b>'}}
    assert "\\\\" not in shown  # escaped twice, a quote would read \\\"


def test_endpoint_platform_reads_the_platform_of_an_endpoint_arn() -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/notify-app/5b0e7c5e-1c1d-4d3a-9a8f-2d1f4e5a6b7c"

    assert _endpoint_platform(arn) == "GCM"
    assert _endpoint_platform("arn:aws:sns:us-east-1:123456789012:topic-name") is None


def test_state_email_sent_time_comes_from_the_outbox() -> None:
    outbox = FakeOutbox([outbox_email(time="2026-01-02T10:00:01.200Z")])

    [email] = page([notification()], outbox).state()["channels"]["email"]

    assert (email["time"], email["time_source"]) == ("2026-01-02T10:00:01.200Z", "sent")


def test_state_email_without_sent_time_takes_its_delivery_ledger_time() -> None:
    delivered = delivery(type="email", provider_message_id="ses-1", updated_at="2026-01-02T10:00:01.300Z")
    outbox = FakeOutbox([outbox_email()])

    [email] = page([notification(deliveries=[delivered])], outbox).state()["channels"]["email"]

    assert (email["time"], email["time_source"], email["notification_id"]) == (
        "2026-01-02T10:00:01.300Z",
        "delivered",
        "n-1",
    )


def test_state_email_no_delivery_names_is_timed_when_first_seen() -> None:
    outbox = FakeOutbox([outbox_email(provider_message_id="ses-unknown")])

    [email] = page([notification()], outbox).state()["channels"]["email"]

    assert (email["time"], email["time_source"]) == ("2026-01-02T10:05:00.000Z", "seen")


def outbox_email(**fields: Any) -> dict[str, Any]:
    """An email as ``MotoOutbox`` gives it."""
    return {
        "channel": "email",
        "target": "ada@example.com",
        "title": "Hello",
        "text": "Hi",
        "html": None,
        "provider_message_id": "ses-1",
        "time": None,
        "first_seen": "2026-01-02T10:05:00.000Z",
        "status": 200,
        **fields,
    }


def test_state_webhook_record_names_its_notification_from_the_header() -> None:
    records = Records()
    records.add(
        {
            "time": "2026-01-02T10:00:02.000Z",
            "channel": "webhook",
            "target": "erp",
            "status": 200,
            "headers": {"X-Notification-Id": "n-1"},
            "body": {"order": "A-1"},
            "text": '{"order": "A-1"}',
        }
    )

    [hook] = page([notification()], records=records).state()["channels"]["webhook"]

    assert (hook["notification_id"], hook["time_source"]) == ("n-1", "received")
    assert json.loads(hook["text"]) == {"order": "A-1"}


def test_delivery_reads_a_ledger_entry_without_history_with_defaults() -> None:
    entry = SimpleNamespace(
        delivery_key="hook",
        integration="hook",
        type="webhook",
        status=SimpleNamespace(value="queued"),
        attempts=0,
        last_error=None,
        updated_at="",
    )

    row = _delivery(entry)

    assert (row["history"], row["next_attempt_at"], row["redriven"], row["status"]) == ([], None, 0, "queued")


def test_render_detail_shows_every_attempt_with_time_outcome_and_error() -> None:
    history = [
        {"at": "2026-01-02T10:00:01.000Z", "attempt": 1, "status": "retrying", "error": f"HTTP 503 {HOSTILE}"},
        {"at": "2026-01-02T10:00:03.000Z", "attempt": 2, "status": "dead", "error": "2 attempts made"},
        {"at": "2026-01-02T10:01:00.000Z", "attempt": 3, "status": "retrying", "error": "HTTP 503"},
    ]
    retrying = delivery(
        status="retrying", attempts=3, history=history, next_attempt_at="2026-01-02T10:01:02.000Z", redriven=1
    )

    rendered = render_detail("n-1", notification(deliveries=[retrying]), ([], None), [])

    rows = rendered.split('<table class="attempts">', 1)[1].split("</table>", 1)[0]
    assert rows.count('<tr class="redrive">') == 1
    assert rows.count("<td><time") == 3
    assert "HTTP 503 &lt;script&gt;" in rows
    assert "next attempt <time" in rendered
    assert "10:01:02.000" in rendered
    assert "redriven 1 time(s)" in rendered
    assert "script" not in Elements(rendered).tags()


def test_render_detail_next_attempt_is_shown_only_while_retrying() -> None:
    done = delivery(next_attempt_at="2026-01-02T10:01:02.000Z")

    rendered = render_detail("n-1", notification(deliveries=[done]), ([], None), [])

    assert "next attempt" not in rendered


def test_render_detail_unknown_notification_says_so() -> None:
    rendered = render_detail(HOSTILE, None, ([], None), [])

    assert "The ledger has no such notification." in rendered
    assert "script" not in Elements(rendered).tags()


def test_page_opened_notification_shows_its_log_lines_escaped() -> None:
    line = {
        "time": "2026-01-02T10:00:01.000Z",
        "level": "WARNING",
        "function": "deliver",
        "message": f"delivery will be retried {HOSTILE}",
        "correlation_id": "c-1",
        "fields": {"notification_id": "n-1", "reason": HOSTILE},
    }
    local = page([notification()], logs_for=lambda notification_id: [line] if notification_id == "n-1" else [])

    rendered = body(local.serve("/_local/", {"notification": "n-1"}))

    logs = rendered.split('<table class="logs">', 1)[1].split("</table>", 1)[0]
    assert "delivery will be retried &lt;script&gt;" in logs
    assert "notification_id" not in logs
    assert "script" not in Elements(rendered.split('<main id="main"', 1)[1]).tags()


def test_page_logs_route_serves_the_lines_as_json() -> None:
    line = {"time": "t", "level": "INFO", "function": "publish", "message": "m", "correlation_id": "c", "fields": {}}
    local = page(logs_for=lambda notification_id: [line])

    status, _, raw = local.serve("/_local/api/logs", {"notification_id": "n-1"})

    assert status == 200
    assert json.loads(raw) == {"notification_id": "n-1", "lines": [line], "error": None}


def test_page_logs_route_without_id_is_a_400() -> None:
    assert page().serve("/_local/api/logs", {})[0] == 400


def test_page_without_logs_for_shows_none() -> None:
    rendered = body(page([notification()]).serve("/_local/", {"notification": "n-1"}))

    assert "no log line about this notification yet" in rendered


def test_page_refresh_fragment_keeps_the_open_notification() -> None:
    local = page([notification()])

    full = local.serve("/_local/", {"notification": "n-1"})
    fragment = local.serve("/_local/", {"notification": "n-1", "fragment": "1"})

    assert 'id="detail" data-notification="n-1"' in body(fragment)
    assert not body(fragment).startswith("<!doctype")
    assert f'data-digest="{fragment[1]["X-Fragment-Digest"][0]}"' in body(full)


def test_page_notification_not_among_recent_ones_is_looked_up() -> None:
    older = notification("n-old")
    local = page([notification()], notification=lambda notification_id: older if notification_id == "n-old" else None)

    rendered = body(local.serve("/_local/", {"notification": "n-old"}))

    assert 'id="detail" data-notification="n-old"' in rendered
    assert "The ledger has no such notification." not in rendered


def test_page_links_quote_the_notification_id() -> None:
    rendered = body(page([notification(HOSTILE)]).serve("/_local/", {}))

    links = [attrs["href"] for tag, attrs in Elements(rendered).found if tag == "a" and "notification" in str(attrs)]
    assert links
    assert all(link and link.startswith("/_local/?notification=%3Cscript%3E") for link in links)


def test_page_html_is_served_with_a_script_policy() -> None:
    status, headers, _ = page().serve("/_local/", {})

    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"][0]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/_local/assets/page.js", 200),
        ("/_local/assets/page.css", 200),
        ("/_local/assets/missing.js", 404),
        ("/_local/assets/..%2Fpage.py", 404),
    ],
)
def test_page_assets_serves_its_own_files_only(path: str, status: int) -> None:
    assert page().serve(path, {})[0] == status


def test_dead_letters_rows_take_attempts_and_dead_time_from_the_ledger() -> None:
    dead = delivery(status="dead", attempts=12, updated_at="2026-01-02T10:00:30.000Z", last_error="12 attempts made")
    listing = {
        "messages": [
            {
                "notification_id": "n-1",
                "delivery_key": "hook",
                "integration": "hook",
                "type": "webhook",
                "last_error": "12 attempts made",
                "receive_count": 0,
                "message_id": "m-1",
            }
        ]
    }
    admin = FakeAdmin({("GET", "/v1/dead-letters"): (200, listing)})

    [row] = page([notification(deliveries=[dead])], admin=admin).dead_letters([notification(deliveries=[dead])])[
        "messages"
    ]

    assert (row["notification_id"], row["attempts"], row["dead_at"], row["last_error"]) == (
        "n-1",
        12,
        "2026-01-02T10:00:30.000Z",
        "12 attempts made",
    )


def test_render_dead_letters_rows_escape_and_link_each_notification() -> None:
    rows = [
        {
            "notification_id": "n-1",
            "delivery_key": "hook",
            "integration": "hook",
            "type": "webhook",
            "last_error": HOSTILE,
            "attempts": 12,
            "dead_at": "2026-01-02T10:00:30.000Z",
        }
    ]

    rendered = render_dead_letters({"messages": rows, "error": None}, "tok")

    assert '<tr data-notification="n-1">' in rendered
    assert 'href="/_local/?notification=n-1"' in rendered
    assert html.escape(HOSTILE) in rendered
    assert "script" not in Elements(rendered).tags()
    [button] = [attrs for tag, attrs in Elements(rendered).found if tag == "button"]
    assert button["data-url"] == "/_local/api/dead-letters/redrive?token=tok"
    assert "disabled" not in button


def test_render_dead_letters_empty_queue_disables_the_redrive() -> None:
    rendered = render_dead_letters({"messages": [], "error": None}, "tok")

    [button] = [attrs for tag, attrs in Elements(rendered).found if tag == "button"]
    assert "disabled" in button
    assert "the dead-letter queue is empty" in rendered


def test_page_dead_letter_view_shows_the_admin_api_refusal() -> None:
    admin = FakeAdmin({("GET", "/v1/dead-letters"): (403, {"message": "the admin token is wrong"})})

    rendered = body(page(admin=admin).serve("/_local/", {"view": "dead-letters"}))

    assert "GET /v1/dead-letters answered 403: the admin token is wrong" in rendered


def test_page_dead_letter_view_without_admin_access_says_so() -> None:
    rendered = body(page().serve("/_local/", {"view": "dead-letters"}))

    assert "the page was given no admin API access" in rendered


def test_page_overview_does_not_list_the_dead_letter_queue() -> None:
    admin = FakeAdmin({})

    page(admin=admin).serve("/_local/", {})

    assert admin.calls == []


def test_page_redrive_with_the_page_token_calls_the_admin_redrive() -> None:
    admin = FakeAdmin({("POST", "/v1/dead-letters/redrive"): (200, {"redriven": 2})})
    local = page(admin=admin)

    status, _, raw = local.serve("/_local/api/dead-letters/redrive", {"token": local.token}, "POST")

    assert (status, json.loads(raw)) == (200, {"redriven": 2, "more": False})
    assert admin.calls == [("POST", "/v1/dead-letters/redrive", {"max_messages": 1000})]


def test_page_redrive_calls_again_while_the_route_says_more_and_answers_the_total() -> None:
    answers = iter([(200, {"redriven": 20, "more": True}), (200, {"redriven": 5, "more": False})])

    class Admin(FakeAdmin):
        def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
            self.calls.append((method, path, body))
            return next(answers)

    admin = Admin({})
    local = page(admin=admin)

    status, _, raw = local.serve("/_local/api/dead-letters/redrive", {"token": local.token}, "POST")

    assert (status, json.loads(raw)) == (200, {"redriven": 25, "more": False})
    assert [call[2] for call in admin.calls] == [{"max_messages": 1000}, {"max_messages": 980}]


def test_page_redrive_answers_what_the_admin_api_answered() -> None:
    admin = FakeAdmin({("POST", "/v1/dead-letters/redrive"): (502, {"message": "Internal server error"})})
    local = page(admin=admin)

    status, _, raw = local.serve("/_local/api/dead-letters/redrive", {"token": local.token})

    assert (status, json.loads(raw)) == (502, {"message": "Internal server error"})


@pytest.mark.parametrize("token", ["", "guessed"])
def test_page_redrive_without_the_page_token_is_refused(token: str) -> None:
    admin = FakeAdmin({})

    status = page(admin=admin).serve("/_local/api/dead-letters/redrive", {"token": token})[0]

    assert status == 403
    assert admin.calls == []


def test_page_redrive_by_get_is_refused_when_the_method_is_known() -> None:
    admin = FakeAdmin({})
    local = page(admin=admin)

    status = local.serve("/_local/api/dead-letters/redrive", {"token": local.token}, "GET")[0]

    assert status == 405
    assert admin.calls == []


def test_page_state_route_answers_json_with_channels_and_notifications() -> None:
    status, headers, raw = page([notification()]).serve("/_local/api/state", {})

    state = json.loads(raw)
    assert (status, headers["Content-Type"]) == (200, ["application/json"])
    assert state["notifications"][0]["notification_id"] == "n-1"
    assert set(state["channels"]) >= {"email", "slack", "telegram", "webhook", "push", "sns"}


def test_page_ledger_failure_is_shown_not_raised() -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("DynamoDB is not reachable")

    local = LocalPage(Records(), FakeOutbox(), broken)

    rendered = body(local.serve("/_local/", {}))

    assert "The ledger could not be read: DynamoDB is not reachable" in rendered


def ses_message(body: str) -> SimpleNamespace:
    """A message as moto's SES keeps it: one body, no time."""
    return SimpleNamespace(id="ses-1", subject="Hello", body=body, destinations={"ToAddresses": ["ada@example.com"]})


def test_moto_outbox_email_takes_both_parts_from_the_sent_log() -> None:
    sent = SentLog()
    sent.add("ses-1", text="Hi Ada", html="<p>Hi <b>Ada</b></p>")
    outbox = MotoOutbox("123456789012", "us-east-1", tap=False, sent=sent)

    email = outbox._email(ses_message("<p>Hi <b>Ada</b></p>"))

    assert (email["text"], email["html"], email["target"]) == ("Hi Ada", "<p>Hi <b>Ada</b></p>", "ada@example.com")


@pytest.mark.parametrize(
    ("body", "text", "markup"),
    [("<p>Hi <b>Ada</b></p>", None, "<p>Hi <b>Ada</b></p>"), ("Hi Ada, 2 < 3", "Hi Ada, 2 < 3", None)],
)
def test_moto_outbox_email_not_in_the_sent_log_takes_moto_body_as_its_part(
    body: str, text: str | None, markup: str | None
) -> None:
    outbox = MotoOutbox("123456789012", "us-east-1", tap=False, sent=SentLog())

    email = outbox._email(ses_message(body))

    assert (email["text"], email["html"]) == (text, markup)


def test_sent_log_keeps_the_most_recent_messages() -> None:
    sent = SentLog(keep=2)
    for message_id in ("a", "b", "c"):
        sent.add(message_id)

    assert (sent.get("a"), sent.get("b") is not None, sent.get("c") is not None) == (None, True, True)


PURCHASE = {
    "purchase_id": "pay_1",
    "customer_id": "cus_A1",
    "promo_code": "WELCOME10",
    "balance_transaction": "cbtxn_1",
    "credit_amount": 1000,
    "credit_currency": "eur",
    "credit_error": None,
    "notification_id": "n-1",
    "notification_error": None,
    "updated_at": "2026-11-22T10:00:00Z",
}


def test_render_purchases_shows_the_credit_and_links_the_notification() -> None:
    rendered = render_purchases([PURCHASE], None)

    assert "10.00 EUR" in rendered
    assert "cbtxn_1" in rendered
    assert ">n-1</a>" in rendered


def test_render_purchases_credit_error_and_hostile_values_become_text() -> None:
    refused = {**PURCHASE, "balance_transaction": None, "credit_error": "<b>unknown_code</b>", "purchase_id": "<i>"}

    rendered = render_purchases([refused], None)

    assert "&lt;b&gt;unknown_code&lt;/b&gt;" in rendered
    assert "<i>" not in rendered


def test_render_purchases_nothing_yet_renders_nothing() -> None:
    assert render_purchases([], None) == ""


# A push text of brackets: a text the push channel sends, JSON nested past the decoder's recursion limit.
BRACKETS = "[" * 1000


def test_push_view_of_a_text_of_brackets_shows_it_as_text() -> None:
    # The page decoded it as JSON and met a RecursionError: /_local/ and its state stopped answering for good.
    from core.channels.push import push_payload
    from core.models import Content

    view = push_view(push_payload(Content(text=BRACKETS)), "GCM")

    assert view is not None
    assert view["structure"]["default"] == BRACKETS


def test_page_state_answers_when_a_push_text_is_brackets() -> None:
    import boto3
    from moto import mock_aws

    from core.channels.push import push_payload
    from core.models import Content

    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        app = sns.create_platform_application(Name="a", Platform="GCM", Attributes={"PlatformCredential": "x"})
        endpoint = sns.create_platform_endpoint(PlatformApplicationArn=app["PlatformApplicationArn"], Token="t")
        message = push_payload(Content(text=BRACKETS))
        sns.publish(TargetArn=endpoint["EndpointArn"], Message=message, MessageStructure="json")
        page = LocalPage(Records(), MotoOutbox("123456789012", "us-east-1", tap=False, sent=SentLog()), list)

        status, _headers, _body = page.serve("/_local/api/state", {}, "GET")
        page_status, _headers, _body = page.serve("/_local/", {}, "GET")

    assert (status, page_status) == (200, 200)


def test_page_redrive_says_more_when_the_admin_api_still_said_more_after_its_calls() -> None:
    # page.js calls again while the route says "more"; the route never passed it on, so a queue its 20 calls could
    # not empty was reported "Redriven: N" with letters left.
    calls: list[Any] = []

    def admin(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        calls.append(body)
        return 200, {"redriven": 1, "more": True}

    local = LocalPage(Records(), FakeOutbox(), list, admin=admin)

    status, _headers, raw = local.serve("/_local/api/dead-letters/redrive", {"token": local.token}, "POST")

    assert (status, len(calls), json.loads(raw)) == (200, 20, {"redriven": 20, "more": True})
