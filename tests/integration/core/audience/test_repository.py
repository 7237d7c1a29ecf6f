"""Integration tests of core/audience/repository.py and connection.py against a real PostgreSQL.

The behaviour tests run on the in-memory fake too (``repository`` is parametrised): the fake the unit tests use is
held to what PostgreSQL does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from core.audience.connection import STATEMENT_MARGIN_SECONDS, Database
from core.audience.models import MAX_DEVICES_PER_USER, MAX_SUBSCRIPTIONS_PER_USER, AppRequest, UserRequest
from core.audience.ports import AudienceRepositoryPort
from core.audience.repository import AudienceRepository
from core.audience.sends import SendBusyError
from core.errors import ConflictError, InvalidRequestError, NotFoundError, UpstreamError
from tests.fakes.audience import FakeAudienceRepository, MatchingCondition, endpoint

ARN = "arn:aws:sns:us-east-1:123456789012:app/GCM/android"
LEASE = "6f1c1f4e-0000-4000-8000-000000000001"
OTHER_LEASE = "6f1c1f4e-0000-4000-8000-000000000002"
PARIS = UserRequest(timezone="Europe/Paris", email="a@example.com", data={"plan": "pro", "age": 30})


@dataclass(frozen=True)
class Condition:
    """A compiled condition as core/audience/segments.py makes them."""

    sql: str
    params: tuple[Any, ...]


@pytest.fixture(params=["postgres", "fake"])
def repository(request: pytest.FixtureRequest) -> AudienceRepositoryPort:
    if request.param == "fake":
        return FakeAudienceRepository()
    database: Database = request.getfixturevalue("database")
    return AudienceRepository(database)


@pytest.fixture
def postgres(database: Database) -> AudienceRepository:
    return AudienceRepository(database)


def _with_app_and_users(repository: AudienceRepositoryPort, *user_ids: str) -> None:
    repository.put_app("android", AppRequest(platform_application_arn=ARN))
    for user_id in user_ids:
        repository.put_user(user_id, PARIS)


def test_repository_put_user_new_then_replaced_reports_created_once(repository: AudienceRepositoryPort) -> None:
    first, created = repository.put_user("u1", PARIS)
    second, created_again = repository.put_user("u1", UserRequest(timezone="Asia/Kathmandu"))

    assert (created, created_again) == (True, False)
    assert second.created_at == first.created_at
    assert (second.timezone, second.email, second.data) == ("Asia/Kathmandu", None, {})


def test_repository_get_user_has_devices_and_subscriptions(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1")
    registration = repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))
    repository.put_subscription("u1", "news", "daily")

    user = repository.get_user("u1")

    assert user.data == {"plan": "pro", "age": 30}
    assert [device.device_id for device in user.devices] == [registration.device.device_id]
    assert user.devices[0].platform == "GCM"
    assert [(item.channel, item.topic) for item in user.subscriptions] == [("news", "daily")]


def test_repository_get_user_unknown_raises_not_found(repository: AudienceRepositoryPort) -> None:
    with pytest.raises(NotFoundError):
        repository.get_user("nobody")


def test_repository_delete_user_returns_its_devices_and_removes_everything(
    repository: AudienceRepositoryPort,
) -> None:
    _with_app_and_users(repository, "u1")
    repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))
    repository.put_subscription("u1", "news", "daily")

    devices = repository.delete_user("u1")

    assert [device.endpoint_arn for device in devices] == ["arn:endpoint/1"]
    with pytest.raises(NotFoundError):
        repository.get_user("u1")
    assert repository.subscribers_page("news", "daily", None, 10).users == []
    with pytest.raises(NotFoundError):
        repository.delete_user("u1")


def test_repository_register_device_same_token_again_is_the_same_device(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1")
    first = repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))

    again = repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))

    assert (first.created, again.created) == (True, False)
    assert again.device.device_id == first.device.device_id
    assert again.previous_user_id is None
    assert len(repository.list_devices("u1")) == 1


def test_repository_register_device_of_another_user_moves_it(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1", "u2")
    first = repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))

    moved = repository.register_device("u2", "android", "tok", endpoint("arn:endpoint/1"))

    assert moved.device.device_id == first.device.device_id
    assert (moved.created, moved.previous_user_id, moved.device.user_id) == (False, "u1", "u2")
    assert repository.list_devices("u1") == []
    assert [device.device_id for device in repository.list_devices("u2")] == [first.device.device_id]


def test_repository_register_device_disabled_one_again_enables_it(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1")
    repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))

    assert repository.disable_device("arn:endpoint/1") == 1
    assert repository.disable_device("arn:endpoint/1") == 0
    assert repository.devices_of(["u1"]) == {}
    assert repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1")).device.enabled is True
    assert [device.enabled for device in repository.devices_of(["u1"])["u1"]] == [True]


def test_repository_register_device_unknown_app_names_the_app_field(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1")

    with pytest.raises(InvalidRequestError) as raised:
        repository.register_device("u1", "ios", "tok", endpoint("arn:endpoint/1"))

    assert raised.value.field == "app"


def test_repository_register_device_unknown_user_raises_not_found(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository)

    with pytest.raises(NotFoundError):
        repository.register_device("nobody", "android", "tok", endpoint("arn:endpoint/1"))


def test_repository_device_of_another_user_is_not_found(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1", "u2")
    device = repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1")).device

    with pytest.raises(NotFoundError):
        repository.get_device("u2", device.device_id)
    with pytest.raises(NotFoundError):
        repository.delete_device("u2", device.device_id)
    with pytest.raises(NotFoundError):
        repository.get_device("u1", "not-a-uuid")
    assert repository.delete_device("u1", device.device_id) == device


def test_repository_delete_app_deletes_its_devices(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1")
    repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))

    devices = repository.delete_app("android")

    assert [device.token for device in devices] == ["tok"]
    assert repository.list_devices("u1") == []
    assert repository.list_apps() == []
    with pytest.raises(NotFoundError):
        repository.get_app("android")


def test_repository_app_devices_oldest_first_then_deleted_while_they_keep_their_endpoint(
    repository: AudienceRepositoryPort,
) -> None:
    _with_app_and_users(repository, "u1", "u2")
    for index in range(3):
        repository.register_device(
            "u1" if index % 2 else "u2", "android", f"tok{index}", endpoint(f"arn:endpoint/{index}")
        )

    first = repository.app_devices("android", 2)
    # tok1 registered again meanwhile, on a new endpoint: its row stays, with the endpoint it has now.
    repository.register_device("u1", "android", "tok1", endpoint("arn:endpoint/1-new"))
    deleted = repository.delete_devices(first)

    assert [device.token for device in first] == ["tok0", "tok1"]
    assert deleted == 1
    assert [(d.token, d.endpoint_arn) for d in repository.app_devices("android", 10)] == [
        ("tok1", "arn:endpoint/1-new"),
        ("tok2", "arn:endpoint/2"),
    ]
    assert repository.delete_devices([]) == 0
    with pytest.raises(NotFoundError):
        repository.app_devices("ios", 2)


def test_repository_put_app_replaced_takes_the_new_platform(repository: AudienceRepositoryPort) -> None:
    repository.put_app("mobile", AppRequest(platform_application_arn=ARN))
    apns = "arn:aws:sns:us-east-1:123456789012:app/APNS_SANDBOX/ios"

    app, created = repository.put_app("mobile", AppRequest(platform_application_arn=apns))

    assert (created, app.platform, repository.get_app("mobile").platform_application_arn) == (
        False,
        "APNS_SANDBOX",
        apns,
    )


def test_repository_subscriptions_put_twice_is_one_and_delete_unknown_not_found(
    repository: AudienceRepositoryPort,
) -> None:
    _with_app_and_users(repository, "u1")

    assert repository.put_subscription("u1", "news", "daily") is True
    assert repository.put_subscription("u1", "news", "daily") is False
    repository.delete_subscription("u1", "news", "daily")
    assert repository.list_subscriptions("u1") == []
    with pytest.raises(NotFoundError):
        repository.delete_subscription("u1", "news", "daily")


def test_repository_subscriptions_of_a_user_are_bounded(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "u1", "u2")
    for index in range(MAX_SUBSCRIPTIONS_PER_USER):
        assert repository.put_subscription("u1", "news", f"t{index:04}") is True

    with pytest.raises(ConflictError, match=f"at most {MAX_SUBSCRIPTIONS_PER_USER} subscriptions"):
        repository.put_subscription("u1", "news", "one-more")
    # Subscribing again is still the same subscription, another user is not bounded by this one's, and a subscription
    # deleted makes room for one.
    assert repository.put_subscription("u1", "news", "t0000") is False
    assert repository.put_subscription("u2", "news", "one-more") is True
    repository.delete_subscription("u1", "news", "t0001")
    assert repository.put_subscription("u1", "news", "one-more") is True
    assert len(repository.list_subscriptions("u1")) == MAX_SUBSCRIPTIONS_PER_USER
    with pytest.raises(NotFoundError):
        repository.put_subscription("nobody", "news", "daily")


def test_repository_register_device_beyond_the_bound_removes_the_least_recently_seen(
    repository: AudienceRepositoryPort,
) -> None:
    _with_app_and_users(repository, "u1", "u2")
    first = [
        repository.register_device("u1", "android", f"tok{index:03}", endpoint(f"arn:endpoint/{index}"))
        for index in range(MAX_DEVICES_PER_USER)
    ]
    assert all(registration.removed == () for registration in first)
    repository.disable_device("arn:endpoint/50")
    repository.register_device("u1", "android", "tok000", endpoint("arn:endpoint/0"))  # seen again: now the most recent

    # A disabled device goes first, then the least recently seen: the second registered, the first was seen again.
    disabled_gone = repository.register_device("u1", "android", "tok100", endpoint("arn:endpoint/100"))
    oldest_gone = repository.register_device("u1", "android", "tok101", endpoint("arn:endpoint/101"))
    moved = repository.register_device("u2", "android", "tok101", endpoint("arn:endpoint/101"))
    moved_back = repository.register_device("u1", "android", "tok101", endpoint("arn:endpoint/101"))

    assert [device.endpoint_arn for device in disabled_gone.removed] == ["arn:endpoint/50"]
    assert [device.endpoint_arn for device in oldest_gone.removed] == ["arn:endpoint/1"]
    assert (moved.removed, moved_back.removed) == ((), ())  # u1 had room again once tok101 moved away
    devices = repository.list_devices("u1")
    assert len(devices) == MAX_DEVICES_PER_USER
    assert {device.endpoint_arn for device in devices}.isdisjoint({"arn:endpoint/50", "arn:endpoint/1"})
    assert {"arn:endpoint/0", "arn:endpoint/100", "arn:endpoint/101"} <= {device.endpoint_arn for device in devices}


class _SlowCommit(Database):
    """The service's connection whose transactions stay open a while after their work (a slow Lambda, a GC pause)."""

    def run(self, work: Any, action: str) -> Any:
        def slowly(cursor: Any) -> Any:
            result = work(cursor)
            time.sleep(0.5)
            return result

        return super().run(slowly, action)


