"""The local page (``/_local/``): every message delivered, by channel and time, and the ledger of recent notifications.

Slack, Telegram and webhook messages come from the local receiver; email and push from moto's SES and SNS, read in
this process (moto runs here). The page is rendered on the server and refreshes itself every two seconds.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.ledger import NOTIFICATION_KEY, DeliveryLedger
from infra.local.peers import Records

CHANNELS = ("email", "slack", "telegram", "webhook", "push", "sns")
_TITLES = {
    "email": "Email (SES)",
    "slack": "Slack",
    "telegram": "Telegram",
    "webhook": "Webhook",
    "push": "Push (SNS endpoint)",
    "sns": "SNS topics",
}
_RECENT = 25


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MotoOutbox:
    """Emails sent through moto's SES and messages published to moto's SNS, each stamped when first seen."""

    def __init__(self, account: str, region: str) -> None:
        self._account = account
        self._region = region
        self._seen: dict[str, str] = {}
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def scan(self) -> None:
        """Pick up what moto holds that was not seen yet."""
        from moto.ses.models import ses_backends
        from moto.sns.models import sns_backends

        found: list[dict[str, Any]] = []
        ses = ses_backends[self._account][self._region]
        for message in list(ses.sent_messages):
            to = getattr(message, "destinations", None)
            if isinstance(to, dict):
                to = [address for addresses in to.values() for address in addresses]
            text = getattr(message, "body", None) or getattr(message, "raw_data", None) or ""
            found.append(
                {
                    "key": f"ses:{message.id}",
                    "channel": "email",
                    "target": ", ".join(to or []),
                    "title": getattr(message, "subject", None) or "",
                    "text": str(text),
                }
            )
        sns = sns_backends[self._account][self._region]
        for arn, endpoint in list(sns.platform_endpoints.items()):
            for message_id, message in list(endpoint.messages.items()):
                found.append(
                    {
                        "key": f"push:{message_id}",
                        "channel": "push",
                        "target": arn.rsplit("/", 2)[-2],
                        "title": "",
                        "text": message,
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
                    }
                )
        with self._lock:
            for item in found:
                if item["key"] not in self._seen:
                    self._seen[item["key"]] = _now()
                    self._items.append({**item, "time": self._seen[item["key"]], "status": 200})

    def all(self) -> list[dict[str, Any]]:
        """Return every message seen, oldest first."""
        with self._lock:
            return list(self._items)


def recent_notifications(dynamodb: Any, table: str, limit: int = _RECENT) -> list[dict[str, Any]]:
    """Return the ledger's most recent notifications, each with the status of its deliveries (first page)."""
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="delivery_key = :record",
        ExpressionAttributeValues={":record": {"S": NOTIFICATION_KEY}},
        ProjectionExpression="notification_id, created_at",
    )
    records: list[dict[str, Any]] = [item for page in pages for item in page.get("Items", [])]
    records.sort(key=lambda item: item.get("created_at", {}).get("S", ""), reverse=True)
    ledger = DeliveryLedger(dynamodb, table)
    notifications = []
    for item in records[:limit]:
        ledger_page = ledger.page(item["notification_id"]["S"])
        record = ledger_page.record
        notifications.append(
            {
                "notification_id": record.notification_id,
                "channel": record.channel,
                "topic": record.topic,
                "created_at": record.created_at,
                "deliveries": [
                    {
                        "integration": entry.delivery_key,
                        "type": entry.type,
                        "status": entry.status.value,
                        "attempts": entry.attempts,
                        "last_error": entry.last_error,
                        "updated_at": entry.updated_at,
                    }
                    for entry in ledger_page.entries
                ],
            }
        )
    return notifications


class LocalPage:
    """Serves ``/_local/`` (HTML) and ``/_local/api/state`` (the same data as JSON)."""

    def __init__(self, records: Records, outbox: MotoOutbox, ledger: Callable[[], list[dict[str, Any]]]) -> None:
        self._records = records
        self._outbox = outbox
        self._ledger = ledger

    def state(self) -> dict[str, Any]:
        """Return the messages by channel (newest first) and the recent notifications."""
        self._outbox.scan()
        by_channel: dict[str, list[dict[str, Any]]] = {channel: [] for channel in CHANNELS}
        for item in [*self._records.all(), *self._outbox.all()]:
            by_channel.setdefault(item["channel"], []).append(
                {key: item.get(key) for key in ("time", "channel", "target", "title", "text", "status")}
            )
        for items in by_channel.values():
            items.sort(key=lambda item: item["time"], reverse=True)
        try:
            notifications = self._ledger()
            ledger_error = None
        except Exception as exc:
            notifications, ledger_error = [], str(exc)
        return {
            "generated_at": _now(),
            "channels": by_channel,
            "notifications": notifications,
            "ledger_error": ledger_error,
        }

    def serve(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, list[str]], bytes]:
        """Answer a request under ``/_local/``."""
        if path.rstrip("/") == "/_local/api/state":
            return 200, {"Content-Type": ["application/json"]}, json.dumps(self.state()).encode()
        if path.rstrip("/") != "/_local":
            return 404, {"Content-Type": ["application/json"]}, b'{"message": "no such local page"}'
        if path == "/_local":
            return 301, {"Location": ["/_local/"]}, b""
        state = self.state()
        body = _fragment(state) if query.get("fragment") else _PAGE.replace("{{main}}", _fragment(state))
        return 200, {"Content-Type": ["text/html; charset=utf-8"], "Cache-Control": ["no-store"]}, body.encode()


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _message_text(item: dict[str, Any]) -> str:
    text = item.get("text")
    if not isinstance(text, str):
        text = json.dumps(text)
    return text if len(text) < 2000 else text[:2000] + "…"


