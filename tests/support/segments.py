"""Hypothesis strategies of segment conditions (``core/audience/segments.py``): raw ``where`` trees, comparisons under
``and``, ``or`` and ``not``, over the fields and values a suite chooses."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def segment_trees(
    *,
    fields: st.SearchStrategy[str],
    values: st.SearchStrategy[Any],
    ordered: st.SearchStrategy[Any],
    zones: st.SearchStrategy[str],
    max_in: int,
    max_leaves: int,
) -> st.SearchStrategy[Any]:
    """Return a strategy of raw segment trees, as a request's ``where`` holds them (not parsed: some go over a limit).

    Parameters
    ----------
    fields:
        The paths compared; ``timezone`` is the user's time zone, compared with ``zones`` alone.
    values:
        What ``eq``, ``ne`` and ``in`` compare a path with.
    ordered:
        What ``gt``, ``gte``, ``lt`` and ``lte`` compare a path with.
    zones:
        What every operator compares ``timezone`` with.
    max_in:
        The most values an ``in`` lists.
    max_leaves:
        The most comparisons a tree holds.
    """

    @st.composite
    def comparisons(draw: st.DrawFn) -> dict[str, Any]:
        field = draw(fields)
        scalars = zones if field == "timezone" else values
        orderable = zones if field == "timezone" else ordered
        op, value = draw(
            st.one_of(
                st.tuples(st.sampled_from(["eq", "ne"]), scalars),
                st.tuples(st.just("in"), st.lists(scalars, min_size=1, max_size=max_in)),
                st.tuples(st.sampled_from(["gt", "gte", "lt", "lte"]), orderable),
                st.tuples(st.just("exists"), st.booleans()),
            )
        )
        return {"field": field, op: value}

    return st.recursive(
        comparisons(),
        lambda inner: st.one_of(
            st.builds(lambda items: {"and": items}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda items: {"or": items}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda item: {"not": item}, inner),
        ),
        max_leaves=max_leaves,
    )