def test_repository_register_device_at_the_bound_while_the_oldest_is_seen_again_keeps_it(
    postgres: AudienceRepository, postgres_url: str
) -> None:
    _with_app_and_users(postgres, "u1")
    for index in range(MAX_DEVICES_PER_USER):
        postgres.register_device("u1", "android", f"tok{index:03}", endpoint(f"arn:endpoint/{index}"))
    seen_again: dict[str, Any] = {}
    slow = AudienceRepository(_SlowCommit(postgres_url))
    thread = threading.Thread(
        target=lambda: seen_again.update(r=slow.register_device("u1", "android", "tok000", endpoint("arn:endpoint/0")))
    )
    thread.start()
    time.sleep(0.2)  # the registration seen again holds its transaction open

    other = AudienceRepository(Database(postgres_url)).register_device(
        "u1", "android", "new", endpoint("arn:endpoint/new")
    )
    thread.join()

    # Read from a view before tok000 was seen again, the other registration removed it: a 200, then the device and
    # its endpoint were gone. Registrations of a user now go one after another.
    assert seen_again["r"].created is False
    assert [device.token for device in other.removed] == ["tok001"]
    tokens = {device.token for device in postgres.list_devices("u1")}
    assert "tok000" in tokens
    assert len(tokens) == MAX_DEVICES_PER_USER


