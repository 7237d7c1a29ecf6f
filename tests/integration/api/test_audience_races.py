"""Audience writes racing one another, as two Lambda containers (each its own connection) run them at once, on a
real PostgreSQL and moto's SNS: a request is held at one point of its real code to interleave the other."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from api import audience
from core.audience import repository as repository_module
from core.audience.connection import Database
from core.audience.endpoints import PushEndpoints
from core.audience.models import MAX_DEVICES_PER_USER
from core.audience.repository import AudienceRepository
from core.errors import aws_error
from core.ledger import DeliveryLedger
from tests.integration.api import test_audience as audience_tests
from tests.integration.api.test_audience import APP, USER, Api
from tests.support.events import response_json

api = audience_tests.api  # the audience API fixture, on moto and the session's PostgreSQL


class Pause:
    """Holds one call at a point until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def hold(self) -> None:
        self.reached.set()
        assert self.go.wait(20), "never released"


@pytest.fixture
def containers(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> Any:
    """Give each thread its own database connection, as each Lambda container has; closed after the test."""
    local = threading.local()
    made: list[Database] = []

    def repository() -> AudienceRepository:
        if not hasattr(local, "database"):
            local.database = Database(postgres_url)
            made.append(local.database)
        return AudienceRepository(local.database)

    monkeypatch.setattr(audience, "repository", repository)
    yield
    for database in made:
        database.close()


def _held_after(monkeypatch: pytest.MonkeyPatch, name: str, thread: str) -> Pause:
    """Hold the thread named ``thread`` once it has run the repository's ``name`` (a helper inside its transaction)."""
    pause = Pause()
    original = getattr(repository_module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        found = original(*args, **kwargs)
        if threading.current_thread().name == thread and not pause.reached.is_set():
            pause.hold()
        return found

    monkeypatch.setattr(repository_module, name, held)
    return pause


def _interleave(first: Callable[[], Any], second: Callable[[], Any], pause: Pause, name: str) -> tuple[Any, Any]:
    """Run ``first`` in a thread named ``name`` until it is held, then ``second``; release the first a moment after
    the second has started (and waits on its lock); return both answers."""
    answers: dict[str, Any] = {}
    one = threading.Thread(target=lambda: answers.update(first=first()), name=name)
    one.start()
    assert pause.reached.wait(20)
    two = threading.Thread(target=lambda: answers.update(second=second()))
    two.start()
    time.sleep(1.5)
    pause.go.set()
    one.join(20)
    two.join(20)
    return answers["first"], answers["second"]


def _held_in(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, thread: str, when: Callable[[], bool]) -> Pause:
    """Hold the thread named ``thread`` as it calls ``module.name``, the first time ``when()`` says so (asked on each
    of its calls), before the call."""
    pause = Pause()
    original = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == thread and not pause.reached.is_set() and when():
            pause.hold()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, held)
    return pause


def _device_rows(db: Any) -> list[tuple[str, str]]:
    db.rollback()
    with db.cursor() as cursor:
        cursor.execute("SELECT user_id, endpoint_arn FROM devices ORDER BY user_id")
        rows = cursor.fetchall()
    db.rollback()
    return rows


@pytest.mark.usefixtures("containers")
@pytest.mark.parametrize("deleted", ["user", "app"])
@pytest.mark.parametrize("held", ["locked", "written", "sns answered"])
def test_deletion_during_a_registration_deletes_the_endpoint_it_made(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any, deleted: str, held: str
) -> None:
    """The deletion read the user's (the app's) devices, then waited on the registration's lock: the cascade took the
    new device, but not its endpoint, left in SNS. Held once SNS answered, before its transaction, the registration
    then found the user (the app) gone: it answered 404 (422), the endpoint named by no device."""
    api.user("ada")
    # Held inside its transaction: once it locked the user's row, once it wrote the device, or once SNS answered.
    if held == "sns answered":
        pause = _held_after_sns(monkeypatch, "registration")
    else:
        pause = _held_after(monkeypatch, "_user_exists" if held == "locked" else "_device", "registration")

    def delete() -> Any:
        if deleted == "user":
            return api.call("DELETE", USER, {"user_id": "ada"})
        return api.admin("DELETE", "/v1/apps/{app}", {"app": "android"})

    registration, deletion = _interleave(lambda: api.register("ada", "token-1"), delete, pause, "registration")

    assert (registration["statusCode"], deletion["statusCode"]) == (201, 204)
    assert _device_rows(db) == []
    assert api.endpoints() == {}


@pytest.mark.usefixtures("containers")
def test_eviction_at_the_bound_never_removes_a_device_just_moved_to_another_user(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ada at 100 devices registers one more while Bob takes her least recently seen token: her eviction, chosen on
    the row as it was, deleted Bob's device (and its new endpoint); Bob's registration answered 200."""
    api.user("ada")
    api.user("bob")
    assert api.register("ada", "shared")["statusCode"] == 201
    for index in range(MAX_DEVICES_PER_USER - 1):
        assert api.register("ada", f"ada-{index}")["statusCode"] == 201
    pause = _held_after(monkeypatch, "_device", "move")

    moved, newest = _interleave(
        lambda: api.register("bob", "shared"), lambda: api.register("ada", "ada-new"), pause, "move"
    )

    assert (moved["statusCode"], newest["statusCode"]) == (200, 201)
    bobs = response_json(api.call("GET", "/v1/users/{user_id}/devices", {"user_id": "bob"}))["devices"]
    assert [item["device_id"] for item in bobs] == [response_json(moved)["device_id"]]


def test_token_longer_than_the_store_indexes_is_refused_naming_it_and_leaves_no_endpoint(api: Api) -> None:
    """A 4096-character token passed the model, then failed the index (54000) with a 502 and an endpoint left."""
    api.user("ada")

    response = api.register("ada", secrets.token_urlsafe(3100)[:4096])

    assert response["statusCode"] == 422
    assert response_json(response)["message"].startswith("token")
    assert api.endpoints() == {}


def test_user_deletion_whose_record_failed_still_deletes_the_users_endpoints(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    """The ledger throttling the deletion's record answered 502 after the rows were gone: the endpoints were never
    deleted, and the retry found no user and no devices to delete them by."""
    api.user("ada")
    assert api.register("ada", "token-1")["statusCode"] == 201
    original = DeliveryLedger.mark_user_deleted
    calls = {"n": 0}

    def throttled_once(self: DeliveryLedger, user_id: str, at: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            error = ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}}, "PutItem"
            )
            raise aws_error(error, "recording the user's deletion")
        original(self, user_id, at)

    monkeypatch.setattr(DeliveryLedger, "mark_user_deleted", throttled_once)

    first = api.call("DELETE", USER, {"user_id": "ada"})
    retried = api.call("DELETE", USER, {"user_id": "ada"})

    assert (first["statusCode"], retried["statusCode"]) == (502, 404)
    assert _device_rows(db) == []
    assert api.endpoints() == {}


def _held_after_sns(monkeypatch: pytest.MonkeyPatch, thread: str) -> Pause:
    """Hold the thread named ``thread`` once SNS has answered its registration's endpoint."""
    pause = Pause()
    original = PushEndpoints.register

    def held(self: PushEndpoints, *args: Any, **kwargs: Any) -> str:
        arn = original(self, *args, **kwargs)
        if threading.current_thread().name == thread and not pause.reached.is_set():
            pause.hold()
        return arn

    monkeypatch.setattr(PushEndpoints, "register", held)
    return pause


@pytest.mark.usefixtures("containers")
def test_one_token_registered_by_two_users_at_once_ends_with_one_device_and_its_endpoint(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    """Ada's registration made the endpoint; Bob's, meanwhile, found it Ada's, deleted it, made his own and wrote the
    device; Ada's then wrote the device back to her with the deleted endpoint: her pushes failed, Bob's endpoint was
    named by no device."""
    api.user("ada")
    api.user("bob")
    pause = _held_after_sns(monkeypatch, "ada")

    first, second = _interleave(
        lambda: api.register("ada", "shared"), lambda: api.register("bob", "shared"), pause, "ada"
    )

    assert (first["statusCode"], second["statusCode"]) == (201, 200)
    assert _device_rows(db) == [("bob", *api.endpoints())]


@pytest.mark.usefixtures("containers")
def test_app_moved_to_another_platform_application_while_a_device_registers_is_409(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    """The app's PUT counted its devices without locking the app's row: a registration holding it (its endpoint made
    on the old platform application) committed its device while the PUT waited, and the PUT moved the app anyway.
    The device said APNS, its endpoint was a GCM one on the application the app left."""
    api.user("ada")
    other = api.sns.create_platform_application(
        Name="ios", Platform="APNS", Attributes={"PlatformCredential": "key", "PlatformPrincipal": "cert"}
    )["PlatformApplicationArn"]
    pause = _held_after_sns(monkeypatch, "registration")

    registration, moved = _interleave(
        lambda: api.register("ada", "token-1"),
        lambda: api.admin("PUT", APP, {"app": "android"}, {"platform_application_arn": other}),
        pause,
        "registration",
    )

    assert registration["statusCode"] == 201
    assert moved["statusCode"] == 409, response_json(moved)
    devices = response_json(api.call("GET", "/v1/users/{user_id}/devices", {"user_id": "ada"}))["devices"]
    assert [device["platform"] for device in devices] == ["GCM"]


@pytest.mark.usefixtures("containers")
def test_device_deleted_while_its_token_registers_again_leaves_no_device_on_a_deleted_endpoint(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    """The app registered its token again (SNS answered the existing endpoint) while the device's DELETE ran: the
    delete committed, then deleted the endpoint; the registration wrote the device back with that deleted endpoint
    (201), and every push to it failed."""
    api.user("ada")
    first = response_json(api.register("ada", "token-1"))
    pause = _held_after_sns(monkeypatch, "registration")

    registration, deletion = _interleave(
        lambda: api.register("ada", "token-1"),
        lambda: api.unregister("ada", first["device_id"]),
        pause,
        "registration",
    )

    # The registration went first (the same device again, 200), the deletion after it: device and endpoint gone.
    assert (registration["statusCode"], deletion["statusCode"]) == (200, 204)
    endpoints = api.endpoints()
    assert [arn for _, arn in _device_rows(db) if arn not in endpoints] == []


@pytest.mark.usefixtures("containers")
def test_device_removed_at_the_bound_while_its_token_registers_again_keeps_a_live_endpoint(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    """Ada at the bound registered one more: her least recently seen device went, its endpoint deleted after the
    commit. Her phone registering that token meanwhile took the endpoint SNS still had, then lost it."""
    from core.audience import devices as devices_module

    api.user("ada")
    for index in range(MAX_DEVICES_PER_USER):
        assert api.register("ada", f"ada-{index}")["statusCode"] == 201
    pause = _held_in(monkeypatch, devices_module, "delete_endpoints", "evict", lambda: True)

    newest, again = _interleave(
        lambda: api.register("ada", "ada-new"), lambda: api.register("ada", "ada-0"), pause, "evict"
    )

    assert (newest["statusCode"], again["statusCode"]) == (201, 201)
    endpoints = api.endpoints()
    assert [arn for _, arn in _device_rows(db) if arn not in endpoints] == []


@pytest.mark.usefixtures("containers")
def test_device_deleted_while_a_registration_removes_it_at_the_bound_leaves_no_endpoint_named_by_no_device(
    api: Api, monkeypatch: pytest.MonkeyPatch, db: Any
) -> None:
    """Ada at the bound registered one more, removing her least recently seen device while her app deleted that very
    device: the deletion held the token's lock, so the removal left the endpoint to it, and the deletion then found no
    row (404) and deleted nothing. The endpoint stayed in SNS, named by no device."""
    api.user("ada")
    oldest = response_json(api.register("ada", "ada-0"))
    for index in range(1, MAX_DEVICES_PER_USER):
        assert api.register("ada", f"ada-{index}")["statusCode"] == 201
    calls = iter(range(1, 1_000))
    # Held at its second device read: the first removed row, once the removal's DELETE ran.
    pause = _held_in(monkeypatch, repository_module, "_device", "evict", lambda: next(calls) == 2)

    newest, deletion = _interleave(
        lambda: api.register("ada", "ada-new"),
        lambda: api.unregister("ada", oldest["device_id"]),
        pause,
        "evict",
    )

    assert (newest["statusCode"], deletion["statusCode"]) == (201, 404)
    named = {arn for _, arn in _device_rows(db)}
    assert len(named) == MAX_DEVICES_PER_USER
    assert [arn for arn in api.endpoints() if arn not in named] == []
