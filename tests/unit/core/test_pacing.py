"""Unit tests of core/pacing.py: GCRA send slots from a shared in-memory store, on an explicit clock."""

from __future__ import annotations

import itertools
import random
import threading

import pytest

from core.pacing import MAX_SLOW_FACTOR, SAFETY_MARGIN, SLOW_FACTOR, SLOW_SECONDS, Limit, Pacer
from tests.fakes.pacing import InMemoryPaceStore

NOW = 1_000.0
# Slots are sums of float steps; two slots one step apart may differ from it by rounding, never by more.
EPSILON = 1e-9
CHAT = Limit("telegram-chat:1", per_second=4.0)


def _gaps(slots: list[float]) -> list[float]:
    ordered = sorted(slots)
    return [later - earlier for earlier, later in itertools.pairwise(ordered)]


def _most_in_one_second(times: list[float]) -> int:
    return max(sum(1 for other in times if start <= other < start + 1.0) for start in times)


def test_limit_step_is_cost_over_rate_widened_by_safety_margin() -> None:
    assert Limit("ses:us-east-1", per_second=6.0, cost=3.0).step == pytest.approx(0.5 * SAFETY_MARGIN)


def test_pacer_reserve_burst_at_one_instant_spaces_slots_one_step_apart() -> None:
    pacer = Pacer(InMemoryPaceStore())

    slots = [pacer.reserve([CHAT], NOW) for _ in range(10)]

    assert slots == pytest.approx([NOW + index * CHAT.step for index in range(10)])


def test_pacer_reserve_stream_slower_than_rate_never_waits() -> None:
    pacer = Pacer(InMemoryPaceStore())
    times = [NOW + index * 2 * CHAT.step for index in range(10)]

    slots = [pacer.reserve([CHAT], now) for now in times]

    assert slots == times


def test_pacer_reserve_cost_three_at_rate_six_spaces_slots_half_a_second_apart() -> None:
    pacer = Pacer(InMemoryPaceStore())
    limit = Limit("ses:us-east-1", per_second=6.0, cost=3.0)

    slots = [pacer.reserve([limit], NOW) for _ in range(4)]

    assert _gaps(slots) == pytest.approx([0.5 * SAFETY_MARGIN] * 3)


def test_pacer_reserve_two_pacers_sharing_store_interleave_one_step_apart() -> None:
    store = InMemoryPaceStore()
    pacers = [Pacer(store), Pacer(store)]

    slots = [pacers[index % 2].reserve([CHAT], NOW) for index in range(10)]

    assert slots == pytest.approx([NOW + index * CHAT.step for index in range(10)])


@pytest.mark.parametrize("seed", range(8))
def test_pacer_reserve_two_pacers_at_nondecreasing_times_never_give_slots_closer_than_step(seed: int) -> None:
    rng = random.Random(seed)
    store = InMemoryPaceStore()
    pacers = [Pacer(store), Pacer(store)]
    now = NOW
    slots: list[float] = []
    for _ in range(200):
        now += rng.choice([0.0, 0.0, CHAT.step / 3, CHAT.step, 3 * CHAT.step])
        slot = rng.choice(pacers).reserve([CHAT], now)
        assert slot >= now
        slots.append(slot)

    assert min(_gaps(slots)) >= CHAT.step - EPSILON


