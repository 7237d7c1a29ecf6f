"""The local receiver's records keep each body as received, so a webhook's signature verifies against them, as the
README's recipe does it."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.channels.webhook import (
    DELIVERY_KEY_HEADER,
    ID_HEADER,
    SIGNATURE_V2_HEADER,
    TIMESTAMP_HEADER,
    signature_v2,
)
from tests.e2e.conftest import ROOT, Stack

pytestmark = pytest.mark.e2e

# The demo topic's webhook secret, which the README's recipe names.
SIGNING_SECRET = "local-demo-signing-secret"
RECIPE_HEADING = "Verify a webhook signature"
README_RECEIVER = "http://127.0.0.1:3001"


def _signed_webhook(stack: Stack, metadata: dict[str, Any]) -> dict[str, Any]:
    """Deliver one signed webhook (a body with non-ASCII text and HTML); return the receiver's record of it."""
    hook = {
        "name": "signed.hook",
        "type": "webhook",
        "target": {"url": f"{stack.receiver}/webhook/signed-{uuid.uuid4().hex[:8]}"},
        "credentials": {"signing_secret": SIGNING_SECRET},
        "model": {"order": "$order", "note": "$note", "total": "$total"},
    }
    channel, topic, topic_hash = stack.create_topic([hook])
    notification_id = stack.publish(channel, topic, topic_hash, metadata).headers["x-notification-id"]
    stack.wait_for_status(notification_id, lambda rows: rows[0]["status"] == "delivered", 20)
    found = [record for record in stack.records() if record["headers"].get(ID_HEADER) == notification_id]
    assert len(found) == 1, found
    return found[0]


def recipe(readme: str) -> str:
    """Return the first ```python block after the heading that names the recipe."""
    heading = re.search(rf"^#+ .*{re.escape(RECIPE_HEADING)}.*$", readme, re.M | re.I)
    if heading is None:
        pytest.fail(f"README.md has no heading containing {RECIPE_HEADING!r}")
    block = re.compile(r"^```python\n(.*?)^```", re.M | re.S).search(readme, heading.end())
    if block is None:
        pytest.fail(f"README.md has no ```python block after the heading {heading.group(0)!r}")
    return block.group(1)


def test_receiver_raw_body_verifies_the_webhook_signature(stack: Stack) -> None:
    record = _signed_webhook(stack, {"order": "A-1", "note": "Zoë <b>&</b> ✓", "total": "42.50"})
    headers = record["headers"]
    body = base64.b64decode(record["raw_body_base64"])
    expected = signature_v2(
        SIGNING_SECRET, headers[TIMESTAMP_HEADER], headers[ID_HEADER], headers[DELIVERY_KEY_HEADER], body
    )

    assert headers[SIGNATURE_V2_HEADER] == expected
    assert record["raw_body"] == body.decode()
    assert record["body"]["note"] == "Zoë <b>&</b> ✓"


def test_readme_signature_recipe_verifies_the_newest_webhook_record(stack: Stack, tmp_path: Path) -> None:
    code = recipe((ROOT / "README.md").read_text()).replace(README_RECEIVER, stack.receiver)
    assert stack.receiver in code, f"the recipe does not read {README_RECEIVER}/_records"
    record = _signed_webhook(stack, {"order": "A-2", "note": "Ünïcode “quotes”", "total": "1"})

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert record["headers"][ID_HEADER] in done.stdout
