"""Unit tests of the browser channel (core/channels/browser.py) on in-memory connections and Management API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from core.channels.base import ChannelResources
from core.channels.browser import BrowserChannel, BrowserResources
from core.channels.registry import CHANNELS, TopicRequest
from core.errors import NotFoundError, PermanentDeliveryError, RetryableDeliveryError, UpstreamError
from core.ledger import NotificationRecord
from core.models import Content
from core.outbound import OutboundSession
from core.realtime.connections import Connection
from tests.unit.core.realtime.fakes import FakeConnectionStore, FakeManagementApi, client_error

NOW = 1_800_000_000.0
CREATED = "2027-01-15T08:00:00.000Z"


@dataclass
class FakeRecords:
    """The ledger's notification records: every notification was published on orders/shipped."""

    missing: bool = False

    def get_record(self, notification_id: str) -> NotificationRecord:
        if self.missing:
            raise NotFoundError(f"notification {notification_id!r} does not exist")
        return NotificationRecord(notification_id, "publish", "orders", "shipped", CREATED, None, 1)


def _connection(connection_id: str, user: str, topics: tuple[str, ...] = (), expires: float = NOW + 900) -> Connection:
    return Connection(connection_id, user, topics, int(NOW) - 60, int(expires))


def _channel(
    connections: list[Connection],
    api: FakeManagementApi | None = None,
    records: FakeRecords | None = None,
    kind: type[BrowserChannel] = BrowserChannel,
    **options: Any,
) -> tuple[BrowserChannel, FakeConnectionStore, FakeManagementApi]:
    store = FakeConnectionStore({c.connection_id: c for c in connections})
    management = api or FakeManagementApi()
    resources = BrowserResources(
        http=None,  # type: ignore[arg-type]
        aws_client=lambda _: None,
        telegram_api_base="",
        connections=store,
        management=lambda: management,
        records=records or FakeRecords(),
    )
    return kind(resources, clock=lambda: NOW, **options), store, management


def _send(channel: BrowserChannel, target: dict[str, Any], text: str = "Your order shipped") -> str | None:
    receipt = channel.send(Content(text=text), target, None, notification_id="n-1", delivery_key="browser")
    return receipt.provider_message_id


def test_browser_is_a_registered_channel() -> None:
    assert CHANNELS["browser"] is BrowserChannel


def test_browser_integration_accepts_an_empty_target_and_a_user_target() -> None:
    request = TopicRequest.model_validate(
        {
            "integrations": [
                {"name": "all", "type": "browser", "target": {}, "model": "$text"},
                {"name": "ada", "type": "browser", "target": {"user_id": "ada"}, "model": {"text": "$text"}},
            ]
        }
    )

    assert [i.target.user_id for i in request.integrations] == [None, "ada"]


@pytest.mark.parametrize("user_id", ["", "has space", "x" * 129, "tab\there"])
def test_browser_integration_invalid_user_id_is_refused(user_id: str) -> None:
    with pytest.raises(ValueError, match="user_id"):
        TopicRequest.model_validate(
            {"integrations": [{"name": "b", "type": "browser", "target": {"user_id": user_id}, "model": "hi"}]}
        )


def test_render_string_model_is_the_frames_text() -> None:
    assert BrowserChannel.render("Hi $name", {"name": "Ada"}) == Content(text="Hi Ada")


def test_render_object_model_gives_text_and_data() -> None:
    content = BrowserChannel.render({"text": "Order $id", "data": {"id": "$id"}}, {"id": 42})

    assert (content.text, content.data) == ("Order 42", {"id": 42})


@pytest.mark.parametrize(("value", "text"), [(["café", 1], '["café",1]'), ({"a": 1}, '{"a":1}'), (7, "7")])
def test_render_object_model_text_of_a_whole_value_is_written_as_every_text_template_writes_it(
    value: object, text: str
) -> None:
    """A list went into the frame's text as Python's default JSON (spaces, ``\\u00e9``), unlike a string model's."""
    assert BrowserChannel.render({"text": "$items"}, {"items": value}).text == text
    assert BrowserChannel.render("$items", {"items": value}).text == text


