"""Unit tests of core/audience/devices.py: deleting an app's devices and endpoints a batch at a time, within the time
a call has."""

from __future__ import annotations

import pytest

from core.audience import devices
from core.audience.devices import delete_app
from core.audience.models import AppRequest, UserRequest
from core.errors import NotFoundError
from tests.fakes.audience import FakeAudienceRepository, endpoint

ARN = "arn:aws:sns:us-east-1:123456789012:app/GCM/android"


class RecordingEndpoints:
    """SNS endpoints as the port sees them: each registered one is ``endpoint/<token>``; deletes are recorded."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def register(self, platform_application_arn: str, token: str, user_id: str) -> str:
        return f"endpoint/{token}"

    def delete(self, endpoint_arn: str) -> None:
        self.deleted.append(endpoint_arn)

    def check_application(self, platform_application_arn: str) -> None:
        return None


def _app_with_devices(count: int) -> FakeAudienceRepository:
    repository = FakeAudienceRepository()
    repository.put_app("android", AppRequest(platform_application_arn=ARN))
    for index in range(count):
        repository.put_user(f"u{index}", UserRequest(timezone="UTC"))
        repository.register_device(f"u{index}", "android", f"t{index}", endpoint(f"endpoint/t{index}"))
    return repository


def test_delete_app_stops_when_time_runs_out_and_a_call_again_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    # An app may have millions of devices and SNS deletes one endpoint a call: one call did all, past its timeout, and
    # the endpoints of the rows it had deleted were left behind, named by no row.
    monkeypatch.setattr(devices, "APP_DELETION_BATCH", 2)
    repository, endpoints = _app_with_devices(5), RecordingEndpoints()

    first = delete_app("android", repository, endpoints, lambda: 60.0 if len(endpoints.deleted) < 3 else 0.0)

    # Out of time in the second batch: its endpoint deleted (t2) goes with its row, the other (t3) stays whole.
    assert (first.devices, first.done) == (3, False)
    assert endpoints.deleted == ["endpoint/t0", "endpoint/t1", "endpoint/t2"]
    assert repository.get_app("android").name == "android"
    assert sorted(device.endpoint_arn for device in repository.devices.values()) == ["endpoint/t3", "endpoint/t4"]

    second = delete_app("android", repository, endpoints, lambda: 60.0)

    assert (second.devices, second.done) == (2, True)
    assert endpoints.deleted[3:] == ["endpoint/t3", "endpoint/t4"]
    with pytest.raises(NotFoundError):
        repository.get_app("android")


def test_delete_app_with_no_time_left_deletes_nothing() -> None:
    repository, endpoints = _app_with_devices(3), RecordingEndpoints()

    deletion = delete_app("android", repository, endpoints, lambda: 1.0)

    assert (deletion.devices, deletion.done) == (0, False)
    assert (endpoints.deleted, len(repository.devices)) == ([], 3)


def test_delete_app_unknown_raises_not_found() -> None:
    with pytest.raises(NotFoundError):
        delete_app("ios", FakeAudienceRepository(), RecordingEndpoints(), lambda: 60.0)
