"""Pacing per destination: send slots taken from state that every concurrent consumer shares.

The algorithm is GCRA ("generic cell rate algorithm", the virtual-scheduling form of a leaky bucket): each
destination keeps one number, its theoretical arrival time (TAT), the moment the next send may start. Taking a slot
returns ``max(TAT, now)`` and moves TAT one interval (``cost / per_second``) past it, so slots of one destination are
spaced by its rate however many consumers take them, and a burst is spread into a queue of future slots rather than
refused. A 429 pushes TAT past the provider's ``Retry-After`` and slows the pace for a while.

In DynamoDB a slot costs one conditional ``UpdateItem``: ``tat = tat + step`` while the destination is busy (TAT in
the future), ``tat = now + step`` when it is idle. DynamoDB cannot take a maximum in an update, so each pacer
remembers what it last saw of a destination to pick the branch that will hold; a wrong guess costs one more call,
whose branch the refused call's answer (the item as it was) tells.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

from core.errors import AWS_ERRORS, UpstreamError, aws_error, error_code

# Slots are spaced this much wider than the provider's rate, so that jitter in when each request reaches the provider
# never crowds one more into its counting window.
SAFETY_MARGIN = 1.10
# After a 429, sends to the destination are spaced this much wider (again on each further 429, up to the maximum),
# for at least this long: a stray 429 costs little, a limit lower than declared is found in a few steps.
SLOW_FACTOR = 1.10
MAX_SLOW_FACTOR = 8.0
SLOW_SECONDS = 10.0
# Pacing items outlive their last use by this long (DynamoDB TTL).
ITEM_TTL_SECONDS = 86400
# Calls one slot may take: the guessed branch, the branch the refused call's item shows, one more if it changed between.
TAKE_CALLS = 3


class Slot(NamedTuple):
    """What taking a slot of one destination returned: the slot's time, and the destination's slow-down."""

    at: float
    tat: float
    slow_factor: float = 1.0
    slow_until: float = 0.0


class PaceStore(Protocol):
    """Where destinations' pacing state lives, shared by every consumer (DynamoDB; an in-memory fake in tests)."""

    def take(self, key: str, step: float, now: float, busy: bool) -> Slot:
        """Take the next slot of ``key`` and move its TAT ``step`` seconds past it; ``busy`` is a hint only."""
        ...

    def advance(self, key: str, to: float, now: float) -> None:
        """Move the TAT of ``key`` to ``to`` unless it is later already."""
        ...

    def hold(self, key: str, until: float, now: float) -> Slot:
        """Give ``key`` no slot before ``until`` and slow its pace (see ``slowed``); return its new state."""
        ...


def slowed(factor: float, slow_until: float, until: float, now: float) -> tuple[float, float]:
    """Return the slow-down after a 429 held a destination until ``until``: its factor and when it ends.

    The factor doubles on each 429 while a slow-down lasts (at most ``MAX_SLOW_FACTOR``) and starts at
    ``SLOW_FACTOR`` otherwise; the slow-down lasts ``SLOW_SECONDS`` past the hold, and never ends earlier than it did.
    """
    active = factor if slow_until > now else 1.0
    return min(MAX_SLOW_FACTOR, active * SLOW_FACTOR), max(slow_until, until + SLOW_SECONDS)


@dataclass(frozen=True)
class Limit:
    """A rate a destination must be held to: ``per_second`` sends per second, this send costing ``cost`` of them."""

    key: str
    per_second: float
    cost: float = 1.0

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError("per_second must be a positive number")
        if not (self.cost > 0 and math.isfinite(self.cost)):
            raise ValueError("cost must be a positive number")

    @property
    def step(self) -> float:
        """Return the seconds one send of this cost occupies, with the safety margin."""
        return self.cost / self.per_second * SAFETY_MARGIN

    @property
    def margin(self) -> float:
        """Return the seconds by which the safety margin widens one step: the jitter a send may have."""
        return self.step - self.cost / self.per_second


class Reservation(NamedTuple):
    """When a send may start, and whether only its strictest limit's slot was taken (``Pacer.reserve_within``)."""

    at: float
    partial: bool = False