def test_send_user_target_posts_the_frame_to_each_connection_of_that_user_only() -> None:
    channel, _, api = _channel([_connection("a1", "alice"), _connection("a2", "alice"), _connection("b1", "bob")])

    note = _send(channel, {"user_id": "alice"})

    assert sorted(connection for connection, _ in api.posts) == ["a1", "a2"]
    assert note == "2 connections"


def test_send_frame_names_the_notification_its_delivery_its_topic_and_time() -> None:
    # The delivery key too: a page tells apart the frames of a topic's two browser integrations by it.
    channel, _, api = _channel([_connection("a1", "alice")])

    _send(channel, {"user_id": "alice"}, text="<script>alert(1)</script>")

    assert json.loads(api.posts[0][1]) == {
        "notification_id": "n-1",
        "delivery_key": "browser",
        "channel": "orders",
        "topic": "shipped",
        "text": "<script>alert(1)</script>",
        "created_at": CREATED,
    }


def test_send_empty_target_reaches_the_connections_hearing_the_notifications_topic() -> None:
    channel, _, api = _channel(
        [_connection("a1", "alice", ("orders/shipped",)), _connection("b1", "bob", ("orders/returned",))]
    )

    _send(channel, {})

    assert [connection for connection, _ in api.posts] == ["a1"]


def test_send_without_open_connections_is_delivered_to_zero_connections() -> None:
    channel, _, api = _channel([])

    assert _send(channel, {"user_id": "alice"}) == "0 connections"
    assert api.posts == []


def test_send_gone_connection_is_removed_and_not_a_failure() -> None:
    api = FakeManagementApi(answers={"a1": client_error("GoneException", 410)})
    channel, store, _ = _channel([_connection("a1", "alice"), _connection("a2", "alice")], api)

    note = _send(channel, {"user_id": "alice"})

    assert note == "1 connection, 1 gone"
    assert store.unrouted == ["a1"]


def test_send_only_connection_still_opening_is_kept_and_the_delivery_retried() -> None:
    api = FakeManagementApi(answers={"a1": client_error("GoneException", 410)})
    opening = Connection("a1", "alice", (), int(NOW) - 1, int(NOW) + 900)
    channel, store, _ = _channel([opening], api)

    # A reconnect: API Gateway is finishing its $connect. Recorded delivered to 0 connections, the frame was lost.
    with pytest.raises(RetryableDeliveryError, match="1 of 1 connections still opening"):
        _send(channel, {"user_id": "alice"})
    assert store.unrouted == []


def test_send_connection_still_opening_beside_one_reached_is_delivered() -> None:
    api = FakeManagementApi(answers={"a1": client_error("GoneException", 410)})
    opening = Connection("a1", "alice", (), int(NOW) - 1, int(NOW) + 900)
    channel, store, _ = _channel([opening, _connection("a2", "alice")], api)

    assert _send(channel, {"user_id": "alice"}) == "1 connection"
    assert store.unrouted == []


def test_send_connection_whose_token_expired_is_closed_and_removed_not_posted_to() -> None:
    channel, store, api = _channel([_connection("a1", "alice", expires=NOW - 1)])

    note = _send(channel, {"user_id": "alice"})

    assert (api.posts, api.deleted, store.unrouted) == ([], ["a1"], ["a1"])
    assert note == "0 connections, 1 expired"


def test_send_throttled_post_to_a_topic_reached_on_another_connection_is_delivered_naming_it() -> None:
    """A page that stopped reading (its buffer full: LimitExceededException) once failed the topic's delivery for
    everyone: retried, every other connection got the frame again, until the retries were spent."""
    api = FakeManagementApi(answers={"a1": client_error("LimitExceededException", 429)})
    channel, _, _ = _channel(
        [_connection("a1", "alice", topics=("orders/shipped",)), _connection("a2", "bob", topics=("orders/shipped",))],
        api,
    )

    assert _send(channel, {}) == "1 connection, 1 failed (LimitExceededException)"


