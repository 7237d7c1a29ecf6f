"""The local page (``/_local/``): every message delivered, by channel and time; the ledger of recent notifications,
each with its attempts and log lines when opened; and the dead-letter queue with a redrive action.

Slack, Telegram and webhook messages come from the local receiver, timed when it received them. Email and push come
from moto's SES and SNS, read in this process (moto runs here). moto keeps no time for them and, for an email with an
HTML part, only that part: ``tap_moto`` wraps moto's SES ``send_email`` and SNS ``publish`` to keep both, so they are
timed when they were sent. Without the tap (moto's internals moved), a message takes the ledger's delivered time of the
delivery that sent it (matched by provider message id), else the time this page first saw it; each says which.

Addresses: ``/_local/`` (overview), ``?notification=<id>`` (that notification opened), ``?view=dead-letters``;
``?fragment=1`` gives the part the page's script swaps in every two seconds. JSON: ``/_local/api/state``,
``/_local/api/notification?notification_id=…``, ``/_local/api/logs?notification_id=…``, ``/_local/api/dead-letters``;
``/_local/api/dead-letters/redrive?token=…`` (POST) redrives through the admin API, as ``POST /v1/dead-letters/redrive``
does. Everything that comes from a delivery is escaped; an email's HTML is shown in an iframe sandboxed without scripts.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
import secrets
import threading
import urllib.error
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from core.channels.webhook import ID_HEADER
from core.ledger import NOTIFICATION_KEY, DeliveryLedger
from infra.local.peers import Records
from infra.local.seed import request

CHANNELS = ("email", "slack", "telegram", "webhook", "push", "sns")
_TITLES = {
    "email": "Email (SES)",
    "slack": "Slack",
    "telegram": "Telegram",
    "webhook": "Webhook",
    "push": "Push (SNS endpoint)",
    "sns": "SNS topics",
}
_STATUSES = {"queued", "delivered", "retrying", "failed", "dead", "skipped"}
_TIME_SOURCES = {
    "received": "when the local receiver got it",
    "sent": "when moto's SES/SNS accepted it",
    "delivered": "the ledger's delivered time of its delivery (moto keeps no send time)",
    "seen": "when this page first saw it (moto keeps no send time, and no recent delivery names it)",
}
_RECENT = 25
_SHOWN_PER_CHANNEL = 50
_TEXT_LIMIT = 4000
_HTML_LIMIT = 200_000
_REDRIVE_MAX = 1000  # the admin API's upper bound for max_messages
_REDRIVE_CALLS = 20  # "Redrive all" calls the route again while it says more, this many times at most
_ASSETS = Path(__file__).with_name("page_assets")
_ASSET_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# Scripts only from the page's own file, so markup that slipped through escaping could not run; an email's HTML may
# carry inline styles and images, and is framed with sandbox="" (no scripts, no forms, an opaque origin) anyway.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

Headers = dict[str, list[str]]
Answer = tuple[int, Headers, bytes]
Admin = Callable[[str, str, Any], tuple[int, Any]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- what moto was handed ------------------------------------------------------------------------------------------


class SentLog:
    """What moto's SES and SNS accepted, by message id: when, and for an email both body parts (the last ``keep``)."""

    def __init__(self, keep: int = 20_000) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._keep = keep
        self._lock = threading.Lock()
        self.installed = False

    def add(self, message_id: str, **fields: Any) -> None:
        """Keep the time of ``message_id`` (now) and its fields."""
        with self._lock:
            self._items[message_id] = {"time": _now(), **fields}
            while len(self._items) > self._keep:
                del self._items[next(iter(self._items))]

    def get(self, message_id: str) -> dict[str, Any] | None:
        """Return what was kept of ``message_id``."""
        with self._lock:
            return self._items.get(message_id)


SENT = SentLog()
_TAP_LOCK = threading.Lock()