def test_repository_subscribers_page_walks_every_subscriber_once(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, *(f"u{index:02}" for index in range(7)))
    for index in range(7):
        repository.put_subscription(f"u{index:02}", "news", "daily" if index != 3 else "weekly")

    seen: list[str] = []
    after = None
    while True:
        page = repository.subscribers_page("news", "daily", after, 2)
        seen += [user.user_id for user in page.users]
        if page.next_after is None:
            break
        after = page.next_after

    assert seen == ["u00", "u01", "u02", "u04", "u05", "u06"]


def test_repository_subscribers_page_of_zones_reads_only_their_users(repository: AudienceRepositoryPort) -> None:
    for index in range(6):
        repository.put_user(f"u{index}", UserRequest(timezone="Asia/Tokyo" if index % 2 else "Europe/Paris"))
        repository.put_subscription(f"u{index}", "news", "daily")

    page = repository.subscribers_page("news", "daily", "u1", 10, ["Asia/Tokyo"])

    assert [user.user_id for user in page.users] == ["u3", "u5"]


def test_repository_segments_put_get_list_delete(repository: AudienceRepositoryPort) -> None:
    where = {"where": {"field": "plan", "eq": "pro"}}

    segment, created = repository.put_segment("pros", where)
    _, created_again = repository.put_segment("pros", where)

    assert (created, created_again) == (True, False)
    assert repository.get_segment("pros").definition == where
    assert [item.name for item in repository.list_segments()] == ["pros"]
    repository.delete_segment("pros")
    with pytest.raises(NotFoundError):
        repository.get_segment("pros")
    assert segment.name == "pros"


def test_repository_users_page_keyset_pages_end_with_no_next(repository: AudienceRepositoryPort) -> None:
    _with_app_and_users(repository, "a", "b", "c")
    everyone = MatchingCondition("true", ())

    first = repository.users_page(everyone, None, 2)
    last = repository.users_page(everyone, first.next_after, 2)

    assert ([user.user_id for user in first.users], first.next_after) == (["a", "b"], "b")
    assert ([user.user_id for user in last.users], last.next_after) == (["c"], None)


def test_repository_users_page_limit_out_of_range_names_limit(repository: AudienceRepositoryPort) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        repository.users_page(MatchingCondition("true", ()), None, 0)

    assert raised.value.field == "limit"


# PostgreSQL only: compiled SQL, errors, the connection.


def test_repository_users_page_condition_params_are_bound_not_spliced(postgres: AudienceRepository) -> None:
    postgres.put_user("a", PARIS)
    postgres.put_user("b", UserRequest(timezone="Asia/Tokyo", data={"plan": "free"}))
    pro = Condition("u.data @> %s::jsonb AND u.timezone = %s", ('{"plan": "pro"}', "Europe/Paris"))
    hostile = Condition("u.timezone = %s", ("x' OR '1'='1",))

    assert [user.user_id for user in postgres.users_page(pro, None, 10).users] == ["a"]
    assert postgres.count_users(pro) == 1
    assert postgres.count_users(hostile) == 0


def test_repository_users_by_ids_returns_existing_in_order(postgres: AudienceRepository) -> None:
    postgres.put_user("b", PARIS)
    postgres.put_user("a", PARIS)

    assert [user.user_id for user in postgres.users_by_ids(["b", "zz", "a"])] == ["a", "b"]