def test_send_every_post_to_a_topic_throttled_is_retryable_and_rate_limited() -> None:
    # The account's Management API throttled: nobody has the notification.
    throttled = client_error("LimitExceededException", 429)
    api = FakeManagementApi(answers={"a1": throttled, "a2": throttled})
    channel, _, _ = _channel(
        [_connection("a1", "alice", topics=("orders/shipped",)), _connection("a2", "bob", topics=("orders/shipped",))],
        api,
    )

    with pytest.raises(RetryableDeliveryError, match="2 of 2 connections failed for now") as raised:
        _send(channel, {})
    assert raised.value.rate_limited


def test_send_every_post_to_a_topic_failing_on_the_server_is_retryable_not_rate_limited() -> None:
    failing = client_error("InternalServerErrorException", 500)
    api = FakeManagementApi(answers={"a1": failing, "a2": failing})
    channel, _, _ = _channel(
        [_connection("a1", "alice", topics=("orders/shipped",)), _connection("a2", "bob", topics=("orders/shipped",))],
        api,
    )

    with pytest.raises(RetryableDeliveryError, match=r"2 of 2 connections failed for now \(InternalServer") as raised:
        _send(channel, {})
    assert not raised.value.rate_limited


def test_send_throttled_post_of_a_user_reached_on_another_connection_is_delivered_saying_so() -> None:
    api = FakeManagementApi(answers={"a1": client_error("LimitExceededException", 429)})
    channel, _, _ = _channel([_connection("a1", "alice"), _connection("a2", "alice")], api)

    # Retried, every connection would get the frame again, for as long as one keeps failing.
    assert _send(channel, {"user_id": "alice"}) == "1 connection, 1 failed (LimitExceededException)"


def test_send_throttled_only_post_of_a_user_is_retryable() -> None:
    api = FakeManagementApi(answers={"a1": client_error("LimitExceededException", 429)})
    channel, _, _ = _channel([_connection("a1", "alice")], api)

    with pytest.raises(RetryableDeliveryError, match="1 of 1 connections failed for now"):
        _send(channel, {"user_id": "alice"})


class _StuckManagementApi(FakeManagementApi):
    """Answers the posts to ``answered`` at once; every other post hangs until ``release`` is set (after the test).
    ``started`` counts the posts made."""

    def __init__(self, answered: set[str]) -> None:
        super().__init__()
        self.answered = answered
        self.release = threading.Event()
        self.started: list[str] = []

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        self.started.append(ConnectionId)
        if ConnectionId not in self.answered:
            self.release.wait(timeout=30)
        return super().post_to_connection(ConnectionId, Data)


def _topic_connections(stuck: int, answered: int) -> tuple[list[Connection], _StuckManagementApi]:
    """``stuck`` connections whose posts hang (stored first), then ``answered`` ones, all hearing orders/shipped."""
    ids = [f"s{index}" for index in range(stuck)] + [f"a{index}" for index in range(answered)]
    connections = [_connection(i, f"user-{i}", topics=("orders/shipped",)) for i in ids]
    return connections, _StuckManagementApi(answered={i for i in ids if i.startswith("a")})


def test_send_to_a_topic_ends_within_its_budget_delivered_to_those_it_reached() -> None:
    """Without a bound, a topic heard by thousands outlasted the Lambda timeout: killed before its ledger write, the
    batch was posted again at every receive, then dead-lettered by SQS with its rows still `queued`. The posts under
    way at the deadline once failed the delivery for everyone it had reached: retried, it reached those again."""
    connections = [_connection(f"a{index}", f"user-{index}", topics=("orders/shipped",)) for index in range(6)]
    api = _StuckManagementApi(answered={"a0", "a1"})
    channel, _, _ = _channel(connections, api)
    channel._send_seconds = 0.3

    try:
        note = _send(channel, {})
    finally:
        api.release.set()
    assert note == "2 connections, 4 failed (deadline)"
    assert {connection for connection, _ in api.posts} >= {"a0", "a1"}


class _QuickPosts(BrowserChannel):
    """A post is waited for 0.2 s at most, two at once, and two more left running past that."""

    post_seconds = 0.2
    max_concurrent_posts = 2
    max_stalled_posts = 2