def tap_moto(log: SentLog = SENT) -> bool:
    """Wrap moto's SES ``send_email`` and SNS ``publish`` (once per process) so ``log`` keeps each message's time.

    moto's SES message keeps one body (the HTML part when there is one) and no time; its SNS messages no time. Return
    whether the tap is in place: ``False`` when moto's internals are not where this expects them.
    """
    with _TAP_LOCK:
        if log.installed:
            return True
        try:
            from moto.ses.responses import EmailResponse
            from moto.sns.models import SNSBackend
        except ImportError:
            return False
        send_email = getattr(EmailResponse, "send_email", None)
        publish = getattr(SNSBackend, "publish", None)
        if not callable(send_email) or not callable(publish):
            return False

        @functools.wraps(send_email)
        def tapped_send_email(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = send_email(self, *args, **kwargs)
            answer = getattr(result, "result", None)
            message_id = answer.get("MessageId") if isinstance(answer, dict) else None
            if isinstance(message_id, str):
                parts = {"text": "Message.Body.Text.Data", "html": "Message.Body.Html.Data"}
                log.add(message_id, **{name: self._get_param(key) for name, key in parts.items()})
            return result

        @functools.wraps(publish)
        def tapped_publish(self: Any, *args: Any, **kwargs: Any) -> Any:
            message_id = publish(self, *args, **kwargs)
            if isinstance(message_id, str):
                log.add(message_id)
            return message_id

        EmailResponse.send_email = tapped_send_email  # type: ignore[method-assign]
        SNSBackend.publish = tapped_publish  # type: ignore[method-assign]
        log.installed = True
        return True


_TAG = re.compile(r"<[a-zA-Z][^>]*>")


def push_view(message: str, platform: str | None) -> dict[str, Any] | None:
    """Return an SNS JSON message decoded once: ``{"platform", "message", "structure"}``, or ``None`` for plain text.

    SNS wants each platform's payload as a JSON string inside the JSON structure; shown as sent, it reads escaped
    twice. ``message`` is the payload of ``platform`` (``default`` when the structure has none for it).
    """
    try:
        structure = json.loads(message)
    except (ValueError, RecursionError):  # a text of a thousand "[" nests too deep to decode
        return None
    if not isinstance(structure, dict) or "default" not in structure:
        return None
    decoded: dict[str, Any] = {}
    for key, value in structure.items():
        decoded[key] = value
        if isinstance(value, str) and value.strip()[:1] in ("{", "["):
            try:
                decoded[key] = json.loads(value)
            except (ValueError, RecursionError):
                decoded[key] = value
    chosen = platform if platform in decoded else "default"
    return {"platform": chosen, "message": decoded[chosen], "structure": decoded}


def _endpoint_platform(arn: str) -> str | None:
    """``arn:aws:sns:…:endpoint/GCM/app/id`` → ``GCM``."""
    parts = arn.split(":", 5)[-1].split("/")
    return parts[1] if len(parts) >= 4 and parts[0] == "endpoint" else None


class Outbox(Protocol):
    """Where email and push messages are read from."""

    def scan(self) -> None:
        """Pick up new messages."""

    def all(self) -> list[dict[str, Any]]:
        """Return every message seen, oldest first."""


class MotoOutbox:
    """Emails sent through moto's SES and messages published to moto's SNS, timed as ``tap_moto`` saw them sent.

    Each item holds ``time`` (``None`` when the tap did not see it), ``first_seen`` and ``provider_message_id``,
    so that ``LocalPage`` can fall back to the ledger's delivered time.
    """

    def __init__(self, account: str, region: str, *, tap: bool = True, sent: SentLog = SENT) -> None:
        self._account = account
        self._region = region
        self._sent = sent
        self.tapped = tap_moto(sent) if tap else False
        self._seen: dict[str, str] = {}
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _email(self, message: Any) -> dict[str, Any]:
        to = getattr(message, "destinations", None)
        if isinstance(to, dict):
            to = [address for addresses in to.values() for address in addresses]
        body = str(getattr(message, "body", None) or getattr(message, "raw_data", None) or "")
        kept = self._sent.get(message.id) or {}
        if "text" in kept or "html" in kept:
            text, markup = kept.get("text"), kept.get("html")
        else:  # moto's one body: the HTML part when there was one
            text, markup = (None, body) if _TAG.search(body) else (body, None)
        return {
            "key": f"ses:{message.id}",
            "channel": "email",
            "target": ", ".join(to or []),
            "title": getattr(message, "subject", None) or "",
            "text": text,
            "html": markup,
            "provider_message_id": message.id,
        }

    def scan(self) -> None:
        """Pick up what moto holds; stamp what was not seen yet."""
        from moto.ses.models import ses_backends
        from moto.sns.models import sns_backends

        ses = ses_backends[self._account][self._region]
        found = [self._email(message) for message in list(ses.sent_messages) if hasattr(message, "id")]
        sns = sns_backends[self._account][self._region]
        for arn, endpoint in list(sns.platform_endpoints.items()):
            platform = _endpoint_platform(arn)
            for message_id, message in list(endpoint.messages.items()):
                found.append(
                    {
                        "key": f"push:{message_id}",
                        "channel": "push",
                        "target": arn.rsplit("/", 2)[-2],
                        "title": "",
                        "text": message,
                        "payload": push_view(message, platform),
                        "provider_message_id": message_id,
                    }
                )
        for arn, topic in list(sns.topics.items()):
            for message_id, message, subject, _attributes, _group in list(topic.sent_notifications):
                found.append(
                    {
                        "key": f"sns:{message_id}",
                        "channel": "sns",
                        "target": arn.rsplit(":", 1)[-1],
                        "title": subject or "",
                        "text": message,
                        "payload": push_view(message, None),
                        "provider_message_id": message_id,
                    }
                )
        with self._lock:
            for item in found:
                self._seen.setdefault(item["key"], _now())
            self._items = [
                {**item, "first_seen": self._seen[item["key"]], "time": self._sent_time(item), "status": 200}
                for item in found
            ]

    def _sent_time(self, item: dict[str, Any]) -> str | None:
        kept = self._sent.get(item["provider_message_id"])
        return kept["time"] if kept else None

    def all(self) -> list[dict[str, Any]]:
        """Return every message seen."""
        with self._lock:
            return list(self._items)


# --- the ledger ----------------------------------------------------------------------------------------------------


def _history(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list | tuple):
        return []
    keys = ("at", "attempt", "status", "error")
    return [{key: step.get(key) for key in keys} for step in value if isinstance(step, dict)]


def _delivery(entry: Any) -> dict[str, Any]:
    # history, next_attempt_at and redriven are read with defaults: ledgers written before them lack them.
    return {
        "delivery_key": entry.delivery_key,
        "integration": entry.integration,
        "type": entry.type,
        "status": getattr(entry.status, "value", entry.status),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "updated_at": entry.updated_at,
        "provider_message_id": getattr(entry, "provider_message_id", None),
        "history": _history(getattr(entry, "history", None)),
        "next_attempt_at": getattr(entry, "next_attempt_at", None),
        "redriven": getattr(entry, "redriven", 0) or 0,
    }


def notification_summary(ledger: DeliveryLedger, notification_id: str) -> dict[str, Any]:
    """Return a notification's record and its deliveries (first page), each with its attempts' history."""
    ledger_page = ledger.page(notification_id)
    record = ledger_page.record
    return {
        "notification_id": record.notification_id,
        "channel": record.channel,
        "topic": record.topic,
        "created_at": record.created_at,
        "deliveries": [_delivery(entry) for entry in ledger_page.entries],
    }


def recent_notifications(dynamodb: Any, table: str, limit: int = _RECENT) -> list[dict[str, Any]]:
    """Return the ledger's most recent notifications, each with its deliveries (first page)."""
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="delivery_key = :record",
        ExpressionAttributeValues={":record": {"S": NOTIFICATION_KEY}},
        ProjectionExpression="notification_id, created_at",
    )
    records: list[dict[str, Any]] = [item for page in pages for item in page.get("Items", [])]
    records.sort(key=lambda item: item.get("created_at", {}).get("S", ""), reverse=True)
    ledger = DeliveryLedger(dynamodb, table)
    return [notification_summary(ledger, item["notification_id"]["S"]) for item in records[:limit]]