def test_repository_unique_violation_becomes_conflict(postgres: AudienceRepository, db: Any) -> None:
    postgres.put_user("u1", PARIS)
    postgres.put_app("android", AppRequest(platform_application_arn=ARN))
    device = postgres.register_device("u1", "android", "secret-token-1", endpoint("arn:endpoint/1")).device
    postgres.register_device("u1", "android", "secret-token-2", endpoint("arn:endpoint/2"))

    def move_token(cursor: Any) -> None:
        cursor.execute("UPDATE devices SET token = 'secret-token-2' WHERE id = %s", (device.device_id,))

    with pytest.raises(ConflictError) as raised:
        postgres._db.run(move_token, "updating device")

    assert "secret-token" not in str(raised.value)
    assert isinstance(raised.value.__cause__, psycopg2.errors.UniqueViolation)


def test_repository_error_leaves_no_aborted_transaction(postgres: AudienceRepository, database: Database) -> None:
    postgres.put_user("u1", PARIS)
    with pytest.raises(InvalidRequestError):
        postgres.register_device("u1", "no-such-app", "tok", endpoint("arn:endpoint/1"))

    assert database.connection().get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    assert postgres.get_user("u1").user_id == "u1"


def test_repository_nul_character_is_an_invalid_field_not_a_crash(postgres: AudienceRepository) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        postgres.put_user("u\x001", PARIS)
    with pytest.raises(InvalidRequestError):
        # Built past its validation, which refuses NUL first: the store's own translation is what is shown here.
        postgres.put_user("u1", UserRequest.model_construct(timezone="UTC", data={"k": "\x00"}))

    assert raised.value.field == "user_id"


def _terminate_backends(db: Any) -> None:
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    db.commit()


def test_database_broken_connection_fails_once_then_reopens(postgres: AudienceRepository, db: Any) -> None:
    postgres.put_user("u1", PARIS)
    _terminate_backends(db)

    with pytest.raises(UpstreamError):
        postgres.get_user("u1")

    assert postgres.get_user("u1").user_id == "u1"


def test_database_idle_connection_checked_and_reopened_before_use(postgres_url: str, db: Any) -> None:
    database = Database(postgres_url, ping_after_idle_seconds=0)
    repository = AudienceRepository(database)
    repository.put_user("u1", PARIS)
    _terminate_backends(db)

    assert repository.get_user("u1").user_id == "u1"
    database.close()


def test_database_bound_to_the_time_left_cancels_a_statement_in_time_and_releases_its_locks(
    postgres: AudienceRepository, postgres_url: str
) -> None:
    # Lambda ends a function at its timeout without a word to the server: the statement ran on, and its transaction
    # kept the user's row locked (each registration of that user waited) until the server found the client gone.
    _with_app_and_users(postgres, "u1")
    database = Database(postgres_url)
    database.bound_to(lambda: STATEMENT_MARGIN_SECONDS + 0.3)

    def lock_then_wait(cursor: Any) -> None:
        cursor.execute("SELECT 1 FROM users WHERE id = 'u1' FOR NO KEY UPDATE")
        cursor.execute("SELECT pg_sleep(5)")

    with pytest.raises(UpstreamError, match="took longer than the time left to this request"):
        database.run(lock_then_wait, "waiting")

    assert (
        postgres.register_device("u1", "android", "tok", endpoint("arn:endpoint/1")).created is True
    )  # the lock is gone
    database.bound_to(None)
    assert database.run(lambda cursor: cursor.execute("SHOW statement_timeout") or cursor.fetchone()[0], "x") == "0"
    database.close()


def test_database_bound_holds_for_the_whole_transaction_not_each_statement_anew(postgres_url: str) -> None:
    # One bound taken when the transaction began let each of its statements wait that long again: a registration
    # waiting on the user's row, then on the device's, outlived the function.
    database = Database(postgres_url)
    deadline = time.monotonic() + STATEMENT_MARGIN_SECONDS + 1.0
    database.bound_to(lambda: deadline - time.monotonic())

    def two_waits(cursor: Any) -> None:
        cursor.execute("SELECT pg_sleep(0.6)")
        cursor.execute("SELECT pg_sleep(0.6)")

    with pytest.raises(UpstreamError, match="took longer than the time left to this request"):
        database.run(two_waits, "waiting twice")
    database.close()


def test_database_unreachable_server_is_upstream_error_without_the_url() -> None:
    database = Database("postgresql://user:s3cret@127.0.0.1:1/none", connect_timeout=1)

    with pytest.raises(UpstreamError) as raised:
        AudienceRepository(database).get_user("u1")

    assert "s3cret" not in str(raised.value)
    assert raised.value.__cause__ is None


# --- Sends and their expansion (create_send, the cursor) -----------------------------------------------------------


@pytest.fixture(params=["postgres", "fake"])
def send_store(request: pytest.FixtureRequest) -> Any:
    """The sends' store on PostgreSQL, and its fake: the same behaviour asked of both."""
    from tests.fakes.audience import FakeSendStore

    if request.param == "fake":
        return FakeSendStore()
    return AudienceRepository(request.getfixturevalue("database"))


def _new_send(notification_id: str = "n-1") -> Any:
    from core.audience.sends import NewSend

    return NewSend(notification_id, {"user_ids": ["a"]}, {"text": "Hi"}, ["push", "email"])


def test_create_send_new_is_queued_with_no_cursor(send_store: Any) -> None:
    send, created = send_store.create_send(_new_send())

    assert created is True
    assert (send.status, send.expanded_through, send.recipients) == ("queued", None, 0)
    assert (send.target, send.content, send.channels) == ({"user_ids": ["a"]}, {"text": "Hi"}, ["push", "email"])
    assert send_store.get_send(send.send_id) == send


