"""Integration tests of the outbound HTTP guard (core/outbound.py) with the system's own resolver; nothing is sent."""

from __future__ import annotations

import pytest

from core.errors import BlockedTargetError
from core.outbound import check_url


def test_check_url_decimal_loopback_is_refused_by_resolution() -> None:
    # "2130706433" is 127.0.0.1 written as one number: only resolving the name (getaddrinfo) shows it.
    with pytest.raises(BlockedTargetError):
        check_url("http://2130706433/", False)
