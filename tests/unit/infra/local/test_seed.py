"""The demo seed against an in-memory API: created once, then kept with its hash across restarts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from infra.local.config import LocalConfig
from infra.local.seed import DEMO_FILE, SeedError, seed

PATH = "/v1/channels/demo/topics/welcome"


class FakeAws:
    """The SES and SNS calls the seed makes, answering as moto does."""

    def __call__(self, service: str) -> Any:
        return self

    def verify_email_identity(self, EmailAddress: str) -> None:
        self.sender = EmailAddress

    def create_platform_application(self, Name: str, Platform: str, Attributes: dict[str, str]) -> dict[str, str]:
        return {"PlatformApplicationArn": f"arn:aws:sns:us-east-1:123456789012:app/{Platform}/{Name}"}

    def create_platform_endpoint(self, PlatformApplicationArn: str, Token: str) -> dict[str, str]:
        return {"EndpointArn": PlatformApplicationArn.replace(":app/", ":endpoint/") + "/0c1d"}


class FakeApi:
    """The admin topic routes: GET, PUT (201 with a hash on create, 200 keeping it on replace), rotate-hash."""

    def __init__(self) -> None:
        self.topic: dict[str, Any] | None = None
        self.topic_hash = ""
        self.calls: list[tuple[str, str]] = []
        self._clock = itertools.count(1)
        self._hashes = (f"hash-{n}" for n in itertools.count(1))

    def _stamp(self) -> str:
        return f"2026-01-01T00:00:{next(self._clock):02d}Z"

    def send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        assert headers == {"Authorization": "Bearer local-admin-token"}
        self.calls.append((method, path))
        if method == "GET":
            return (200, self.topic) if self.topic else (404, {"message": "no such topic"})
        if method == "PUT":
            targets = [{k: v for k, v in item.items() if k != "credentials"} for item in body["integrations"]]
            created = self.topic is None
            self.topic = {"channel": "demo", "topic": "welcome", "integrations": targets, "updated_at": self._stamp()}
            if created:
                self.topic_hash = next(self._hashes)
                return 201, {**self.topic, "topic_hash": self.topic_hash}
            return 200, self.topic
        assert (method, path) == ("POST", f"{PATH}/rotate-hash")
        assert self.topic is not None
        self.topic_hash = next(self._hashes)
        self.topic["updated_at"] = self._stamp()
        return 200, {"topic_hash": self.topic_hash}


@pytest.fixture
def config(tmp_path: Path) -> LocalConfig:
    return LocalConfig.from_env({"LOCAL_STATE_DIR": str(tmp_path)})


def test_seed_without_a_topic_creates_it_and_keeps_its_hash(config: LocalConfig) -> None:
    api = FakeApi()

    demo = seed(config, FakeAws(), api.send)

    assert demo.topic_hash == api.topic_hash == "hash-1"
    assert (config.snapshot_dir / DEMO_FILE).stat().st_mode & 0o777 == 0o600


def test_seed_again_keeps_the_topic_and_prints_the_same_hash(config: LocalConfig) -> None:
    api = FakeApi()
    first = seed(config, FakeAws(), api.send)
    api.calls.clear()

    again = seed(config, FakeAws(), api.send)

    assert again.topic_hash == first.topic_hash == api.topic_hash
    assert api.calls == [("GET", PATH)]


def test_seed_after_the_hash_was_rotated_elsewhere_rotates_to_learn_it(config: LocalConfig) -> None:
    api = FakeApi()
    seed(config, FakeAws(), api.send)
    api.send("POST", f"{PATH}/rotate-hash", None, {"Authorization": "Bearer local-admin-token"})

    again = seed(config, FakeAws(), api.send)

    assert again.topic_hash == api.topic_hash == "hash-3"
    assert seed(config, FakeAws(), api.send).topic_hash == "hash-3"


def test_seed_without_the_kept_hash_rotates_once(config: LocalConfig) -> None:
    api = FakeApi()
    seed(config, FakeAws(), api.send)
    (config.snapshot_dir / DEMO_FILE).unlink()

    again = seed(config, FakeAws(), api.send)

    assert again.topic_hash == api.topic_hash == "hash-2"


def test_seed_on_other_ports_points_the_topic_at_them_and_keeps_the_hash(tmp_path: Path) -> None:
    api = FakeApi()
    first = seed(LocalConfig.from_env({"LOCAL_STATE_DIR": str(tmp_path)}), FakeAws(), api.send)

    moved = seed(LocalConfig.from_env({"LOCAL_STATE_DIR": str(tmp_path), "PORT": "4000"}), FakeAws(), api.send)

    assert moved.topic_hash == first.topic_hash == api.topic_hash
    assert api.topic is not None
    webhook = next(item for item in api.topic["integrations"] if item["name"] == "webhook")
    assert webhook["target"]["url"] == "http://127.0.0.1:4001/webhook/demo"


def test_seed_refused_by_the_api_raises(config: LocalConfig) -> None:
    with pytest.raises(SeedError, match="reading the demo topic answered 503"):
        seed(config, FakeAws(), lambda method, path, body, headers: (503, {"message": "starting"}))