def test_create_send_same_notification_returns_the_first(send_store: Any) -> None:
    first, _ = send_store.create_send(_new_send())

    again, created = send_store.create_send(_new_send())

    assert (again.send_id, created) == (first.send_id, False)


def test_get_send_unknown_or_not_a_uuid_not_found(send_store: Any) -> None:
    for send_id in ("00000000-0000-4000-8000-000000000000", "nope"):
        with pytest.raises(NotFoundError):
            send_store.get_send(send_id)


def test_advance_send_moves_cursor_and_count_kept_by_start(send_store: Any) -> None:
    send, _ = send_store.create_send(_new_send())
    send_store.start_expansion(send.send_id, LEASE, 120)

    assert send_store.advance_send(send.send_id, "u9", 12, LEASE, 120) is True
    resumed = send_store.start_expansion(send.send_id, LEASE, 120)

    assert (resumed.status, resumed.expanded_through, resumed.recipients) == ("expanding", "u9", 12)


def test_advance_send_of_a_zone_moves_its_own_cursor(send_store: Any) -> None:
    send, _ = send_store.create_send(_new_send())
    send_store.start_expansion(send.send_id, LEASE, 120)
    send_store.advance_send(send.send_id, "u9", 12, LEASE, 120, "Europe/Paris")
    send_store.advance_send(send.send_id, "u3", 14, LEASE, 120, "Asia/Tokyo")

    resumed = send_store.start_expansion(send.send_id, LEASE, 120)

    assert resumed.expanded_through is None
    assert resumed.recipients == 14
    assert (resumed.cursor("Europe/Paris"), resumed.cursor("Asia/Tokyo"), resumed.cursor("Asia/Kolkata")) == (
        "u9",
        "u3",
        None,
    )


def test_start_expansion_another_runs_live_lease_is_busy(send_store: Any) -> None:
    send, _ = send_store.create_send(_new_send())
    send_store.start_expansion(send.send_id, LEASE, 120)

    with pytest.raises(SendBusyError):
        send_store.start_expansion(send.send_id, OTHER_LEASE, 120)
    assert send_store.advance_send(send.send_id, "u1", 1, OTHER_LEASE, 120) is False
    assert send_store.get_send(send.send_id).expanded_through is None


def test_start_expansion_takes_over_a_lease_that_lapsed_and_the_first_run_records_nothing(send_store: Any) -> None:
    send, _ = send_store.create_send(_new_send())
    send_store.start_expansion(send.send_id, LEASE, 0.01)
    time.sleep(0.05)

    taken = send_store.start_expansion(send.send_id, OTHER_LEASE, 120)

    assert taken.status == "expanding"
    assert send_store.advance_send(send.send_id, "u1", 1, LEASE, 120) is False


def test_advance_send_of_a_zone_records_the_users_it_handed_over(database: Database) -> None:
    store = AudienceRepository(database)
    send, _ = store.create_send(_new_send())
    store.start_expansion(send.send_id, LEASE, 120)

    assert store.advance_send(send.send_id, "u3", 2, LEASE, 120, "Europe/Paris", ["u1", "u3"]) is True
    assert store.advance_send(send.send_id, "u3", 3, LEASE, 120, "Asia/Tokyo", ["u1", "u2"]) is True

    assert store.handed_over(send.send_id, ["u0", "u1", "u2", "u3", "u4"]) == {"u1", "u2", "u3"}
    other, _ = store.create_send(_new_send("n-2"))
    assert store.handed_over(other.send_id, ["u1"]) == set()


def test_advance_send_with_a_lease_no_longer_its_own_records_no_user(database: Database) -> None:
    store = AudienceRepository(database)
    send, _ = store.create_send(_new_send())
    store.start_expansion(send.send_id, LEASE, 120)

    assert store.advance_send(send.send_id, "u1", 1, OTHER_LEASE, 120, "Europe/Paris", ["u1"]) is False

    assert store.handed_over(send.send_id, ["u1"]) == set()


def _local_schedule(store: AudienceRepository, name: str) -> str:
    """A local-time scheduled send whose expansion handed users u1 and u2 over; return its send id."""
    from core.audience.schedules import NewScheduledSend

    schedule = store.create_scheduled_send(
        NewScheduledSend(
            notification_id=name,
            target={"topic": "news/daily"},
            content={"text": "Hi"},
            channels=["push"],
            fire_at=datetime(2026, 6, 15, tzinfo=UTC),
            local_at=datetime(2026, 6, 15, 9, 0),
        )
    )
    store.start_expansion(schedule.send_id, LEASE, 120)
    assert store.advance_send(schedule.send_id, "u2", 2, LEASE, 120, "Asia/Tokyo", ["u1", "u2"]) is True
    store.finish_send(schedule.send_id, "expanded")
    return schedule.send_id


def _end_schedule(database: Database, send_id: str, ago_seconds: float) -> None:
    database.run(
        lambda cursor: cursor.execute(
            "UPDATE scheduled_sends SET status = 'sent', sent_at = now(),"
            " updated_at = now() - make_interval(secs => %s) WHERE send_id = %s",
            (ago_seconds, send_id),
        ),
        "ending a schedule",
    )