def test_send_post_unanswered_past_its_bound_is_not_waited_for() -> None:
    """A page that stopped reading held its post, and so the whole send, for every try of the client's read timeout:
    past the send's budget."""
    connections, api = _topic_connections(stuck=1, answered=1)
    channel, _, _ = _channel(connections, api, kind=_QuickPosts, send_seconds=5.0)

    started = time.monotonic()
    try:
        note = _send(channel, {})
    finally:
        api.release.set()

    assert note == "1 connection, 1 failed (unanswered)"
    assert time.monotonic() - started < 2.0


def test_send_stalled_posts_leave_their_turn_to_the_others() -> None:
    # Two posts at a time: both stalled, the others would wait for the budget's end and fail.
    connections, api = _topic_connections(stuck=2, answered=4)
    channel, _, _ = _channel(connections, api, kind=_QuickPosts, send_seconds=3.0)

    try:
        note = _send(channel, {})
    finally:
        api.release.set()

    assert note == "4 connections, 2 failed (unanswered)"


def test_send_stalled_posts_hold_at_most_their_share_of_threads() -> None:
    # Each stalled post keeps its thread until the client gives up; a send leaves a bounded number of them running.
    connections, api = _topic_connections(stuck=8, answered=0)
    channel, _, _ = _channel(connections, api, kind=_QuickPosts, send_seconds=1.0)

    try:
        with pytest.raises(RetryableDeliveryError, match=r"8 of 8 connections failed for now \(deadline, unanswered\)"):
            _send(channel, {})
        started = len(api.started)
    finally:
        api.release.set()

    assert started == 4


class _OnePostAtATime(BrowserChannel):
    max_concurrent_posts = 1


def test_send_orders_the_connections_afresh_for_each_send() -> None:
    # Random by default: a topic larger than one send reaches misses different connections each time, not the same.
    connections = [_connection(f"a{index}", f"user-{index}", topics=("orders/shipped",)) for index in range(4)]
    channel, _, api = _channel(connections, kind=_OnePostAtATime, order=lambda items: items.reverse())

    _send(channel, {})

    assert [connection for connection, _ in api.posts] == ["a3", "a2", "a1", "a0"]


def test_send_topic_partly_reached_logs_the_connections_it_missed(logs: Callable[[], str]) -> None:
    api = FakeManagementApi(answers={"a1": client_error("LimitExceededException", 429)})
    channel, _, _ = _channel(
        [_connection("a1", "alice", topics=("orders/shipped",)), _connection("a2", "bob", topics=("orders/shipped",))],
        api,
    )

    _send(channel, {})

    (line,) = [json.loads(line) for line in logs().splitlines() if "missed" in line]
    assert (line["reached"], line["failed"]) == (1, {"LimitExceededException": 1})


def test_send_housekeeping_past_the_budget_is_not_waited_for() -> None:
    """Removing gone connections one DynamoDB call at a time once held the send long past its budget."""
    release = threading.Event()

    class SlowStore(FakeConnectionStore):
        def unroute(self, connection: Connection) -> None:
            release.wait(timeout=5)
            super().unroute(connection)

    gone = {f"a{index}": client_error("GoneException", 410) for index in range(3)}
    connections = [_connection(connection_id, "alice") for connection_id in gone]
    channel, _, _ = _channel(connections, FakeManagementApi(answers=gone))
    store = SlowStore({connection.connection_id: connection for connection in connections})
    channel._resources = replace(channel._realtime(), connections=store)
    channel._send_seconds = 0.3

    try:
        note = _send(channel, {"user_id": "alice"})
        removed_at_return = list(store.unrouted)
    finally:
        release.set()

    assert note == "0 connections, 3 gone"
    assert removed_at_return == []