class Pacer:
    """Takes send slots for destinations from a shared store; safe to use from several threads.

    Parameters
    ----------
    store:
        The shared pacing state.
    """

    # The last slot of this many destinations, the most recent, is remembered (a hint: one forgotten costs nothing but
    # the hint). A Telegram bot paces each chat: a warm container kept one entry per chat ever sent to, without end.
    max_remembered: ClassVar[int] = 10_000

    def __init__(self, store: PaceStore) -> None:
        self._store = store
        self._seen: OrderedDict[str, Slot] = OrderedDict()
        self._lock = threading.Lock()

    def _last(self, key: str) -> Slot | None:
        with self._lock:
            return self._seen.get(key)

    def _remember(self, key: str, slot: Slot) -> None:
        with self._lock:
            self._seen[key] = slot
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_remembered:
                self._seen.popitem(last=False)

    def reserve(self, limits: Sequence[Limit], now: float) -> float:
        """Return the time at which a send may start that keeps every limit (``now`` when all are free).

        With several limits (a Telegram chat and its bot) the strictest is taken first and each next one no earlier
        than the slot found so far; when a later limit pushes the send further, the earlier ones are moved to it
        too (one more call), so that no limit counts the send at a time it does not happen.
        """
        return self.reserve_within(limits, now, math.inf).at

    def reserve_within(self, limits: Sequence[Limit], now: float, horizon: float) -> Reservation:
        """Reserve as ``reserve`` does, but when the strictest limit's slot is after ``horizon`` (the send will not
        start before it comes back: a delayed copy holds it) take that slot only: the broader limits (a Telegram
        bot's, the account's SES rate) are taken when the send comes back (``reserve_rest``). Booked now, at the far
        slot, each broader limit's one pace point would move there, and every other destination behind it would wait
        as long (one busy chat held its bot's every other chat)."""
        ordered = sorted(limits, key=lambda limit: limit.step, reverse=True)
        if len(ordered) > 1:
            first = self._take_from(ordered[:1], now, now)
            if first > horizon:
                return Reservation(first, partial=True)
            return Reservation(self._take_from(ordered[1:], first, now, ordered[:1]))
        return Reservation(self._take_from(ordered, now, now))

    def reserve_rest(self, limits: Sequence[Limit], held: float, now: float) -> float:
        """Take the slots a partial reservation left (every limit but the strictest, whose slot at ``held`` the send
        holds) no earlier than that slot, and return when the send may start; when they put it later, the strictest
        limit's pace point moves with it."""
        first, *rest = sorted(limits, key=lambda limit: limit.step, reverse=True)
        at = max(held, now)
        return self._take_from(rest, at, now, [first]) if rest else at

    def _take_from(self, limits: Sequence[Limit], at: float, now: float, earlier: Sequence[Limit] = ()) -> float:
        """Take a slot of each of ``limits`` (strictest first) no earlier than ``at``; return the send's time. The
        ``earlier`` limits (taken before, at ``at``) are moved with it when a slot is later."""
        taken: list[tuple[Limit, float]] = [(limit, limit.step) for limit in earlier]
        for limit in limits:
            last = self._last(limit.key)
            # A slow-down spaces the slots that fall within it: a burst's slots queued far past it keep the pace.
            expected = max(at, last.tat) if last is not None else at
            factor = last.slow_factor if last is not None and last.slow_until > expected else 1.0
            step = limit.step * factor
            slot = self._store.take(limit.key, step, at, busy=last is not None and last.tat > at)
            self._remember(limit.key, slot)
            taken.append((limit, step))
            if slot.at > at:
                for before, before_step in taken[:-1]:
                    self._store.advance(before.key, slot.at + before_step, now)
                at = slot.at
        return at

    def penalize(self, limits: Sequence[Limit], retry_after: float, now: float) -> None:
        """Hold every limit's destination until ``now + retry_after`` and slow its pace (a 429 was answered)."""
        for limit in limits:
            self._remember(limit.key, self._store.hold(limit.key, now + retry_after, now))


class _Result(NamedTuple):
    """One conditional update's answer: whether its condition held, and the item after it (or as it was)."""

    held: bool
    item: dict[str, Any]


def _number(item: dict[str, Any], name: str, default: float = 0.0) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default


