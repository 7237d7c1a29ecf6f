"""Unit tests of ``POST /v1/sends``'s logic (core/audience/sends.py): the request model, accept_send, the cron's
hand-off of audiences to the expansion queue."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import available_timezones

import pytest
from pydantic import ValidationError

from core.audience.models import UserRequest
from core.audience.schedules import DueSend
from core.audience.sends import (
    GROUP_SIZE,
    AudienceSendEnqueuer,
    DisableEndpointJob,
    ExpansionBatchJob,
    ExpansionJob,
    ExpansionQueue,
    SendRequest,
    SubscribersJob,
    accept_send,
    parse_job,
)
from core.errors import ConflictError, InvalidRequestError, UpstreamError
from core.queue import MESSAGE_BYTES_LIMIT
from tests.fakes.audience import FakeExpansionQueue, FakeSendStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _request(**changes: Any) -> SendRequest:
    body: dict[str, Any] = {"to": {"user_ids": ["u1", "u2"]}, "content": {"text": "Hello"}, **changes}
    return SendRequest.model_validate(body)


@pytest.mark.parametrize(
    "body",
    [
        {"to": {}, "content": {"text": "x"}},
        {"to": {"user_ids": ["a"], "segment": "vip"}, "content": {"text": "x"}},
        {"to": {"user_ids": []}, "content": {"text": "x"}},
        {"to": {"topic": "no-slash"}, "content": {"text": "x"}},
        {"to": {"user_ids": ["a"]}, "content": {"text": ""}},
        {"to": {"user_ids": ["a"]}, "content": {"text": "x"}, "channels": ["sms"]},
        {"to": {"user_ids": ["a"]}, "content": {"text": "x"}, "channels": ["push", "push"]},
        {"to": {"user_ids": ["a"]}, "content": {"text": "x"}, "channels": ["email"]},
        {"to": {"user_ids": ["a"]}, "content": {"text": "x"}, "local_time": True},
        {"to": {"user_ids": ["a"]}, "content": {"text": "x", "push": {"WNS": {}}}},
        {"to": {"user_ids": ["a"]}, "content": {"text": "x"}, "extra": 1},
    ],
)
def test_send_request_invalid_body_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SendRequest.model_validate(body)


def test_send_request_of_only_spaces_to_telegram_is_refused_naming_the_text() -> None:
    # As a publish's Telegram model is: accepted, every Telegram delivery failed ("telegram: no text to send").
    body = {"to": {"user_ids": ["a"]}, "content": {"text": " \n "}, "channels": ["telegram", "push"]}

    with pytest.raises(ValidationError, match=r"content\.text must hold more than spaces"):
        SendRequest.model_validate(body)
    assert SendRequest.model_validate({**body, "channels": ["push"]}).content.text == " \n "


def test_send_request_channels_default_to_push() -> None:
    assert _request().channels == ["push"]


def test_accept_send_without_at_records_and_submits_one_job() -> None:
    store, queue = FakeSendStore(), FakeExpansionQueue()

    accepted = accept_send(_request(), store, queue, NOW, "n-1", caller="k1")

    [send] = store.sends.values()
    assert (accepted.status, accepted.notification_id, accepted.schedule_id) == ("queued", "n-1", None)
    assert queue.jobs == [ExpansionJob(send_id=send.send_id, notification_id="n-1", caller="k1")]
    assert (send.target, send.content, send.channels) == ({"user_ids": ["u1", "u2"]}, {"text": "Hello"}, ["push"])


def test_accept_send_same_notification_same_body_submits_the_same_send_again() -> None:
    store, queue = FakeSendStore(), FakeExpansionQueue()

    accept_send(_request(), store, queue, NOW, "n-1")
    accept_send(_request(), store, queue, NOW, "n-1")

    assert len(store.sends) == 1
    assert [job.send_id for job in queue.jobs] == [next(iter(store.sends))] * 2  # type: ignore[union-attr]


def test_accept_send_same_notification_other_body_conflicts() -> None:
    store, queue = FakeSendStore(), FakeExpansionQueue()
    accept_send(_request(), store, queue, NOW, "n-1")

    with pytest.raises(ConflictError):
        accept_send(_request(content={"text": "Other"}), store, queue, NOW, "n-1")


def test_accept_send_queue_refusal_raises_upstream_with_the_send_recorded() -> None:
    store = FakeSendStore()

    with pytest.raises(UpstreamError):
        accept_send(_request(), store, FakeExpansionQueue(fail=True), NOW, "n-1")

    assert len(store.sends) == 1


def test_accept_send_with_at_schedules_and_submits_nothing() -> None:
    store, queue = FakeSendStore(), FakeExpansionQueue()

    accepted = accept_send(_request(at=(NOW + timedelta(hours=1)).isoformat()), store, queue, NOW, "n-1")

    [schedule] = store.schedules.values()
    assert (accepted.status, accepted.schedule_id) == ("scheduled", schedule.schedule_id)
    assert schedule.fire_at == NOW + timedelta(hours=1)
    assert queue.jobs == []


def test_accept_send_local_time_with_offset_names_at() -> None:
    request = _request(at=NOW.isoformat(), local_time=True)

    with pytest.raises(InvalidRequestError, match="at"):
        accept_send(request, FakeSendStore(), FakeExpansionQueue(), NOW, "n-1")


def test_accept_send_unknown_segment_names_to_segment() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        accept_send(_request(to={"segment": "vip"}), FakeSendStore(), FakeExpansionQueue(), NOW, "n-1")

    assert raised.value.field == "to.segment"


def test_accept_send_invalid_where_names_its_place() -> None:
    request = _request(to={"where": {"field": "plan", "like": "x"}})

    with pytest.raises(InvalidRequestError) as raised:
        accept_send(request, FakeSendStore(), FakeExpansionQueue(), NOW, "n-1")

    assert raised.value.field.startswith("to.where")


def test_accept_send_known_segment_queued() -> None:
    store = FakeSendStore()
    store.put_segment("vip", {"where": {"field": "plan", "eq": "pro"}})
    store.put_user("u1", UserRequest(timezone="UTC"))

    assert accept_send(_request(to={"segment": "vip"}), store, FakeExpansionQueue(), NOW, "n-1").status == "queued"


def _due(target: dict[str, Any], zones: list[str] | None = None) -> DueSend:
    return DueSend("s-1", "send-1", "n-1", target, {"text": "x"}, ["push"], zones)


def test_audience_send_enqueuer_topic_target_goes_to_the_expansion_worker_like_any_audience() -> None:
    queue = FakeExpansionQueue()

    AudienceSendEnqueuer(queue).enqueue(_due({"topic": "news/daily"}, ["Asia/Tokyo"]))

    assert queue.jobs == [ExpansionJob(send_id="send-1", notification_id="n-1", zones=["Asia/Tokyo"])]


def test_audience_send_enqueuer_audience_submits_a_job_with_the_zones() -> None:
    queue = FakeExpansionQueue()

    AudienceSendEnqueuer(queue).enqueue(_due({"segment": "vip"}, ["Europe/Paris"]))

    assert queue.jobs == [ExpansionJob(send_id="send-1", notification_id="n-1", zones=["Europe/Paris"])]


def test_audience_send_enqueuer_last_claim_with_no_zone_due_submits_its_empty_job() -> None:
    """The cron hands over an empty zone set only at a local-time send's last claim: its job writes the record of a
    send that reached no one (it once never came: the send stayed queued, its notification unknown)."""
    queue = FakeExpansionQueue()

    AudienceSendEnqueuer(queue).enqueue(_due({"user_ids": ["a"]}, []))

    (job,) = queue.jobs
    assert isinstance(job, ExpansionJob)
    assert job.zones == []


def test_audience_send_enqueuer_queue_refusal_raises_upstream() -> None:
    with pytest.raises(UpstreamError):
        AudienceSendEnqueuer(FakeExpansionQueue(fail=True)).enqueue(_due({"user_ids": ["a"]}))


def test_parse_job_every_kind_round_trips() -> None:
    expand = ExpansionJob(send_id="s", notification_id="n", zones=["UTC"])
    disable = DisableEndpointJob(endpoint_arn="arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/1")
    content = {"text": "hi", "subject": "S"}
    subscribers = SubscribersJob(notification_id="n", content=content, channels=["push", "email"])

    jobs = (expand, disable, subscribers)
    assert tuple(parse_job(job.model_dump_json()) for job in jobs) == jobs


def test_parse_job_not_a_job_refused() -> None:
    with pytest.raises(InvalidRequestError):
        parse_job('{"kind": "other"}')


class _SqsClient:
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.delays: list[int] = []

    def send_message(self, QueueUrl: str, MessageBody: str, DelaySeconds: int) -> dict[str, str]:
        self.bodies.append(MessageBody)
        self.delays.append(DelaySeconds)
        return {"MessageId": "m-1"}


def test_expansion_queue_sends_the_job_as_its_body() -> None:
    client = _SqsClient()
    job = ExpansionJob(send_id="s", notification_id="n")

    assert ExpansionQueue(client, "https://queue").submit(job) == "m-1"
    ExpansionQueue(client, "https://queue").submit(job, delay_seconds=30)
    assert parse_job(client.bodies[0]) == job
    assert client.delays == [0, 30]


class _BatchClient:
    """An SQS client whose SendMessageBatch refuses the jobs of ``refused`` send ids and records each call."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.calls: list[list[dict[str, str]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append(Entries)
        refused = [entry for entry in Entries if json.loads(entry["MessageBody"])["send_id"] in self.refused]
        sent = [entry for entry in Entries if entry not in refused]
        return {
            "Successful": [{"Id": entry["Id"], "MessageId": f"m-{entry['Id']}"} for entry in sent],
            "Failed": [{"Id": entry["Id"], "Code": "InternalError"} for entry in refused],
        }