def _fragment(state: dict[str, Any]) -> str:
    parts = [f'<p class="meta">Updated <time>{_e(state["generated_at"])}</time></p>', '<section class="channels">']
    for channel, items in state["channels"].items():
        parts.append(f'<article class="channel" data-channel="{_e(channel)}"><h2>{_e(_TITLES.get(channel, channel))} ')
        parts.append(f'<span class="count">{len(items)}</span></h2>')
        if not items:
            parts.append('<p class="empty">nothing yet</p>')
        for item in items[:50]:
            ok = int(item.get("status") or 200) < 400
            answered = "" if ok else " <b>answered " + _e(item.get("status")) + "</b>"
            title = '<div class="title">' + _e(item["title"]) + "</div>" if item.get("title") else ""
            parts.append(
                f'<div class="message {"ok" if ok else "failed"}"><div class="head"><time>{_e(item["time"])}</time> '
                f'<span class="target">{_e(item.get("target"))}</span>{answered}</div>'
                f"{title}<pre>{_e(_message_text(item))}</pre></div>"
            )
        parts.append("</article>")
    parts.append("</section><h2>Recent notifications (ledger)</h2>")
    if state.get("ledger_error"):
        parts.append(f'<p class="failed">The ledger could not be read: {_e(state["ledger_error"])}</p>')
    parts.append(
        '<table class="ledger"><thead><tr><th>created</th><th>notification</th><th>channel/topic</th>'
        "<th>integration</th><th>type</th><th>status</th><th>attempts</th><th>last error</th></tr></thead><tbody>"
    )
    if not state["notifications"]:
        parts.append('<tr><td colspan="8" class="empty">no notification yet</td></tr>')
    for notification in state["notifications"]:
        rows = notification["deliveries"]
        for index, delivery in enumerate(rows):
            lead = (
                f'<td rowspan="{len(rows)}">{_e(notification["created_at"])}</td>'
                f'<td rowspan="{len(rows)}"><code>{_e(notification["notification_id"])}</code></td>'
                f'<td rowspan="{len(rows)}">{_e(notification["channel"])}/{_e(notification["topic"])}</td>'
                if index == 0
                else ""
            )
            status = _e(delivery["status"])
            parts.append(
                f'<tr data-notification="{_e(notification["notification_id"])}">{lead}'
                f"<td>{_e(delivery['integration'])}</td><td>{_e(delivery['type'])}</td>"
                f'<td><span class="status {status}">{status}</span></td>'
                f"<td>{_e(delivery['attempts'])}</td><td>{_e(delivery['last_error'] or '')}</td></tr>"
            )
    parts.append("</tbody></table>")
    return "".join(parts)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>notify · local stack</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:12px 24px}header h1{margin:0;font-size:18px}
 header p{margin:4px 0 0;color:#b8c0d0}main{padding:16px 24px}.meta{color:#667}
 .channels{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}
 .channel{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px 12px;max-height:420px;overflow:auto}
 .channel h2{font-size:15px;margin:4px 0 8px}.count{background:#e8ecf3;border-radius:10px;padding:0 8px;font-size:12px}
 .message{border-top:1px solid #eef0f4;padding:6px 0}.message .head{color:#556;font-size:12px}
 .message.failed{background:#fff4f4}.title{font-weight:600}
 pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font:12px/1.35 ui-monospace,monospace}
 .empty{color:#99a}table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
 th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:left;vertical-align:top}
 .status{border-radius:4px;padding:1px 6px}.delivered{background:#d9f5e1}.queued{background:#e8ecf3}
 .retrying{background:#fff1c9}.failed,.dead{background:#ffd9d9}
</style></head>
<body data-refreshes="0"><header><h1>notify · local stack</h1>
<p>What the service delivered on this machine, newest first. The page refreshes every two seconds.</p></header>
<main id="main">{{main}}</main>
<script>
async function refresh(){
  try{
    const r=await fetch('/_local/?fragment=1',{cache:'no-store'});
    if(r.ok){document.getElementById('main').innerHTML=await r.text();
      document.body.dataset.refreshes=String(Number(document.body.dataset.refreshes)+1);}
  }catch(e){}
}
setInterval(refresh,2000);refresh();
</script></body></html>
"""