def recent_purchases(dynamodb: Any, table: str, limit: int = _RECENT) -> list[dict[str, Any]]:
    """Return the purchases table's most recently updated purchases: credit (or why none) and notification."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    pages = dynamodb.get_paginator("scan").paginate(TableName=table)
    items = [
        {name: deserializer.deserialize(value) for name, value in item.items()}
        for page in pages
        for item in page.get("Items", [])
    ]
    items.sort(key=lambda item: str(item.get("updated_at", "")), reverse=True)
    return [
        {
            "purchase_id": item.get("purchase_id"),
            "customer_id": item.get("customer_id"),
            "promo_code": item.get("promo_code"),
            "balance_transaction": item.get("balance_transaction"),
            "credit_amount": int(item["credit_amount"]) if item.get("credit_amount") is not None else None,
            "credit_currency": item.get("credit_currency"),
            "credit_error": item.get("credit_error"),
            "notification_id": item.get("notification_id"),
            "notification_error": item.get("notification_error"),
            "updated_at": item.get("updated_at"),
        }
        for item in items[:limit]
    ]


def find_notification(dynamodb: Any, table: str, notification_id: str) -> dict[str, Any] | None:
    """Return one notification as ``recent_notifications`` gives it, or ``None`` when the ledger has none."""
    from core.errors import NotFoundError

    try:
        return notification_summary(DeliveryLedger(dynamodb, table), notification_id)
    except NotFoundError:
        return None


class AdminApi:
    """Calls the admin API through the local gateway with the local admin token: ``admin(method, path, body)``."""

    def __init__(self, api_url: str, token: str) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"AdminApi({self._api_url!r}, token=***)"

    def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one request; answer ``(status, parsed body)``, a 502 when the gateway could not be reached."""
        try:
            status, reply, _ = request(self._api_url + path, method, body, {"Authorization": f"Bearer {self._token}"})
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return 502, {"message": f"the admin API could not be reached: {type(exc).__name__}"}
        return status, reply


# --- the page ------------------------------------------------------------------------------------------------------


def _no_logs(_notification_id: str) -> list[dict[str, Any]]:
    return []