def test_expansion_queue_submit_all_sends_ten_a_call_retries_once_and_names_the_refused() -> None:
    client = _BatchClient(refused={"s1", "s11"})
    jobs = [ExpansionJob(send_id=f"s{index}", notification_id=f"n{index}") for index in range(12)]

    reasons = ExpansionQueue(client, "https://queue").submit_all(jobs)

    # Ten a call, and the refused entries tried once more, together.
    assert sorted(len(call) for call in client.calls) == [2, 2, 10]
    assert [index for index, reason in enumerate(reasons) if reason] == [1, 11]
    assert reasons[1] == "the expansion queue refused the job (InternalError)"


def test_audience_send_enqueuer_enqueue_all_groups_small_sends_and_returns_the_refusals() -> None:
    small = [_due({"user_ids": [f"u{index}"]})._replace(schedule_id=f"s-{index}") for index in range(30)]
    segment = _due({"segment": "vip"})._replace(schedule_id="s-vip", notification_id="n-vip")
    nobody = _due({"where": {}}, [])._replace(schedule_id="s-none", notification_id="n-none")

    class _Refusing(FakeExpansionQueue):
        def submit_all(self, jobs: Any) -> list[str | None]:
            self.jobs.extend(jobs)
            return [None, None, "the expansion queue refused the job (InternalError)", None]

    queue = _Refusing()
    errors = AudienceSendEnqueuer(queue).enqueue_all([segment, *small, nobody])

    first, last, grouped, rest = queue.jobs
    assert isinstance(first, ExpansionJob)
    assert first.notification_id == "n-vip"
    assert isinstance(last, ExpansionJob)
    assert (last.notification_id, last.zones) == ("n-none", [])
    assert isinstance(grouped, ExpansionBatchJob)
    assert isinstance(rest, ExpansionBatchJob)
    assert (len(grouped.jobs), len(rest.jobs)) == (GROUP_SIZE, 30 - GROUP_SIZE)
    assert sorted(errors) == sorted(f"s-{index}" for index in range(GROUP_SIZE))
    assert all(isinstance(error, UpstreamError) for error in errors.values())


