"""The demo: a channel/topic with one integration of each type, pointed at the local peers, created through the API.

The topic is created once and then kept across restarts (the local AWS state is saved under ``.local/aws``): its hash
is stored only hashed, so the seed keeps the hash it was given in ``.local/aws/demo.json`` (private to its owner, like
the rest of the saved state), with the topic's ``updated_at`` at that moment. A later start prints that hash while the
topic is unchanged since; when the topic was changed meanwhile (the hash rotated through the API, say) the seed
rotates the hash once more to learn it. The topic is replaced only when its targets no longer point at this run's
peers (another ``LOCAL_RECEIVER_PORT``); a replace keeps the hash.
"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.local.config import LocalConfig
from infra.local.snapshot import write_private

DEMO_CHANNEL = "demo"
DEMO_TOPIC = "welcome"
DEMO_SENDER = "notify@example.com"
DEMO_FILE = "demo.json"

# One API call: method, path, JSON body (or None) and headers → status and parsed body.
Send = Callable[[str, str, Any, dict[str, str]], tuple[int, Any]]


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


def over_http(api_url: str) -> Send:
    """Return a ``Send`` that calls the API over HTTP at ``api_url``."""

    def send(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        status, parsed, _ = request(api_url + path, method, body, headers)
        return status, parsed

    return send


def _targets_match(view: dict[str, Any], wanted: list[dict[str, Any]]) -> bool:
    """Tell whether every integration of the topic has the name, type and target the demo gives it now."""
    shown = {item.get("name"): item for item in view.get("integrations", []) if isinstance(item, dict)}
    for integration in wanted:
        have = shown.get(integration["name"])
        if have is None or have.get("type") != integration["type"]:
            return False
        target = have.get("target") or {}
        if any(target.get(key) != value for key, value in integration.get("target", {}).items()):
            return False
    return True


def _kept_hash(config: LocalConfig, updated_at: Any) -> str | None:
    """Return the hash saved for the demo topic when the topic is unchanged since it was saved."""
    try:
        saved = json.loads((config.snapshot_dir / DEMO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("updated_at") != updated_at:
        return None
    topic_hash = saved.get("topic_hash")
    return topic_hash if isinstance(topic_hash, str) and topic_hash else None


def _keep_hash(config: LocalConfig, topic_hash: str, updated_at: Any) -> None:
    document = {"channel": DEMO_CHANNEL, "topic": DEMO_TOPIC, "topic_hash": topic_hash, "updated_at": updated_at}
    try:
        write_private(config.snapshot_dir / DEMO_FILE, json.dumps(document))
    except OSError as exc:
        raise SeedError(f"keeping the demo topic's hash in {config.snapshot_dir} failed: {exc.strerror}") from None


def seed(config: LocalConfig, client: Any, send: Send | None = None) -> Demo:
    """Verify the demo sender in SES, register a push device in SNS, and create the demo topic through the API.

    A demo topic that exists already is kept, with its hash (see the module's docstring). ``send`` calls the API;
    by default over HTTP at ``config.api_url``.
    """
    call = send or over_http(config.api_url)
    client("ses").verify_email_identity(EmailAddress=DEMO_SENDER)
    sns = client("sns")
    application = sns.create_platform_application(
        Name="notify-local-demo", Platform="GCM", Attributes={"PlatformCredential": "local-demo"}
    )["PlatformApplicationArn"]
    device = "local-demo-device"
    # The same device again is the same endpoint, under the ARN the kept topic holds.
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=application, Token=device)["EndpointArn"]
    path = f"/v1/channels/{DEMO_CHANNEL}/topics/{DEMO_TOPIC}"
    admin = {"Authorization": f"Bearer {config.admin_token}"}
    wanted = integrations(config, endpoint)
    status, body = call("GET", path, None, admin)
    if status == 404:
        status, body = call("PUT", path, {"integrations": wanted}, admin)
        if status != 201 or not isinstance(body, dict) or "topic_hash" not in body:
            raise SeedError(f"creating the demo topic answered {status}: {body}")
        _keep_hash(config, str(body["topic_hash"]), body.get("updated_at"))
        return Demo(DEMO_CHANNEL, DEMO_TOPIC, str(body["topic_hash"]))
    if status != 200 or not isinstance(body, dict):
        raise SeedError(f"reading the demo topic answered {status}: {body}")
    topic_hash = _kept_hash(config, body.get("updated_at"))
    if not _targets_match(body, wanted):
        status, body = call("PUT", path, {"integrations": wanted}, admin)
        if status != 200 or not isinstance(body, dict):
            raise SeedError(f"pointing the demo topic at this run's peers answered {status}: {body}")
    if topic_hash is None:
        status, rotated = call("POST", f"{path}/rotate-hash", None, admin)
        if status != 200 or not isinstance(rotated, dict) or "topic_hash" not in rotated:
            raise SeedError(f"rotating the demo topic's hash answered {status}: {rotated}")
        topic_hash = str(rotated["topic_hash"])
        status, body = call("GET", path, None, admin)
        if status != 200 or not isinstance(body, dict):
            raise SeedError(f"reading the demo topic answered {status}: {body}")
    _keep_hash(config, topic_hash, body.get("updated_at"))
    return Demo(DEMO_CHANNEL, DEMO_TOPIC, topic_hash)


# The purchase notification topic of the local stage (serverless.yml params purchaseNotificationChannel/Topic) and a
# promotion, so that the checkout one-liner (python -m infra.local.checkout) ends with a credit and a notification.
PURCHASE_CHANNEL = "purchases"
PURCHASE_TOPIC = "completed"
DEMO_PROMO_CODE = "WELCOME10"


def purchase_integrations(config: LocalConfig) -> list[dict[str, Any]]:
    """Return the purchase topic's integrations: a signed webhook to the local receiver."""
    return [
        {
            "name": "webhook",
            "type": "webhook",
            "target": {"url": f"{config.receiver_url}/webhook/purchases"},
            "credentials": {"signing_secret": "local-demo-signing-secret"},
            "model": {
                "event": "purchase.completed",
                "purchase_id": "$purchase_id",
                "customer_id": "$customer_id",
                "amount": "$amount_display",
            },
        }
    ]


def seed_purchases(config: LocalConfig, send: Send | None = None) -> list[str]:
    """Create the purchase notification topic and the demo promotion when they are missing; return what was made."""
    call = send or over_http(config.api_url)
    admin = {"Authorization": f"Bearer {config.admin_token}"}
    made = []
    path = f"/v1/channels/{PURCHASE_CHANNEL}/topics/{PURCHASE_TOPIC}"
    status, body = call("GET", path, None, admin)
    wanted = purchase_integrations(config)
    if status == 404 or (status == 200 and isinstance(body, dict) and not _targets_match(body, wanted)):
        status, body = call("PUT", path, {"integrations": wanted}, admin)
        if status not in {200, 201}:
            raise SeedError(f"creating the purchase topic answered {status}: {body}")
        made.append(f"{PURCHASE_CHANNEL}/{PURCHASE_TOPIC}")
    elif status != 200:
        raise SeedError(f"reading the purchase topic answered {status}: {body}")
    promotion = f"/v1/promotions/{DEMO_PROMO_CODE}"
    status, body = call("GET", promotion, None, admin)
    if status == 404:
        credit = {"credit": {"amount": 1000, "currency": "eur"}, "description": "Welcome: 10 EUR off your next order"}
        status, body = call("PUT", promotion, credit, admin)
        if status not in {200, 201}:
            raise SeedError(f"creating the demo promotion answered {status}: {body}")
        made.append(f"promotion {DEMO_PROMO_CODE}")
    elif status != 200:
        raise SeedError(f"reading the demo promotion answered {status}: {body}")
    return made


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
