"""The demo: a channel/topic with one integration of each type, pointed at the local peers, created through the API."""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from infra.local.config import LocalConfig

DEMO_CHANNEL = "demo"
DEMO_TOPIC = "welcome"
DEMO_SENDER = "notify@example.com"


class SeedError(Exception):
    """The demo could not be created."""


@dataclass(frozen=True)
class Demo:
    """The seeded topic and its hash."""

    channel: str
    topic: str
    topic_hash: str


def request(
    url: str, method: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """Send one JSON request; return status, parsed body and headers (errors included, never raised)."""
    data = None if body is None else json.dumps(body).encode()
    prepared = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(prepared, timeout=30) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(), exc.code, dict(exc.headers)
    return status, json.loads(raw) if raw else None, got


def integrations(config: LocalConfig, endpoint_arn: str) -> list[dict[str, Any]]:
    """Return the demo's integrations: email, Slack, Telegram, webhook and push, all delivering locally."""
    peers = config.receiver_url
    return [
        {
            "name": "email",
            "type": "email",
            "target": {"to": ["ada@example.com"], "from": DEMO_SENDER},
            "model": {
                "subject": "Hello $name",
                "text": "Hi $name, the local stack delivered this email.",
                "html": "<p>Hi <b>$name</b>, the local stack delivered this email.</p>",
            },
        },
        {
            "name": "slack",
            "type": "slack",
            "credentials": {"webhook_url": f"{peers}/slack/demo"},
            "model": "Hello *$name*, from the local stack",
        },
        {
            "name": "telegram",
            "type": "telegram",
            "target": {"chat_id": "4242"},
            "credentials": {"bot_token": "123456:local-demo-bot"},
            "model": "Hello $name, from the local stack",
        },
        {
            "name": "webhook",
            "type": "webhook",
            "target": {"url": f"{peers}/webhook/demo"},
            "credentials": {"signing_secret": "local-demo-signing-secret"},
            "model": {"event": "demo.welcome", "name": "$name"},
        },
        {"name": "push", "type": "push", "target": {"endpoint_arn": endpoint_arn}, "model": "Hello $name"},
    ]


def seed(config: LocalConfig, client: Any) -> Demo:
    """Verify the demo sender in SES, register a push device in SNS, and create the demo topic through the API."""
    client("ses").verify_email_identity(EmailAddress=DEMO_SENDER)
    sns = client("sns")
    application = sns.create_platform_application(
        Name="notify-local-demo", Platform="GCM", Attributes={"PlatformCredential": "local-demo"}
    )["PlatformApplicationArn"]
    device = "local-demo-device"
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=application, Token=device)["EndpointArn"]
    url = f"{config.api_url}/v1/channels/{DEMO_CHANNEL}/topics/{DEMO_TOPIC}"
    admin = {"Authorization": f"Bearer {config.admin_token}"}
    status, body, _ = request(url, "PUT", {"integrations": integrations(config, endpoint)}, admin)
    if status == 200:
        status, body, _ = request(f"{url}/rotate-hash", "POST", None, admin)
    if status not in {200, 201} or not isinstance(body, dict) or "topic_hash" not in body:
        raise SeedError(f"creating the demo topic answered {status}: {body}")
    return Demo(DEMO_CHANNEL, DEMO_TOPIC, str(body["topic_hash"]))


def curl_lines(config: LocalConfig, demo: Demo) -> list[str]:
    """Return shell lines that publish to the demo topic and read the notification's status."""
    publish_url = f"{config.api_url}/v1/notifications/{demo.channel}/{demo.topic}"
    key = shlex.quote(f"x-api-key: {config.api_key}")
    topic_hash = shlex.quote(f"x-topic-hash-x: {demo.topic_hash}")
    return [
        f"ID=$(curl -s -D - -o /dev/null -X POST {publish_url} \\",
        f"       -H {key} -H {topic_hash} \\",
        '       -H \'content-type: application/json\' -d \'{"metadata": {"name": "Ada"}}\' \\',
        "     | tr -d '\\r' | awk 'tolower($1) == \"x-notification-id:\" {print $2}'); echo \"$ID\"",
        f"curl -s {config.api_url}/v1/notifications/$ID -H {key}",
    ]
