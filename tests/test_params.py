"""Integer query parameters: ASCII digits within bounds, or a ValueError naming the parameter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwatch.params import MAX_INT64, parse_int


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("1000", 1000), (" 7 ", 7), ("0005", 5)])
def test_digits_within_bounds(text: str, expected: int) -> None:
    """Plain ASCII digits from lo to hi are accepted (surrounding spaces ignored)."""
    assert parse_int("limit", text, 1, 1000) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "0",
        "1001",
        "-1",
        "+1",
        "1_0",
        "1e3",
        "1.0",
        "nan",
        "inf",
        "²",
        "١٠",
        "１０",
        "9" * 400,
    ],
)
def test_anything_else_names_the_parameter(text: str) -> None:
    """Signs, exponents, underscores, other scripts' digits ('²' passes isdigit()) and
    out-of-range numbers are ValueErrors naming `limit`."""
    with pytest.raises(ValueError, match=r"^limit: "):
        parse_int("limit", text, 1, 1000)


def test_bigint_bounds() -> None:
    """2**63 - 1 is the last value a database BIGINT holds; one more is refused."""
    assert parse_int("after", str(MAX_INT64), 0, MAX_INT64) == MAX_INT64
    with pytest.raises(ValueError, match="after"):
        parse_int("after", str(MAX_INT64 + 1), 0, MAX_INT64)


@given(st.text(max_size=30))
def test_any_text_is_an_int_in_bounds_or_a_value_error(text: str) -> None:
    """Whatever the text: an int within the bounds, or a ValueError naming the parameter."""
    try:
        value = parse_int("after", text, 0, MAX_INT64)
    except ValueError as err:
        assert str(err).startswith("after: ")
    else:
        assert 0 <= value <= MAX_INT64
