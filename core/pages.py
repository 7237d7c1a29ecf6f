"""Pages of the listings: opaque cursors, and a page cut to what one Lambda answer can carry."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from core.errors import InvalidRequestError

Item = TypeVar("Item")

# The most JSON a page of a listing holds (at least one item): Lambda answers at most 6 MB, the body escaped once more.
PAGE_CHARS = 2 * 1024 * 1024


def encode_cursor(value: Any) -> str:
    """Return the opaque cursor of a JSON value: unpadded base64url of its JSON."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def cursor_value(cursor: str) -> Any:
    """Return the JSON value a cursor holds; raise ``ValueError`` when it holds none (base64 and UTF-8 errors are
    ``ValueError`` too; a crafted cursor of brackets nested past the parser is one as well)."""
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except RecursionError:
        raise ValueError("a cursor nested too deeply") from None


def cursor_text(cursor: str, key: str, valid: Callable[[str], object]) -> str:
    """Return the text a listing's cursor holds under ``key`` (a JSON object's); raise naming ``cursor`` when it holds
    none, or one ``valid`` refuses: a cursor is only ever one a page gave."""
    try:
        data = cursor_value(cursor)
        text = data.get(key) if isinstance(data, dict) else None
    except ValueError:
        text = None
    if not isinstance(text, str) or not valid(text):
        raise InvalidRequestError("cursor", "not a cursor this API gave; use the 'next' value of a previous page")
    return text


def page_limit(text: str | None, largest: int) -> int:
    """Return a listing's ``?limit=``: ``largest`` when absent; raise naming ``limit`` unless it is 1 to ``largest``."""
    if text is None:
        return largest
    # Digits counted before reading them: Python refuses to read a number of more than 4,300 digits (a ValueError).
    digits = text.lstrip("0")
    if not (
        text.isascii() and text.isdigit() and len(digits) <= len(str(largest)) and 1 <= int(digits or 0) <= largest
    ):
        raise InvalidRequestError("limit", f"must be a whole number from 1 to {largest}")
    return int(digits)


def fitting(items: Sequence[Item], chars: Callable[[Item], int]) -> list[Item]:
    """Return the first ``items`` whose JSON (``chars`` of each) stays within ``PAGE_CHARS``; at least one."""
    kept: list[Item] = []
    size = 0
    for item in items:
        size += chars(item)
        if kept and size > PAGE_CHARS:
            break
        kept.append(item)
    return kept
