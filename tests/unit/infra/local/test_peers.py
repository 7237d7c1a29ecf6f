"""Unit tests of the local receiver's scripted rate limit and outage (infra/local/peers.py)."""

from __future__ import annotations

import pytest

from infra.local.peers import RateWindow, scripted_outage


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_window_admits_rate_requests_in_one_second_then_refuses() -> None:
    window = RateWindow(Clock())

    answers = [window.admit("/webhook/a", 2) for _ in range(3)]

    assert answers == [True, True, False]


def test_rate_window_admits_again_once_the_first_leaves_the_window() -> None:
    clock = Clock()
    window = RateWindow(clock)
    window.admit("/webhook/a", 2)
    clock.now += 0.5
    window.admit("/webhook/a", 2)

    clock.now += 0.5
    first_left = window.admit("/webhook/a", 2)
    refused = window.admit("/webhook/a", 2)

    assert (first_left, refused) == (True, False)


def test_rate_window_paced_one_step_apart_is_never_refused() -> None:
    clock = Clock()
    window = RateWindow(clock)

    answers = []
    for _ in range(20):
        answers.append(window.admit("/webhook/a", 5))
        clock.now += 0.2

    assert all(answers)


def test_rate_window_below_one_per_second_spaces_by_its_interval() -> None:
    clock = Clock()
    window = RateWindow(clock)
    window.admit("/webhook/a", 0.5)
    clock.now += 1.5

    early = window.admit("/webhook/a", 0.5)
    clock.now += 0.5
    on_time = window.admit("/webhook/a", 0.5)

    assert (early, on_time) == (False, True)


def test_rate_window_keys_are_independent() -> None:
    window = RateWindow(Clock())
    window.admit("/webhook/a", 1)

    assert window.admit("/webhook/b", 1) is True


@pytest.mark.parametrize(
    ("query", "elapsed", "down"),
    [("down=150", 0.0, True), ("down=150", 149.9, True), ("down=150", 150.0, False), ("", 0.0, False)],
)
def test_scripted_outage_is_down_for_its_seconds_from_the_first_request(query: str, elapsed: float, down: bool) -> None:
    assert scripted_outage(query, 1000.0, 1000.0 + elapsed) is down


@pytest.mark.parametrize("query", ["down=abc", "down=-5", "down=nan", "down=inf"])
def test_scripted_outage_ignores_values_that_are_not_positive_numbers(query: str) -> None:
    assert scripted_outage(query, 1000.0, 1000.0) is False