def test_pacer_reserve_four_threads_sharing_store_give_distinct_slots_step_apart() -> None:
    store = InMemoryPaceStore()
    pacers = [Pacer(store), Pacer(store)]
    start = threading.Barrier(4)
    slots: list[float] = []
    slots_lock = threading.Lock()

    def reserve_25(pacer: Pacer) -> None:
        start.wait()
        for _ in range(25):
            slot = pacer.reserve([CHAT], NOW)
            with slots_lock:
                slots.append(slot)

    threads = [threading.Thread(target=reserve_25, args=(pacers[index % 2],)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(slots)) == 100
    assert min(_gaps(slots)) >= CHAT.step - EPSILON


def test_pacer_penalize_gives_no_slot_before_retry_after() -> None:
    pacer = Pacer(InMemoryPaceStore())
    pacer.reserve([CHAT], NOW)

    pacer.penalize([CHAT], retry_after=5.0, now=NOW)

    assert pacer.reserve([CHAT], NOW + 1) == NOW + 5


def test_pacer_penalize_spaces_following_slots_slow_factor_wider() -> None:
    pacer = Pacer(InMemoryPaceStore())
    pacer.penalize([CHAT], retry_after=5.0, now=NOW)

    slots = [pacer.reserve([CHAT], NOW + 1) for _ in range(4)]

    assert _gaps(slots) == pytest.approx([SLOW_FACTOR * CHAT.step] * 3)


def test_pacer_reserve_after_slow_until_spaces_slots_by_base_step() -> None:
    pacer = Pacer(InMemoryPaceStore())
    pacer.penalize([CHAT], retry_after=5.0, now=NOW)
    pacer.reserve([CHAT], NOW + 1)
    after_slow_down = NOW + 5 + SLOW_SECONDS + 1

    slots = [pacer.reserve([CHAT], after_slow_down) for _ in range(4)]

    assert slots == pytest.approx([after_slow_down + index * CHAT.step for index in range(4)])


def test_pacer_penalize_during_queued_burst_keeps_base_step_for_slots_past_slow_down() -> None:
    pacer = Pacer(InMemoryPaceStore())
    queued = [pacer.reserve([CHAT], NOW) for _ in range(100)]
    # The burst's slots reach past the slow-down: a 429 at the first of them must not space the queue's tail wider.
    pacer.penalize([CHAT], retry_after=1.0, now=NOW)
    assert max(queued) > NOW + 1.0 + SLOW_SECONDS

    slots = [pacer.reserve([CHAT], NOW + 1) for _ in range(3)]

    assert _gaps([max(queued), *slots]) == pytest.approx([CHAT.step] * 3)


def test_pacer_penalize_during_queued_burst_slows_slots_within_slow_down() -> None:
    pacer = Pacer(InMemoryPaceStore())
    for _ in range(10):
        pacer.reserve([CHAT], NOW)
    pacer.penalize([CHAT], retry_after=1.0, now=NOW)

    slots = [pacer.reserve([CHAT], NOW + 1) for _ in range(3)]

    assert _gaps(slots) == pytest.approx([SLOW_FACTOR * CHAT.step] * 2)


@pytest.mark.parametrize(
    ("penalties", "factor"),
    [(1, SLOW_FACTOR), (2, SLOW_FACTOR**2), (3, SLOW_FACTOR**3), (30, MAX_SLOW_FACTOR)],
)
def test_pacer_penalize_repeated_grows_slow_factor_up_to_max(penalties: int, factor: float) -> None:
    pacer = Pacer(InMemoryPaceStore())
    for index in range(penalties):
        pacer.penalize([CHAT], retry_after=5.0, now=NOW + index)

    slots = [pacer.reserve([CHAT], NOW + penalties) for _ in range(3)]

    assert _gaps(slots) == pytest.approx([factor * CHAT.step] * 2)


def test_pacer_penalize_after_slow_down_ended_starts_again_at_slow_factor() -> None:
    # A slow-down that never reset would compound every 429 the destination ever answered: a few stray ones a day
    # apart would leave it at MAX_SLOW_FACTOR for good.
    pacer = Pacer(InMemoryPaceStore())
    for index in range(3):
        pacer.penalize([CHAT], retry_after=5.0, now=NOW + index)
    after_slow_down = NOW + 2 + 5 + SLOW_SECONDS + 1

    pacer.penalize([CHAT], retry_after=5.0, now=after_slow_down)
    slots = [pacer.reserve([CHAT], after_slow_down + 6) for _ in range(3)]

    assert _gaps(slots) == pytest.approx([SLOW_FACTOR * CHAT.step] * 2)


def test_pacer_penalize_by_pacer_that_missed_earlier_penalties_never_speeds_the_pace_up() -> None:
    store = InMemoryPaceStore()
    penalized, unaware = Pacer(store), Pacer(store)
    for index in range(3):
        penalized.penalize([CHAT], retry_after=5.0, now=NOW + index)

    unaware.penalize([CHAT], retry_after=5.0, now=NOW + 3)
    slots = [penalized.reserve([CHAT], NOW + 10) for _ in range(3)]

    assert min(_gaps(slots)) >= SLOW_FACTOR**3 * CHAT.step - EPSILON


def test_pacer_reserve_chat_and_bot_limits_busy_chat_decides_slot() -> None:
    pacer = Pacer(InMemoryPaceStore())
    chat, bot = Limit("telegram-chat:1", per_second=1.0), Limit("telegram-bot", per_second=30.0)
    pacer.reserve([chat, bot], NOW)

    assert pacer.reserve([chat, bot], NOW) == pytest.approx(NOW + chat.step)


def test_pacer_reserve_chat_and_bot_limits_busy_bot_decides_slot() -> None:
    pacer = Pacer(InMemoryPaceStore())
    bot = Limit("telegram-bot", per_second=30.0)

    slots = [pacer.reserve([Limit(f"telegram-chat:{index}", per_second=1.0), bot], NOW) for index in range(5)]

    assert slots == pytest.approx([NOW + index * bot.step for index in range(5)])


def test_pacer_reserve_many_chats_of_one_bot_keep_bot_rate_in_every_second() -> None:
    # Two messages to each of 60 chats, taken chat by chat: the second of each waits for its chat, while the bot
    # slot it took is long past by then.
    pacer = Pacer(InMemoryPaceStore())
    bot = Limit("telegram-bot", per_second=30.0)

    sends = [
        pacer.reserve([Limit(f"telegram-chat:{index}", per_second=1.0), bot], NOW)
        for index in range(60)
        for _ in range(2)
    ]

    assert _most_in_one_second(sends) <= bot.per_second


def test_pacer_reserve_within_far_chat_slot_takes_the_chat_only_and_other_chats_of_the_bot_go_at_once() -> None:
    """Ten to one chat booked the bot ten seconds ahead with the chat's last slot: another chat of the bot, its bot
    slot free, waited ten seconds for it."""
    pacer = Pacer(InMemoryPaceStore())
    chat, bot = Limit("telegram-chat:1", per_second=1.0), Limit("telegram-bot", per_second=30.0)

    burst = [pacer.reserve_within([chat, bot], NOW, NOW + 0.5) for _ in range(10)]
    other = pacer.reserve_within([Limit("telegram-chat:2", per_second=1.0), bot], NOW, NOW + 0.5)

    assert [reservation.partial for reservation in burst] == [False] + [True] * 9
    assert burst[-1].at == pytest.approx(NOW + 9 * chat.step)
    assert other.at == pytest.approx(NOW + bot.step)
    assert not other.partial


def test_pacer_reserve_rest_takes_the_bot_at_the_return_and_moves_the_chat_with_a_later_bot_slot() -> None:
    pacer = Pacer(InMemoryPaceStore())
    chat, bot = Limit("telegram-chat:1", per_second=1.0), Limit("telegram-bot", per_second=30.0)
    pacer.reserve([chat, bot], NOW)
    held = pacer.reserve_within([chat, bot], NOW, NOW)
    assert held.partial
    for index in range(40):  # the bot gets busy by the time the chat's slot comes back
        pacer.reserve([Limit(f"telegram-chat:x{index}", per_second=1.0), bot], held.at)

    # Back early (a copy comes a little before its slot): the send is still no earlier than the chat's slot.
    assert pacer.reserve_rest([chat, bot], held.at, held.at - 1.0) >= held.at
    start = pacer.reserve_rest([chat, bot], held.at, held.at)

    assert start == pytest.approx(held.at + 41 * bot.step)
    # The chat's next slot is a step past the send, not past the slot it held.
    assert pacer.reserve([chat, bot], held.at) == pytest.approx(start + chat.step)


def test_pacer_reserve_unseen_key_hints_idle() -> None:
    store = InMemoryPaceStore()

    Pacer(store).reserve([CHAT], NOW)

    assert store.busy_hints(CHAT.key) == [False]


def test_pacer_reserve_last_seen_tat_in_future_hints_busy() -> None:
    store = InMemoryPaceStore()
    pacer = Pacer(store)
    pacer.reserve([CHAT], NOW)

    pacer.reserve([CHAT], NOW)

    assert store.busy_hints(CHAT.key) == [False, True]


def test_pacer_reserve_last_seen_tat_passed_hints_idle() -> None:
    store = InMemoryPaceStore()
    pacer = Pacer(store)
    pacer.reserve([CHAT], NOW)

    pacer.reserve([CHAT], NOW + CHAT.step + 1)

    assert store.busy_hints(CHAT.key) == [False, False]


def test_pacer_reserve_after_own_penalize_hints_busy() -> None:
    store = InMemoryPaceStore()
    pacer = Pacer(store)
    pacer.penalize([CHAT], retry_after=5.0, now=NOW)

    pacer.reserve([CHAT], NOW + 1)

    assert store.busy_hints(CHAT.key) == [True]


def test_pacer_reserve_key_seen_only_by_other_pacer_hints_idle_and_still_waits() -> None:
    store = InMemoryPaceStore()
    Pacer(store).reserve([CHAT], NOW)
    other = Pacer(store)

    slot = other.reserve([CHAT], NOW)

    assert (store.busy_hints(CHAT.key), slot) == ([False, False], pytest.approx(NOW + CHAT.step))


def test_pacer_penalize_holds_every_limit_of_the_send() -> None:
    store = InMemoryPaceStore()
    chat, bot = Limit("telegram-chat:1", per_second=1.0), Limit("telegram-bot", per_second=30.0)

    Pacer(store).penalize([chat, bot], retry_after=5.0, now=NOW)

    assert (store.tat(chat.key), store.tat(bot.key)) == (NOW + 5, NOW + 5)


def test_pacer_remembers_the_most_recent_destinations_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # One entry per destination ever paced (a Telegram chat each), kept as long as the container: memory without end.
    monkeypatch.setattr(Pacer, "max_remembered", 3)
    pacer = Pacer(InMemoryPaceStore())
    for chat in ("a", "b", "c", "a", "d"):
        pacer.reserve([Limit(key=f"telegram:{chat}", per_second=1.0)], 100.0)

    assert list(pacer._seen) == ["telegram:c", "telegram:a", "telegram:d"]