def test_purge_send_recipients_deletes_those_of_sends_ended_long_enough_ago_only(database: Database) -> None:
    """A local-time send's recorded recipients would otherwise stay for ever: a row per recipient of every send."""
    store = AudienceRepository(database)
    ended, recent, running = (_local_schedule(store, name) for name in ("ended", "recent", "running"))
    _end_schedule(database, ended, 3 * 86400)
    _end_schedule(database, recent, 3600)

    assert store.purge_send_recipients(86400, rows=1) == 1
    assert store.handed_over(ended, ["u1", "u2"]) == {"u2"}
    assert store.purge_send_recipients(86400, rows=1) == 1
    assert store.purge_send_recipients(86400, rows=1) == 0  # nothing left: no longer kept

    assert store.handed_over(ended, ["u1", "u2"]) == set()
    assert store.handed_over(recent, ["u1", "u2"]) == {"u1", "u2"}
    assert store.handed_over(running, ["u1", "u2"]) == {"u1", "u2"}
    assert store.purge_send_recipients(86400) is None


def test_purge_send_recipients_waits_for_every_zone_a_hand_off_named_until_no_job_can_be_left(
    database: Database,
) -> None:
    """A hand-off's job failed for now waits in the expansion DLQ, for up to 14 days: its zone's run reads them."""
    from core.audience.sends import EXPANSION_JOB_MAX_AGE_SECONDS

    store = AudienceRepository(database)
    send_id = _local_schedule(store, "pending")
    store.start_expansion(send_id, LEASE, 120, zones=["America/New_York"])
    store.finish_send(send_id, "expanded")
    _end_schedule(database, send_id, 3 * 86400)

    kept = store.purge_send_recipients(86400)
    _end_schedule(database, send_id, EXPANSION_JOB_MAX_AGE_SECONDS + 60)

    assert (kept, store.purge_send_recipients(86400)) == (None, 2)


def test_purge_send_recipients_of_user_ids_waits_for_the_sweep(database: Database) -> None:
    from core.audience.schedules import NewScheduledSend
    from core.audience.sends import SWEEP_ZONE

    store = AudienceRepository(database)
    schedule = store.create_scheduled_send(
        NewScheduledSend(
            notification_id="ids",
            target={"user_ids": ["u1", "u2"]},
            content={"text": "Hi"},
            channels=["push"],
            fire_at=datetime(2026, 6, 15, tzinfo=UTC),
            local_at=datetime(2026, 6, 15, 9, 0),
        )
    )
    send_id = str(schedule.send_id)
    store.start_expansion(send_id, LEASE, 120, zones=["Asia/Tokyo"])
    assert store.advance_send(send_id, "u2", 2, LEASE, 120, "Asia/Tokyo", ["u1", "u2"]) is True
    assert store.finish_zone(send_id, "Asia/Tokyo", LEASE) is True
    store.finish_send(send_id, "expanded")
    _end_schedule(database, send_id, 3 * 86400)

    before_the_sweep = store.purge_send_recipients(86400)
    store.start_expansion(send_id, LEASE, 120)
    assert store.finish_zone(send_id, SWEEP_ZONE, LEASE) is True
    store.finish_send(send_id, "expanded")

    assert (before_the_sweep, store.purge_send_recipients(86400)) == (None, 2)