def test_audience_send_enqueuer_enqueue_all_groups_within_an_sqs_message() -> None:
    """A small send's first hand-off names every zone that has users whose time was past when it was made: 25 such
    sends naming all 599 IANA zones of this tzdata made a job 181 bytes under SQS's 256 KiB; a few more zones and it
    was refused at every claim until the sends failed. Groups are cut by size too, whatever the zones."""
    zones = sorted(available_timezones())
    zones += [f"{zone}/x" for zone in zones]  # as long again: tzdata grows, and a job must fit still
    small = [
        _due({"user_ids": [f"u{index}"]}, zones)._replace(
            schedule_id=f"s-{index}", send_id=str(uuid.uuid4()), notification_id=str(uuid.uuid4())
        )
        for index in range(2 * GROUP_SIZE)
    ]
    queue = FakeExpansionQueue()

    assert AudienceSendEnqueuer(queue).enqueue_all(small) == {}

    assert max(len(job.model_dump_json().encode()) for job in queue.jobs) <= MESSAGE_BYTES_LIMIT
    handed = [inner for job in queue.jobs for inner in (job.jobs if isinstance(job, ExpansionBatchJob) else [job])]
    assert sorted(job.send_id for job in handed if isinstance(job, ExpansionJob)) == sorted(s.send_id for s in small)
    assert len(queue.jobs) < len(small)


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ({"text": "Hello\uffff"}, ("content", "text")),
        ({"text": "Hello", "subject": "Hi\ufffe"}, ("content", "subject")),
        ({"text": "Hello", "html": "<p>\uffff</p>"}, ("content", "html")),
        ({"text": "Hello", "push": {"GCM": {"data": {"k": "v\ud800"}}}}, ("content", "push", "GCM", "data", "k")),
        (
            {"text": "Hello", "push": {"APNS": {"aps": {"alert": ["\uffff"]}}}},
            ("content", "push", "APNS", "aps", "alert", 0),
        ),
        ({"text": "Hello", "push": {"FCM": {"k\uffff": 1}}}, ("content", "push", "FCM", "k\uffff")),
    ],
)
def test_send_request_content_a_message_cannot_carry_refused_naming_where(
    content: dict[str, Any], where: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as raised:
        SendRequest.model_validate({"to": {"user_ids": ["u1"]}, "content": content})

    assert [error["loc"] for error in raised.value.errors()] == [where]


def test_send_request_user_id_a_message_cannot_carry_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as raised:
        SendRequest.model_validate({"to": {"user_ids": ["u1", "u\uffff"]}, "content": {"text": "Hello"}})

    assert [error["loc"] for error in raised.value.errors()] == [("to", "user_ids", 1)]


@pytest.mark.parametrize(
    "when",
    [
        {"at": "0001-01-01T00:00:00", "local_time": True},
        {"at": "0001-01-01T00:00:00+14:00"},
        {"at": "9999-12-31T23:59:59-12:00"},
        {"at": "1999-12-31T23:59:59+00:00"},
        # Seconds (or milliseconds) since 1970, as pydantic reads a number or digits: scheduled for 2027, silently.
        {"at": 1_800_000_000},
        {"at": "1800000000"},
        {"at": 1_800_000_000_000},
        # No clock shows an offset beyond 14 hours: a typo, read as another day.
        {"at": "2027-01-15T09:00:00-23:59"},
    ],
    ids=["year-1-local", "year-1-east", "year-9999-west", "before-2000", "unix", "unix-text", "unix-ms", "offset-23h"],
)
def test_send_request_at_out_of_the_years_a_schedule_fires_refused_naming_at(when: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as raised:
        SendRequest.model_validate({"to": {"user_ids": ["u1"]}, "content": {"text": "Hello"}, **when})

    assert [error["loc"] for error in raised.value.errors()] == [("at",)]


def test_send_request_html_over_the_limit_in_bytes_refused_naming_content_html() -> None:
    html = "通" * 80_000  # 80,000 characters, under the character limit: 240,000 bytes of UTF-8

    with pytest.raises(ValidationError) as raised:
        _request(channels=["email"], content={"text": "Hi", "subject": "S", "html": html})

    assert [error["loc"] for error in raised.value.errors()] == [("content", "html")]


def test_send_request_push_payloads_over_the_limit_refused_naming_content_push() -> None:
    apns = {"aps": {"alert": "x" * 40_000}}  # 40 KB, twice: it serves the sandbox too

    with pytest.raises(ValidationError) as raised:
        _request(content={"text": "Hi", "push": {"APNS": apns}})

    assert [error["loc"] for error in raised.value.errors()] == [("content", "push")]
    assert "at most 64 KiB" in raised.value.errors()[0]["msg"]


def test_send_request_push_payloads_under_the_limit_accepted_with_a_sandbox_of_their_own() -> None:
    apns = {"aps": {"alert": "x" * 4_000}}

    request = _request(content={"text": "Hi", "push": {"APNS": apns, "APNS_SANDBOX": {"aps": {"alert": "s"}}}})

    assert request.content.push is not None


@pytest.mark.parametrize("platform", ["APNS", "GCM", "FCM"])
def test_send_request_push_payload_over_its_platforms_limit_refused_naming_content_push(platform: str) -> None:
    # Accepted, it was sent whole to every device and refused there (SNS: a vague InvalidParameter), each delivery
    # failed; the 64 KiB bound is what a delivery message carries, not what a platform takes.
    payload = {"data": {"alert": "x" * 4_100}}

    with pytest.raises(ValidationError) as raised:
        _request(content={"text": "Hi", "push": {platform: payload}})

    assert [error["loc"] for error in raised.value.errors()] == [("content", "push")]
    assert f"{platform} must take at most 4096 bytes as compact JSON" in raised.value.errors()[0]["msg"]


def test_send_request_at_last_year_of_the_range_accepted() -> None:
    request = _request(at="9998-12-31T23:59:59-12:00")

    assert request.at == datetime(9999, 1, 1, 11, 59, 59, tzinfo=UTC)


def test_accept_send_at_more_than_a_year_past_names_at() -> None:
    with pytest.raises(InvalidRequestError, match=r"^at: must not be more than a year in the past"):
        accept_send(_request(at="2025-01-01T09:00:00+00:00"), FakeSendStore(), FakeExpansionQueue(), NOW, "n")


def test_send_request_empty_user_id_refused_in_words_not_a_pattern() -> None:
    from core.http import parse_body

    with pytest.raises(InvalidRequestError) as raised:
        parse_body(json.dumps({"to": {"user_ids": [""]}, "content": {"text": "hi"}}), SendRequest)

    assert str(raised.value) == "to.user_ids[0]: must be a user id: 1 to 256 characters, none of them NUL"


def test_send_request_unknown_push_platform_refused_once_naming_the_key() -> None:
    """It was told twice, each member of a union refusing it, at 'content.push.FOO["[key]"]'."""
    from core.http import parse_body

    body = {"to": {"user_ids": ["u1"]}, "content": {"text": "hi", "push": {"FOO": {}}}}
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(json.dumps(body), SendRequest)

    assert str(raised.value) == "content.push.FOO: must be one of: APNS, APNS_SANDBOX, GCM, FCM"