class LocalPage:
    """Serves ``/_local/``: the page, its fragment, its assets and its JSON.

    Parameters
    ----------
    records
        What the local receiver got.
    outbox
        Email and push messages (``MotoOutbox``).
    ledger
        Returns the recent notifications (``recent_notifications``).
    notification
        Returns one notification by id (``find_notification``), for one that is not among the recent ones.
    admin
        ``admin(method, path, body) -> (status, body)`` on the admin API (``AdminApi``); without it the dead-letter
        view says it has no admin access.
    logs_for
        Returns a notification's log records (``LogFollower.for_notification``).
    purchases
        Returns the recent purchases (``recent_purchases``): the Stripe credit and the notification of each.
    """

    def __init__(
        self,
        records: Records,
        outbox: Outbox,
        ledger: Callable[[], list[dict[str, Any]]],
        *,
        notification: Callable[[str], dict[str, Any] | None] | None = None,
        admin: Admin | None = None,
        logs_for: Callable[[str], list[dict[str, Any]]] = _no_logs,
        purchases: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self._purchases = purchases
        self._records = records
        self._outbox = outbox
        self._ledger = ledger
        self._notification = notification
        self._admin = admin
        self._logs_for = logs_for
        # Only the page's own script can read this, so no other site can make a browser redrive.
        self.token = secrets.token_urlsafe(18)

    # --- data ------------------------------------------------------------------------------------------------------

    def _notifications(self) -> tuple[list[dict[str, Any]], str | None]:
        try:
            return self._ledger(), None
        except Exception as exc:
            return [], str(exc)

    def _recent_purchases(self) -> tuple[list[dict[str, Any]], str | None]:
        try:
            return self._purchases(), None
        except Exception as exc:
            return [], str(exc)

    def state(self) -> dict[str, Any]:
        """Return the messages by channel (newest first), the recent notifications and the recent purchases."""
        notifications, ledger_error = self._notifications()
        purchases, purchases_error = self._recent_purchases()
        return {
            "generated_at": _now(),
            "channels": self._messages(notifications),
            "notifications": notifications,
            "ledger_error": ledger_error,
            "purchases": purchases,
            "purchases_error": purchases_error,
        }

    def _messages(self, notifications: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        self._outbox.scan()
        delivered = {
            delivery["provider_message_id"]: (notification["notification_id"], delivery)
            for notification in notifications
            for delivery in notification["deliveries"]
            if delivery.get("provider_message_id")
        }
        by_channel: dict[str, list[dict[str, Any]]] = {channel: [] for channel in CHANNELS}
        for record in self._records.all():
            headers = {str(name).lower(): value for name, value in (record.get("headers") or {}).items()}
            message = {**_message(record), "time_source": "received", "notification_id": headers.get(ID_HEADER.lower())}
            if record.get("channel") == "webhook" and isinstance(record.get("body"), dict | list):
                message["text"] = json.dumps(record["body"], indent=2, ensure_ascii=False)
            by_channel.setdefault(record["channel"], []).append(message)
        for item in self._outbox.all():
            found = delivered.get(item.get("provider_message_id"))
            if item.get("time"):
                time, source = item["time"], "sent"
            elif found and found[1]["status"] == "delivered" and found[1]["updated_at"]:
                time, source = found[1]["updated_at"], "delivered"
            else:
                time, source = item.get("first_seen") or _now(), "seen"
            by_channel.setdefault(item["channel"], []).append(
                {
                    **_message(item),
                    "time": time,
                    "time_source": source,
                    "notification_id": found[0] if found else None,
                }
            )
        for items in by_channel.values():
            items.sort(key=lambda item: str(item["time"]), reverse=True)
        return by_channel

    def notification(self, notification_id: str, notifications: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Return one notification: from the recent ones, else looked up."""
        for notification in notifications:
            if notification["notification_id"] == notification_id:
                return notification
        if self._notification is None:
            return None
        try:
            return self._notification(notification_id)
        except Exception:
            return None

    def logs(self, notification_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """Return a notification's log records, or the reason they could not be read."""
        try:
            return list(self._logs_for(notification_id)), None
        except Exception as exc:
            return [], str(exc)

    def dead_letters(self, notifications: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the dead-letter queue as the admin API lists it, with each delivery's attempts and dead time."""
        if self._admin is None:
            return {"messages": [], "error": "the page was given no admin API access"}
        status, body = self._admin("GET", "/v1/dead-letters", None)
        if status != 200 or not isinstance(body, dict):
            return {"messages": [], "error": f"GET /v1/dead-letters answered {status}: {_reason(body)}"}
        found: dict[str, dict[str, Any] | None] = {}
        rows = []
        for letter in body.get("messages") or []:
            notification_id = letter.get("notification_id")
            if notification_id and notification_id not in found:
                found[notification_id] = self.notification(notification_id, notifications)
            notification = found.get(notification_id) if notification_id else None
            delivery = next(
                (
                    row
                    for row in (notification or {}).get("deliveries", [])
                    if row["delivery_key"] == letter.get("delivery_key")
                ),
                None,
            )
            rows.append(
                {
                    **{key: letter.get(key) for key in ("notification_id", "delivery_key", "integration", "type")},
                    "last_error": letter.get("last_error") or (delivery or {}).get("last_error"),
                    "receive_count": letter.get("receive_count"),
                    "message_id": letter.get("message_id"),
                    "attempts": (delivery or {}).get("attempts"),
                    "status": (delivery or {}).get("status"),
                    "dead_at": (delivery or {}).get("updated_at"),
                }
            )
        return {"messages": rows, "error": None}

    def redrive(self, max_messages: int = _REDRIVE_MAX) -> tuple[int, Any]:
        """Redrive through ``POST /v1/dead-letters/redrive``, again while it answers ``more`` (its function's time ran
        out first), up to ``max_messages`` in all; answer the last status and the total."""
        if self._admin is None:
            return 503, {"message": "the page was given no admin API access"}
        moved, more = 0, False
        for _ in range(_REDRIVE_CALLS):
            status, body = self._admin("POST", "/v1/dead-letters/redrive", {"max_messages": max_messages - moved})
            if status != 200 or not isinstance(body, dict):
                return status, body
            moved += int(body.get("redriven") or 0)
            more = bool(body.get("more"))
            if not more or moved >= max_messages:
                break
        # Said on: letters are left when the last call said so (its time ran out), or when this call moved all it
        # may; the page calls again until none are.
        return 200, {"redriven": moved, "more": more or moved >= max_messages}

    # --- HTTP ------------------------------------------------------------------------------------------------------

    def serve(self, path: str, query: dict[str, str], method: str | None = None) -> Answer:
        """Answer a request under ``/_local/``; ``method``, when the gateway passes it, guards the redrive."""
        route = path.rstrip("/")
        if route == "/_local/api/dead-letters/redrive":
            return self._serve_redrive(query, method)
        if method not in (None, "GET", "HEAD"):
            return _json(405, {"message": f"{method} is not served here; the page's pages and JSON are GET"})
        if route.startswith("/_local/assets/"):
            return _asset(route.rsplit("/", 1)[-1])
        if route.startswith("/_local/api/"):
            return self._serve_api(route, query)
        if route != "/_local":
            return _json(404, {"message": "no such local page; open /_local/"})
        if path == "/_local":
            return 301, {"Location": ["/_local/"]}, b""
        return self._serve_page(query)

    def _serve_api(self, route: str, query: dict[str, str]) -> Answer:
        notification_id = query.get("notification_id", "")
        if route == "/_local/api/state":
            return _json(200, self.state())
        if route == "/_local/api/dead-letters":
            return _json(200, self.dead_letters(self._notifications()[0]))
        if route in ("/_local/api/logs", "/_local/api/notification") and not notification_id:
            return _json(400, {"message": "add ?notification_id=<the notification's id>"})
        if route == "/_local/api/logs":
            lines, error = self.logs(notification_id)
            return _json(200, {"notification_id": notification_id, "lines": lines, "error": error})
        if route == "/_local/api/notification":
            found = self.notification(notification_id, self._notifications()[0])
            if found is None:
                return _json(404, {"message": f"the ledger has no notification {notification_id!r}"})
            return _json(200, found)
        return _json(404, {"message": "no such local API; see /_local/api/state"})

    def _serve_redrive(self, query: dict[str, str], method: str | None) -> Answer:
        if method is not None and method != "POST":
            return _json(405, {"message": "redrive with POST"})
        if not secrets.compare_digest(query.get("token", ""), self.token):
            return _json(403, {"message": "redrive from the local page: its button sends the page's token"})
        try:
            count = int(query.get("max_messages") or _REDRIVE_MAX)
        except ValueError:
            return _json(400, {"message": "max_messages is a whole number from 1 to 1000"})
        status, body = self.redrive(count)
        return _json(status, body)

    def _serve_page(self, query: dict[str, str]) -> Answer:
        view = "dead-letters" if query.get("view") == "dead-letters" else "overview"
        selected = query.get("notification") or None
        notifications, ledger_error = self._notifications()
        context: dict[str, Any] = {
            "view": view,
            "generated_at": _now(),
            "notifications": notifications,
            "ledger_error": ledger_error,
            "selected": selected,
            "token": self.token,
        }
        if view == "dead-letters":
            context["dead_letters"] = self.dead_letters(notifications)
        else:
            context["channels"] = self._messages(notifications)
            context["purchases"], context["purchases_error"] = self._recent_purchases()
            if selected:
                context["detail"] = self.notification(selected, notifications)
                context["logs"] = self.logs(selected)
        fragment = render_fragment(context)
        # The script swaps the fragment in only when this changes, so a click is not lost to an identical redraw.
        digest = hashlib.sha256(fragment.encode()).hexdigest()[:32]
        body = fragment if query.get("fragment") else render_page(fragment, context["generated_at"], digest)
        headers = {
            "Content-Type": ["text/html; charset=utf-8"],
            "Cache-Control": ["no-store"],
            "Content-Security-Policy": [_CSP],
            "X-Content-Type-Options": ["nosniff"],
            "X-Fragment-Digest": [digest],
        }
        return 200, headers, body.encode()


def _json(status: int, body: Any) -> Answer:
    headers = {"Content-Type": ["application/json"], "Cache-Control": ["no-store"]}
    return status, headers, json.dumps(body, default=str).encode()


@functools.cache
def _asset_bytes(name: str) -> bytes | None:
    path = _ASSETS / name
    return path.read_bytes() if path.suffix in _ASSET_TYPES and path.is_file() else None


def _asset(name: str) -> Answer:
    body = _asset_bytes(name) if re.fullmatch(r"[a-z]+\.(css|js)", name) else None
    if body is None:
        return _json(404, {"message": "no such asset"})
    content_type = _ASSET_TYPES[Path(name).suffix]
    return (
        200,
        {"Content-Type": [content_type], "Cache-Control": ["no-cache"], "X-Content-Type-Options": ["nosniff"]},
        body,
    )


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return json.dumps(body)[:300]


def _message(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("time", "channel", "target", "title", "text", "html", "payload", "status")
    return {key: item.get(key) for key in keys}


# --- rendering (pure: dicts in, escaped HTML out) ------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _cut(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) if not isinstance(value, str) else value


def _time(value: Any, source: str | None = None) -> str:
    """A time shown as ``HH:MM:SS.mmm``, the whole ISO time (and where it comes from) on hover."""
    text = "" if value is None else str(value)
    short = text[11:23] if len(text) >= 23 and text[10:11] == "T" else text
    title = text + (f" · {_TIME_SOURCES[source]}" if source in _TIME_SOURCES else "")
    tag = f' <span class="source">{_e(source)}</span>' if source in ("delivered", "seen") else ""
    return f'<time datetime="{_e(text)}" title="{_e(title)}">{_e(short)}</time>{tag}'


def _href(**params: str) -> str:
    return "/_local/" + ("?" + urlencode(params, quote_via=quote) if params else "")


def _status(value: Any) -> str:
    status = str(value or "")
    css = status if status in _STATUSES else "other"
    return f'<span class="status {css}">{_e(status)}</span>'


def _notification_link(notification_id: Any, label: str | None = None) -> str:
    if not notification_id:
        return ""
    href = _href(notification=str(notification_id))
    return f'<a class="notification-link" href="{_e(href)}">{_e(label or notification_id)}</a>'


def render_email(item: dict[str, Any]) -> str:
    """The text part as text; the HTML part rendered in an iframe sandboxed without scripts, its source on demand."""
    parts = []
    if item.get("text"):
        parts.append(f'<div class="part">text part</div><pre>{_e(_cut(str(item["text"])))}</pre>')
    if item.get("html"):
        markup = _cut(str(item["html"]), _HTML_LIMIT)
        parts.append(
            '<div class="part">HTML part</div>'
            '<iframe class="email-html" sandbox="" referrerpolicy="no-referrer" title="HTML part" '
            f'srcdoc="{_e(markup)}"></iframe>'
            f'<details data-key="html-source"><summary>HTML source</summary><pre>{_e(_cut(markup))}</pre></details>'
        )
    return "".join(parts) or '<p class="empty">no body</p>'


def render_push(item: dict[str, Any]) -> str:
    """The payload of the endpoint's platform as readable JSON, every platform's on demand."""
    view = item.get("payload")
    if not isinstance(view, dict):
        return f"<pre>{_e(_cut(str(item.get('text') or '')))}</pre>"
    return (
        f'<div class="part">{_e(view["platform"])} payload</div><pre>{_e(_cut(_pretty(view["message"])))}</pre>'
        '<details data-key="platforms"><summary>every platform</summary>'
        f"<pre>{_e(_cut(_pretty(view['structure'])))}</pre></details>"
    )


def render_message(item: dict[str, Any], *, linked: bool = True) -> str:
    """One message of a channel's column; ``linked`` adds a link to its notification when it is known."""
    try:
        ok = int(item.get("status") or 200) < 400
    except (TypeError, ValueError):
        ok = False
    answered = "" if ok else f' <b class="answered">answered {_e(item.get("status"))}</b>'
    link = _notification_link(item.get("notification_id"), "notification") if linked else ""
    title = f'<div class="title">{_e(item["title"])}</div>' if item.get("title") else ""
    if item.get("channel") == "email":
        body = render_email(item)
    elif item.get("payload"):
        body = render_push(item)
    else:
        text = item.get("text")
        body = f"<pre>{_e(_cut(text if isinstance(text, str) else json.dumps(text)))}</pre>"
    return (
        f'<div class="message {"ok" if ok else "failed"}">'
        f'<div class="head">{_time(item.get("time"), item.get("time_source"))}'
        f' <span class="target">{_e(item.get("target"))}</span>{answered} {link}</div>{title}{body}</div>'
    )


def render_channels(channels: dict[str, list[dict[str, Any]]]) -> str:
    """Every channel's column, newest first."""
    parts = ['<section class="channels">']
    for channel, items in channels.items():
        parts.append(
            f'<article class="channel" data-channel="{_e(channel)}"><h2>{_e(_TITLES.get(channel, channel))} '
            f'<span class="count">{len(items)}</span></h2>'
        )
        if not items:
            parts.append('<p class="empty">nothing yet</p>')
        parts.extend(render_message(item) for item in items[:_SHOWN_PER_CHANNEL])
        parts.append("</article>")
    parts.append("</section>")
    return "".join(parts)


def render_notifications(notifications: list[dict[str, Any]], selected: str | None, error: str | None) -> str:
    """The recent notifications, one row per delivery; a notification's id opens it."""
    parts = ['<section class="recent"><h2>Recent notifications <span class="hint">(ledger; click one)</span></h2>']
    if error:
        parts.append(f'<p class="error">The ledger could not be read: {_e(error)}</p>')
    parts.append(
        '<table class="ledger"><thead><tr><th>created</th><th>notification</th><th>channel/topic</th>'
        "<th>integration</th><th>type</th><th>status</th><th>attempts</th><th>last error</th></tr></thead><tbody>"
    )
    if not notifications:
        parts.append('<tr><td colspan="8" class="empty">no notification yet</td></tr>')
    for notification in notifications:
        rows = notification["deliveries"] or [{}]
        chosen = " selected" if notification["notification_id"] == selected else ""
        for index, delivery in enumerate(rows):
            lead = (
                f'<td rowspan="{len(rows)}">{_time(notification["created_at"])}</td>'
                f'<td rowspan="{len(rows)}"><code>{_notification_link(notification["notification_id"])}</code></td>'
                f'<td rowspan="{len(rows)}">{_e(notification["channel"])}/{_e(notification["topic"])}</td>'
                if index == 0
                else ""
            )
            parts.append(
                f'<tr class="delivery{chosen}" data-notification="{_e(notification["notification_id"])}">{lead}'
                f"<td>{_e(delivery.get('integration'))}</td><td>{_e(delivery.get('type'))}</td>"
                f"<td>{_status(delivery.get('status')) if delivery else ''}</td>"
                f"<td>{_e(delivery.get('attempts'))}</td><td>{_e(delivery.get('last_error') or '')}</td></tr>"
            )
    parts.append("</tbody></table></section>")
    return "".join(parts)


def render_purchases(purchases: list[dict[str, Any]], error: str | None) -> str:
    """The recent purchases: the Stripe balance credit of each (or why none) and its notification."""
    if not purchases and not error:
        return ""
    parts = ['<section class="purchases"><h2>Purchases <span class="hint">(Stripe credits, notifications)</span></h2>']
    if error:
        parts.append(f'<p class="error">The purchases could not be read: {_e(error)}</p>')
    parts.append(
        '<table class="ledger"><thead><tr><th>updated</th><th>purchase</th><th>customer</th><th>promo code</th>'
        "<th>credit</th><th>notification</th></tr></thead><tbody>"
    )
    for purchase in purchases:
        if purchase.get("balance_transaction"):
            from core.purchases.notify import format_amount

            amount = format_amount(purchase.get("credit_amount") or 0, str(purchase.get("credit_currency") or ""))
            credit = f"{_e(amount)} <code>{_e(purchase['balance_transaction'])}</code>"
        else:
            credit = _e(purchase.get("credit_error") or "—")
        notification = (
            f"<code>{_notification_link(purchase['notification_id'])}</code>"
            if purchase.get("notification_id")
            else _e(purchase.get("notification_error") or "—")
        )
        parts.append(
            f"<tr><td>{_time(purchase.get('updated_at'))}</td><td><code>{_e(purchase.get('purchase_id'))}</code></td>"
            f"<td><code>{_e(purchase.get('customer_id') or '—')}</code></td><td>{_e(purchase.get('promo_code') or '—')}"
            f"</td><td>{credit}</td><td>{notification}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return "".join(parts)


def render_attempts(delivery: dict[str, Any]) -> str:
    """A delivery's attempts, oldest first: time, attempt, outcome, error."""
    history = delivery.get("history") or []
    if not history:
        return '<p class="empty">no attempt recorded</p>'
    rows = []
    for index, step in enumerate(history):
        if index and history[index - 1].get("status") == "dead":  # only a redrive brings a dead delivery back
            rows.append('<tr class="redrive"><td colspan="4">redriven</td></tr>')
        rows.append(
            f"<tr><td>{_time(step.get('at'))}</td><td>{_e(step.get('attempt'))}</td>"
            f"<td>{_status(step.get('status'))}</td><td>{_e(step.get('error') or '')}</td></tr>"
        )
    return (
        '<table class="attempts"><thead><tr><th>time</th><th>attempt</th><th>outcome</th><th>error</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _fields(fields: Any, notification_id: str) -> str:
    """A log record's fields as ``name=value`` pairs, as the terminal shows them, less the notification's own id."""
    if not isinstance(fields, dict):
        return ""
    pairs = []
    for name, value in fields.items():
        if name == "notification_id" and value == notification_id:
            continue
        shown = value if isinstance(value, str) and value and " " not in value else json.dumps(value, default=str)
        pairs.append(f"{name}={shown}")
    return " ".join(pairs)


def render_logs(notification_id: str, lines: list[dict[str, Any]], error: str | None) -> str:
    """A notification's log records: time, level, function, message and fields."""
    json_href = "/_local/api/logs?" + urlencode({"notification_id": notification_id}, quote_via=quote)
    parts = [f'<h3 id="logs">Log lines <a class="aside" href="{_e(json_href)}">as JSON</a></h3>']
    if error:
        parts.append(f'<p class="error">The logs could not be read: {_e(error)}</p>')
    if not lines:
        parts.append('<p class="empty">no log line about this notification yet</p>')
        return "".join(parts)
    parts.append(
        '<table class="logs"><thead><tr><th>time</th><th>level</th><th>function</th><th>message</th></tr></thead>'
        "<tbody>"
    )
    for line in lines:
        level = str(line.get("level") or "")
        fields = _fields(line.get("fields"), notification_id)
        extra = f'<div class="fields">{_e(_cut(fields, 600))}</div>' if fields else ""
        parts.append(
            f'<tr class="level-{_e(level.lower())}"><td>{_time(line.get("time"))}</td><td>{_e(level)}</td>'
            f"<td>{_e(line.get('function'))}</td><td>{_e(line.get('message'))}{extra}</td></tr>"
        )
    parts.append("</tbody></table>")
    return "".join(parts)


def render_detail(
    notification_id: str,
    notification: dict[str, Any] | None,
    logs: tuple[list[dict[str, Any]], str | None],
    messages: list[dict[str, Any]],
) -> str:
    """An opened notification: its deliveries with their attempts, its log lines and the messages it sent."""
    close = f'<a class="close" href="{_e(_href())}">close</a>'
    if notification is None:
        return (
            f'<section class="detail" id="detail" data-notification="{_e(notification_id)}">'
            f'<div class="detail-head"><h2>Notification <code>{_e(notification_id)}</code></h2>{close}</div>'
            '<p class="error">The ledger has no such notification.</p></section>'
        )
    deliveries = []
    for delivery in notification["deliveries"]:
        retry = (
            f" · next attempt {_time(delivery['next_attempt_at'])}"
            if delivery.get("next_attempt_at") and delivery.get("status") == "retrying"
            else ""
        )
        redriven = f" · redriven {_e(delivery['redriven'])} time(s)" if delivery.get("redriven") else ""
        error = f'<div class="error">{_e(delivery["last_error"])}</div>' if delivery.get("last_error") else ""
        deliveries.append(
            f'<div class="delivery-detail" data-delivery="{_e(delivery["delivery_key"])}">'
            f"<h3>{_e(delivery['integration'])} <small>{_e(delivery['type'])}</small> {_status(delivery['status'])}"
            f" <small>{_e(delivery['attempts'])} attempt(s){retry}{redriven} · updated {_time(delivery['updated_at'])}"
            f"</small></h3>{error}{render_attempts(delivery)}</div>"
        )
    sent = "".join(render_message(item, linked=False) for item in messages)
    sent = sent or '<p class="empty">no message seen for it (email and push show once their delivery names them)</p>'
    return (
        f'<section class="detail" id="detail" data-notification="{_e(notification_id)}">'
        f'<div class="detail-head"><h2>Notification <code>{_e(notification_id)}</code></h2>'
        f"<span>{_e(notification['channel'])}/{_e(notification['topic'])} · created {_time(notification['created_at'])}"
        f"</span>{close}</div>"
        '<div class="detail-body"><div><h3 class="section">Deliveries and attempts</h3>'
        + ("".join(deliveries) or '<p class="empty">no delivery</p>')
        + f'<h3 class="section">Messages</h3><div class="sent">{sent}</div></div>'
        f'<div class="log-column">{render_logs(notification_id, *logs)}</div></div></section>'
    )


def render_dead_letters(dead: dict[str, Any], token: str) -> str:
    """The dead-letter queue with its redrive action."""
    messages = dead.get("messages") or []
    redrive = "/_local/api/dead-letters/redrive?" + urlencode({"token": token})
    disabled = "" if messages else " disabled"
    parts = [
        '<section class="dead-letters"><div class="detail-head"><h2>Dead letters '
        f'<span class="count">{len(messages)}</span></h2>'
        f'<button type="button" data-action="redrive" data-url="{_e(redrive)}"{disabled}>Redrive all</button></div>'
        '<p class="hint">Deliveries whose retries are spent. Redrive sends every message back to the delivery queue '
        "through <code>POST /v1/dead-letters/redrive</code>, which starts each afresh (no attempts made); the admin "
        "API redrives the queue as a whole, not one notification. This view is listed every ten seconds.</p>"
    ]
    if dead.get("error"):
        parts.append(f'<p class="error">{_e(dead["error"])}</p>')
    parts.append(
        '<table class="dead"><thead><tr><th>notification</th><th>integration</th><th>type</th><th>attempts</th>'
        "<th>last error</th><th>dead since</th></tr></thead><tbody>"
    )
    if not messages:
        parts.append('<tr><td colspan="6" class="empty">the dead-letter queue is empty</td></tr>')
    for row in messages:
        parts.append(
            f'<tr data-notification="{_e(row.get("notification_id"))}">'
            f"<td><code>{_notification_link(row.get('notification_id')) or '—'}</code></td>"
            f"<td>{_e(row.get('integration') or row.get('delivery_key'))}</td><td>{_e(row.get('type'))}</td>"
            f"<td>{_e(row.get('attempts') if row.get('attempts') is not None else '—')}</td>"
            f"<td>{_e(row.get('last_error') or '')}</td>"
            f"<td>{_time(row.get('dead_at')) if row.get('dead_at') else '—'}</td></tr>"
        )
    parts.append("</tbody></table></section>")
    return "".join(parts)


def render_nav(view: str, notifications: list[dict[str, Any]]) -> str:
    """The two views; the dead count comes from the ledger, so the queue is listed only on its own view."""
    dead = sum(1 for notification in notifications for row in notification["deliveries"] if row.get("status") == "dead")
    count = f' <span class="count dead">{dead}</span>' if dead else ""
    tabs = [
        ("overview", _href(), "Deliveries", ""),
        ("dead-letters", _href(view="dead-letters"), "Dead letters", count),
    ]
    links = "".join(
        f'<a class="tab{" current" if name == view else ""}" href="{_e(href)}">{label}{extra}</a>'
        for name, href, label, extra in tabs
    )
    return f'<nav class="tabs">{links}</nav>'


def render_fragment(context: dict[str, Any]) -> str:
    """What the page's script swaps in: the views' tabs and the current view."""
    notifications = context.get("notifications") or []
    parts = [render_nav(context["view"], notifications)]
    if context["view"] == "dead-letters":
        parts.append(render_dead_letters(context.get("dead_letters") or {}, context["token"]))
        return "".join(parts)
    selected = context.get("selected")
    channels: dict[str, list[dict[str, Any]]] = context.get("channels") or {}
    if selected:
        messages = [item for items in channels.values() for item in items if item.get("notification_id") == selected]
        parts.append(render_detail(selected, context.get("detail"), context.get("logs") or ([], None), messages))
    parts.append(render_channels(channels))
    parts.append(render_notifications(notifications, selected, context.get("ledger_error")))
    parts.append(render_purchases(context.get("purchases") or [], context.get("purchases_error")))
    return "".join(parts)


def render_page(fragment: str, generated_at: str, digest: str = "") -> str:
    """The whole page around a fragment (``digest`` names the fragment, for the script's refresh)."""
    page = _PAGE.replace("{{generated_at}}", _e(generated_at)).replace("{{digest}}", _e(digest))
    return page.replace("{{main}}", fragment)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>notify · local stack</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/_local/assets/page.css">
<script src="/_local/assets/page.js" defer></script>
</head>
<body data-refreshes="0"><header><h1>notify · local stack</h1>
<p>What the service delivered on this machine, newest first. Updated <time id="updated">{{generated_at}}</time>;
the page refreshes every two seconds.</p></header>
<p id="flash" class="flash" role="status" hidden></p>
<main id="main" data-digest="{{digest}}">{{main}}</main>
</body></html>
"""