def test_purge_send_recipients_leaves_a_send_another_run_holds_for_later(database: Database, postgres_url: str) -> None:
    store = AudienceRepository(database)
    send_id = _local_schedule(store, "held")
    _end_schedule(database, send_id, 3 * 86400)
    connection = psycopg2.connect(postgres_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM sends WHERE id = %s FOR UPDATE", (send_id,))

            assert store.purge_send_recipients(86400) is None
        connection.rollback()
    finally:
        connection.close()

    assert store.purge_send_recipients(86400) == 2


def test_purge_send_recipients_leaves_a_send_whose_lease_a_run_holds(database: Database) -> None:
    """An expansion job retried that late pages users still: its run's lease is a column, not a row lock."""
    store = AudienceRepository(database)
    send_id = _local_schedule(store, "leased")
    _end_schedule(database, send_id, 3 * 86400)
    store.start_expansion(send_id, LEASE, 120)

    assert store.purge_send_recipients(86400) is None

    store.finish_send(send_id, "expanded")
    assert store.purge_send_recipients(86400) == 2


def test_cancel_schedule_local_time_after_a_zone_was_handed_over_keeps_its_send_expanding(database: Database) -> None:
    """The zones handed over are expanded to the end (a cancel once stopped a send of a million mid-way and called it
    cancelled); only the zones to come stop. Before any hand-off, the send itself is cancelled."""
    store = AudienceRepository(database)
    handed = _local_schedule(store, "handed")
    store.start_expansion(handed, LEASE, 120)
    database.run(
        lambda cursor: cursor.execute(
            "UPDATE scheduled_sends SET zones_done_until = now() WHERE send_id = %s", (handed,)
        ),
        "handing a zone over",
    )
    untouched = _local_schedule(store, "untouched")
    database.run(
        lambda cursor: cursor.execute("UPDATE sends SET status = 'scheduled' WHERE id = %s", (untouched,)),
        "a send no job started",
    )
    schedules = {send_id: store.find_schedule(name) for send_id, name in ((handed, "handed"), (untouched, "untouched"))}

    for schedule in schedules.values():
        assert schedule is not None
        assert store.cancel_schedule(schedule.schedule_id).status == "cancelled"

    assert store.get_send(handed).status == "expanding"
    assert store.advance_send(handed, "u3", 3, LEASE, 120, "Asia/Tokyo", ["u3"]) is True
    assert store.get_send(untouched).status == "cancelled"


def test_cancel_schedule_local_time_after_an_empty_hand_off_cancels_its_send(database: Database) -> None:
    """The first claim of a local-time send is at 09:00 on the +14 clock, where most audiences have no user: the claim
    hands nothing over and moves ``zones_done_until`` on. No expansion began, so the cancel ends the send (it once
    stayed ``scheduled`` for good, and its segment could never be deleted)."""
    from core.audience.schedules import Handoff, NewScheduledSend

    store = AudienceRepository(database)
    schedule = store.create_scheduled_send(
        NewScheduledSend(
            notification_id="emptied",
            target={"topic": "news/daily"},
            content={"text": "Hi"},
            channels=["push"],
            fire_at=datetime(2026, 6, 14, 19, tzinfo=UTC),
            local_at=datetime(2026, 6, 15, 9, 0),
        )
    )
    (claim,) = store.claim_due(datetime(2026, 6, 14, 19, tzinfo=UTC), 10, timedelta(minutes=5))
    handoff = Handoff(claim, until=claim.fire_at, next_fire_at=datetime(2026, 6, 14, 20, tzinfo=UTC))
    assert store.mark_sent([handoff]) == 1

    assert store.cancel_schedule(schedule.schedule_id).status == "cancelled"

    assert store.get_send(schedule.send_id).status == "cancelled"
    assert store.start_expansion(schedule.send_id, LEASE, 120).status == "cancelled"


def test_finish_send_frees_the_lease(send_store: Any) -> None:
    send, _ = send_store.create_send(_new_send())
    send_store.start_expansion(send.send_id, LEASE, 120)

    send_store.finish_send(send.send_id, "expanded")

    assert send_store.start_expansion(send.send_id, OTHER_LEASE, 120).status == "expanding"


def test_finish_send_failed_keeps_the_error_and_start_leaves_it(send_store: Any) -> None:
    send, _ = send_store.create_send(_new_send())

    send_store.finish_send(send.send_id, "failed", "segment gone")

    assert send_store.start_expansion(send.send_id, LEASE, 120).status == "failed"
    assert send_store.get_send(send.send_id).last_error == "segment gone"


def test_delete_segment_while_a_send_to_it_has_not_ended_is_a_conflict(send_store: Any) -> None:
    # Each of a send's jobs reads its segment again: deleted between a local-time send's zones (204), the zones to come
    # were never reached and the send failed, while its schedule said sent.
    from core.audience.sends import NewSend

    send_store.put_segment("pros", {"where": {"field": "plan", "eq": "pro"}})
    send, _ = send_store.create_send(NewSend("n-1", {"segment": "pros"}, {"text": "Hi"}, ["push"]))

    with pytest.raises(ConflictError, match="a send to this segment has not ended"):
        send_store.delete_segment("pros")
    send_store.finish_send(send.send_id, "expanded")
    send_store.delete_segment("pros")

    with pytest.raises(NotFoundError):
        send_store.get_segment("pros")


def test_delete_segment_while_a_zone_handed_over_is_not_expanded_is_a_conflict(send_store: Any) -> None:
    # The last claim of a local-time send hands its last zone over and marks the schedule sent; the send has said
    # expanded since its first zone. Deleted before that zone's job ran (204), its users were never reached.
    from core.audience.sends import NewSend

    send_store.put_segment("pros", {"where": {"field": "plan", "eq": "pro"}})
    send, _ = send_store.create_send(NewSend("n-1", {"segment": "pros"}, {"text": "Hi"}, ["push"]))
    send_store.start_expansion(send.send_id, LEASE, 120, ["Europe/Paris", "Etc/GMT+12"])
    assert send_store.finish_zone(send.send_id, "Europe/Paris", LEASE)
    send_store.finish_send(send.send_id, "expanded")

    with pytest.raises(ConflictError, match="zones handed over"):
        send_store.delete_segment("pros")
    send_store.start_expansion(send.send_id, OTHER_LEASE, 120, ["Etc/GMT+12"])
    assert send_store.finish_zone(send.send_id, "Etc/GMT+12", OTHER_LEASE)
    send_store.finish_send(send.send_id, "expanded")
    send_store.delete_segment("pros")


def test_delete_segment_of_a_failed_send_with_zones_not_expanded_is_done(send_store: Any) -> None:
    # A failed send's jobs end at once: its zones never to be expanded hold nothing back.
    from core.audience.sends import NewSend

    send_store.put_segment("pros", {"where": {"field": "plan", "eq": "pro"}})
    send, _ = send_store.create_send(NewSend("n-1", {"segment": "pros"}, {"text": "Hi"}, ["push"]))
    send_store.start_expansion(send.send_id, LEASE, 120, ["Europe/Paris"])
    send_store.finish_send(send.send_id, "failed", "the sender topic is gone")

    send_store.delete_segment("pros")

    with pytest.raises(NotFoundError):
        send_store.get_segment("pros")


_AGED = {
    "sends": "UPDATE sends SET updated_at = now() - make_interval(secs => %(age)s) WHERE id = %(id)s",
    "scheduled_sends": "UPDATE scheduled_sends SET updated_at = now() - make_interval(secs => %(age)s)"
    " WHERE id = %(id)s",
    "sent": "UPDATE scheduled_sends SET status = 'sent', sent_at = now() - make_interval(secs => %(age)s),"
    " updated_at = now() - make_interval(secs => %(age)s) WHERE id = %(id)s",
}


def _aged(db: Any, change: str, row_id: str) -> None:
    """Make a row last changed (``change``: its table, or ``sent``: a schedule marked sent) longer ago than an
    expansion job can live."""
    from core.audience.sends import EXPANSION_JOB_MAX_AGE_SECONDS

    with db.cursor() as cursor:
        cursor.execute(_AGED[change], {"age": EXPANSION_JOB_MAX_AGE_SECONDS + 86400, "id": row_id})
    db.commit()


def test_delete_segment_of_a_send_whose_job_can_no_longer_come_is_done(postgres: AudienceRepository, db: Any) -> None:
    # Accepted (queued), its hand-off to the expansion queue failed and was not retried, or its job expired in the
    # expansion DLQ: nothing will ever run it, and no route ends it. The segment was a 409 for good.
    from core.audience.sends import NewSend

    postgres.put_segment("pros", {"where": {"field": "plan", "eq": "pro"}})
    send, _ = postgres.create_send(NewSend("n-1", {"segment": "pros"}, {"text": "Hi"}, ["push"]))
    with pytest.raises(ConflictError):
        postgres.delete_segment("pros")
    _aged(db, "sends", send.send_id)

    postgres.delete_segment("pros")


def _scheduled_to_pros(store: AudienceRepository) -> Any:
    """Make the segment ``pros`` and a send to it scheduled for tomorrow; return its schedule."""
    from core.audience.schedules import NewScheduledSend

    store.put_segment("pros", {"where": {"field": "plan", "eq": "pro"}})
    at = datetime.now(UTC) + timedelta(days=1)
    return store.create_scheduled_send(NewScheduledSend("n-1", {"segment": "pros"}, {"text": "Hi"}, ["push"], at))


def test_delete_segment_of_a_sent_schedule_whose_job_can_no_longer_come_is_done(
    postgres: AudienceRepository, db: Any
) -> None:
    # The cron handed the job over and marked the schedule sent; the job failed until the expansion DLQ took it, and
    # its days there passed: the send says scheduled for good. A schedule still to fire holds the segment however old.
    waiting = _scheduled_to_pros(postgres)
    _aged(db, "scheduled_sends", waiting.schedule_id)
    with pytest.raises(ConflictError):
        postgres.delete_segment("pros")
    _aged(db, "sent", waiting.schedule_id)
    _aged(db, "sends", waiting.send_id)

    postgres.delete_segment("pros")


def test_delete_segment_while_a_run_expands_a_send_whose_schedule_was_sent_long_ago_is_a_conflict(
    postgres: AudienceRepository, db: Any
) -> None:
    # The job waited in the expansion DLQ near its 14 days and an operator moved it back: a run expands the send now,
    # its schedule marked sent long ago. Aged by its schedule's change, the segment went, and the run failed halfway.
    waiting = _scheduled_to_pros(postgres)
    _aged(db, "sent", waiting.schedule_id)
    _aged(db, "sends", waiting.send_id)
    assert postgres.start_expansion(waiting.send_id, LEASE, 120).status == "expanding"

    with pytest.raises(ConflictError):
        postgres.delete_segment("pros")


def test_repository_disable_device_leaves_one_registered_again_since_sns_said_disabled(
    repository: AudienceRepositoryPort,
) -> None:
    # The expansion worker ran a disable job after the app registered the token again (its endpoint enabled again):
    # the device went off, and every later send skipped its user.
    _with_app_and_users(repository, "u1")
    said_disabled = datetime.now(UTC) - timedelta(minutes=1)
    repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))

    assert repository.disable_device("arn:endpoint/1", said_disabled) == 0
    assert [device.enabled for device in repository.devices_of(["u1"])["u1"]] == [True]
    assert repository.disable_device("arn:endpoint/1", datetime.now(UTC) + timedelta(minutes=1)) == 1