class DynamoPaceStore:
    """Pacing state in a DynamoDB table keyed by ``destination``: ``tat``, ``slow_factor``, ``slow_until``.

    Parameters
    ----------
    client:
        A boto3 DynamoDB client.
    table_name:
        The pacing table's name.
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _update(self, key: str, expression: str, condition: str, values: dict[str, Any]) -> _Result:
        """Run one conditional update: the new item, or the item as it was when the condition did not hold."""
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"destination": {"S": key}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                response = getattr(exc, "response", None) or {}
                return _Result(held=False, item=response.get("Item", {}))
            raise aws_error(exc, "pacing a destination") from exc
        return _Result(held=True, item=response.get("Attributes", {}))

    def take(self, key: str, step: float, now: float, busy: bool) -> Slot:
        """Take the next slot: one call when ``busy`` guesses right, two when it does not.

        A refused branch answers the item as it was, which tells the branch that holds; only a concurrent consumer
        moving TAT between the two calls costs a third.
        """
        now_value = {":now": {"N": repr(now)}}
        # The item outlives its new TAT, however far a 429 pushed it or however slow the pace (one send a week:
        # expired before its TAT, DynamoDB's TTL would let the next send go at once).
        busy_branch = (
            # Operands read the item as it was.
            "SET tat = tat + :step, expires_at = tat + :ttl",
            "tat >= :now",
            {":step": {"N": repr(step)}, **now_value, ":ttl": {"N": str(math.ceil(step) + ITEM_TTL_SECONDS)}},
        )
        idle_branch = (
            "SET tat = :next, expires_at = :x",
            "attribute_not_exists(tat) OR tat < :now",
            {":next": {"N": repr(now + step)}, **now_value, ":x": {"N": str(math.ceil(now + step) + ITEM_TTL_SECONDS)}},
        )
        for _ in range(TAKE_CALLS):
            expression, condition, values = busy_branch if busy else idle_branch
            result = self._update(key, expression, condition, values)
            if result.held:
                tat = _number(result.item, "tat")
                return Slot(
                    at=tat - step,
                    tat=tat,
                    slow_factor=_number(result.item, "slow_factor", 1.0),
                    slow_until=_number(result.item, "slow_until"),
                )
            busy = "tat" in result.item and _number(result.item, "tat") >= now
        raise UpstreamError("taking a send slot failed (the destination's state kept changing)")

    def advance(self, key: str, to: float, now: float) -> None:
        """Move TAT to ``to`` unless it is later already."""
        self._update(
            key,
            "SET tat = :to, expires_at = :x",
            "attribute_not_exists(tat) OR tat < :to",
            {":to": {"N": repr(to)}, ":x": {"N": str(int(to) + ITEM_TTL_SECONDS)}},
        )

    def hold(self, key: str, until: float, now: float) -> Slot:
        """Read the destination, then move TAT to ``until`` (unless later) and slow its pace from what it was."""
        try:
            response = self._client.get_item(
                TableName=self._table, Key={"destination": {"S": key}}, ConsistentRead=True
            )
        except AWS_ERRORS as exc:
            raise aws_error(exc, "pacing a destination") from exc
        item = response.get("Item", {})
        factor, slow_until = slowed(_number(item, "slow_factor", 1.0), _number(item, "slow_until"), until, now)
        self.advance(key, until, now)
        tat = max(until, _number(item, "tat"))
        values = {":f": {"N": repr(factor)}, ":su": {"N": repr(slow_until)}, ":now": {"N": repr(now)}}
        # The item outlives both its TAT and its slow-down. Slots reserved days ahead (a slow pace's backlog) put TAT
        # past slow_until: kept from slow_until alone, DynamoDB's TTL deleted the item while those slots waited, and
        # new sends went at once beside them. From the TAT as the update finds it, when it is the later: TAT only grows.
        if slow_until > tat:
            expires, values[":x"] = ":x", {"N": str(math.ceil(slow_until) + ITEM_TTL_SECONDS)}
        else:
            expires, values[":ttl"] = "tat + :ttl", {"N": str(ITEM_TTL_SECONDS)}
        # A consumer that saw more 429s may have slowed it further meanwhile: a slow-down is never undone here.
        self._update(
            key,
            f"SET slow_factor = :f, slow_until = :su, expires_at = {expires}",
            "attribute_not_exists(slow_factor) OR slow_factor <= :f OR slow_until < :now",
            values,
        )
        return Slot(at=tat, tat=tat, slow_factor=factor, slow_until=slow_until)