def test_send_post_waiting_for_a_thread_past_the_budget_is_not_made() -> None:
    connections = [_connection(f"a{index}", "alice") for index in range(3)]
    api = FakeManagementApi()
    channel, _, _ = _channel(connections, api)
    channel._send_seconds = 1.0
    # The send starts at 0 with 1 s; its posts get their threads at 5 (as when others held them that long).
    channel._monotonic = lambda: 5.0 if threading.current_thread().name.startswith("browser") else 0.0

    with pytest.raises(RetryableDeliveryError, match=r"3 of 3 connections failed for now \(deadline\)"):
        _send(channel, {"user_id": "alice"})
    assert api.posts == []


def test_send_budget_defaults_to_a_url_based_sends() -> None:
    channel, _, _ = _channel([])
    channel._resources = BrowserResources(
        http=OutboundSession(3.05, 10, allow_private=False),
        aws_client=lambda _: None,
        telegram_api_base="",
        connections=FakeConnectionStore({}),
        management=FakeManagementApi,
        records=FakeRecords(),
    )

    assert channel._budget() == pytest.approx(13.05)


def test_send_every_post_forbidden_is_permanent() -> None:
    api = FakeManagementApi(answers={"a1": client_error("ForbiddenException", 403)})
    channel, _, _ = _channel([_connection("a1", "alice")], api)

    with pytest.raises(PermanentDeliveryError, match="ForbiddenException"):
        _send(channel, {"user_id": "alice"})


def test_send_frame_over_128_kib_is_permanent() -> None:
    channel, _, api = _channel([_connection("a1", "alice")])

    with pytest.raises(PermanentDeliveryError, match="128 KiB"):
        _send(channel, {"user_id": "alice"}, text="x" * 129 * 1024)
    assert api.posts == []


def test_send_notification_record_gone_is_permanent() -> None:
    channel, _, _ = _channel([_connection("a1", "alice")], records=FakeRecords(missing=True))

    with pytest.raises(PermanentDeliveryError, match="record is gone"):
        _send(channel, {"user_id": "alice"})


def test_send_connections_unreadable_is_retryable() -> None:
    class Failing(FakeConnectionStore):
        def of_user(self, user_id: str) -> list[Connection]:
            raise UpstreamError("reading connections failed (ProvisionedThroughputExceededException)")

    channel, _, _ = _channel([])
    channel._resources = BrowserResources(
        http=None,  # type: ignore[arg-type]
        aws_client=lambda _: None,
        telegram_api_base="",
        connections=Failing(),
        management=FakeManagementApi,
        records=FakeRecords(),
    )

    with pytest.raises(RetryableDeliveryError, match="reading connections failed"):
        _send(channel, {"user_id": "alice"})


def test_send_without_browser_resources_is_permanent_naming_the_settings() -> None:
    channel = BrowserChannel(ChannelResources(http=None, aws_client=lambda _: None, telegram_api_base=""))  # type: ignore[arg-type]

    with pytest.raises(PermanentDeliveryError, match="CONNECTIONS_TABLE"):
        _send(channel, {"user_id": "alice"})


def test_rate_limits_user_target_uses_the_integrations_own_rate() -> None:
    channel, _, _ = _channel([])

    limits = channel.rate_limits({"user_id": "alice"}, None, 2.0)

    assert [limit.per_second for limit in limits] == [2.0]
    assert channel.rate_limits({}, None, 2.0) == []


def _tries(retries: dict[str, Any]) -> int:
    """The tries botocore makes of one call under a ``retries`` config (``max_attempts`` counts the retries only)."""
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    return int(retries.get("max_attempts", 2)) + 1


def test_management_client_gives_up_on_a_post_within_the_channels_bound() -> None:
    """A post the channel stops waiting for goes on in its thread until the client gives up: within the channel's
    bound, a stalled page holds a thread no longer than a post is waited for."""
    from core.clients import get_management_client

    config = get_management_client("https://abc123.execute-api.us-east-1.amazonaws.com/test", "us-east-1").meta.config
    tries = _tries(config.retries)
    # botocore's standard mode waits at most 1 s before the first retry of a throttle, 2 s before the second, ...
    backoff = sum(min(2.0**retry, 20.0) for retry in range(tries - 1))
    longest = tries * (config.connect_timeout + config.read_timeout) + backoff

    assert longest <= BrowserChannel.post_seconds