def test_repository_register_device_again_is_seen_after_sns_answered(postgres: AudienceRepository) -> None:
    """Its last_seen was its transaction's start, before SNS enabled the endpoint again: a push that met the endpoint
    disabled in between disabled the device registered again (the consumer's DisableEndpointJob)."""
    repository = postgres
    _with_app_and_users(repository, "u1")
    repository.register_device("u1", "android", "tok", endpoint("arn:endpoint/1"))
    repository.disable_device("arn:endpoint/1")
    seen: dict[str, datetime] = {}

    def sns(_platform_application_arn: str) -> str:
        time.sleep(0.2)  # SNS answering CreatePlatformEndpoint / GetEndpointAttributes
        # The consumer's push to the still-disabled endpoint answers EndpointDisabled now ...
        seen["observed_at"] = datetime.now(UTC)
        time.sleep(0.2)
        # ... and only then does SetEndpointAttributes(Enabled=true) run.
        return "arn:endpoint/1"

    registration = repository.register_device("u1", "android", "tok", sns)
    assert registration.device.enabled

    # The consumer's DisableEndpointJob, run after the registration committed: the device was registered (and its
    # endpoint enabled) after that push was answered, so it must stay enabled.
    assert repository.disable_device("arn:endpoint/1", seen["observed_at"]) == 0
    assert repository.list_devices("u1")[0].enabled
