import pytest

from core.errors import InvalidRequestError
from core.pages import page_limit


@pytest.mark.parametrize(("text", "expected"), [(None, 100), ("1", 1), ("100", 100), ("007", 7), ("0" * 5000 + "5", 5)])
def test_page_limit_whole_number_within_bounds_read(text: str | None, expected: int) -> None:
    assert page_limit(text, 100) == expected


@pytest.mark.parametrize(
    "text", ["0", "000", "101", "", " 5", "5 ", "-1", "1.0", "\uff11", "\u00b2", "9" * 4301, "1" + "0" * 5000]
)
def test_page_limit_anything_else_refused_naming_limit(text: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        page_limit(text, 100)

    assert str(raised.value) == "limit: must be a whole number from 1 to 100"
