"""bench/burst.py's targets: what they let pass."""

from __future__ import annotations

from bench.burst import DrillResult, _targets


def _result(**changes: object) -> DrillResult:
    base = {
        "label": "receiver allows 5/s",
        "published": 100,
        "delivered": 100,
        "dead": 0,
        "failed": 0,
        "requests": 200,
        "answered_429": 0,
        "seconds": 22.0,
        "span": 20.0,
        "floor": 20.0,
        "rate": 5.0,
        "received": 100,
        "repeated": 0,
    }
    base.update(changes)
    return DrillResult(**base)  # type: ignore[arg-type]


def test_every_notification_accepted_twice_is_not_all_met() -> None:
    """The receiver accepted each of the 100 notifications twice (``repeated`` = 100): burst.py computes it, then
    neither the table nor any target shows it; every target reads 'met'."""
    result = _result(repeated=100)

    targets = _targets(result)
    assert not all(target.met for target in targets), [(t.figure, t.measured, t.met) for t in targets]


def test_no_request_at_the_receiver_is_not_a_met_429_share() -> None:
    """No request reached the receiver: the 429 share defaults to 0.0 % and reads 'met'."""
    result = _result(requests=0, answered_429=0, received=0, delivered=0)

    [share] = [target for target in _targets(result) if "429" in target.figure]
    assert share.met is not True, share
