"""The one time grammar of the admin API and the one JSON time format (chatwatch.timefmt)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatwatch.timefmt import MAX_TIME, MIN_TIME, format_time, parse_time

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)

in_range = st.floats(min_value=MIN_TIME, max_value=MAX_TIME - 1, allow_nan=False)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1800000000", NOW),
        ("1800000000.25", NOW + 0.25),
        ("0", 0.0),
        ("2027-01-15T08:00:00Z", NOW),
        ("2027-01-15T08:00:00.5z", NOW + 0.5),
        ("2027-01-15t09:00:00+01:00", NOW),
        ("2027-01-15T03:30:00-04:30", NOW),
        ("2027-01-15 09:00:00 01:00", NOW),  # '+' decoded to a space by an unencoded URL
        ("2027-01-15T08:00:00", NOW),  # no zone: UTC
        ("2027-01-15T08:00", NOW),
        ("2027-01-15", NOW - 8 * 3600),
        ("2027-01-15T07:59:60Z", NOW),  # a leap second folds onto the next second
        ("2027-01-15T08:00:00.1234567891Z", NOW + 0.123456),
        ("9999-12-31T23:59:59.999969Z", MAX_TIME - 0.000031),
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("7d", NOW - 7 * 86400),
        ("1h30m", NOW - 5400),
        ("500ms", NOW - 0.5),
        ("2w", NOW - 14 * 86400),
        ("  15m\t", NOW - 900),
    ],
)
def test_every_form_of_the_grammar(text: str, expected: float) -> None:
    """Epoch seconds, RFC 3339 (UTC without a zone) and durations back from now all parse."""
    assert parse_time("since", text, NOW) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "1e10",  # exponents are not epoch seconds (and 5e10 was a 500 in the log API)
        "5e10",
        "1e309",
        "inf",
        "-inf",
        "nan",
        "NaN",
        "-1",
        "+5",
        "1_000",
        "0x10",
        "١٢٣",  # Arabic-Indic digits, which float() and int() accept
        "１２３",  # fullwidth digits
        "²",  # isdigit() is true for it
        "15x",
        "-5m",
        "m",
        "99999999w",  # years before 1970
        "9" * 60 + "s",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "10000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-00:01",  # 10000-01-01 in UTC
        "2027-13-01",
        "2027-02-29",
        "2027-01-15T24:00:00Z",
        "2027-01-15T08:00:00+24:00",
        "2027-01-15T08:00:00+01:60",
        "2027-01-15T08:00:00+0100",
        "2027-01-15T08:00:00.Z",
        "2027-W03",
        "20270115T080000Z",
        "2027-01-15Z",
        "2027-01-15T08:00:00Z\x00",
        "x" * 5000,
        "1" * 65,
    ],
)
def test_bad_input_is_a_value_error_naming_the_parameter(text: str) -> None:
    """Everything outside the grammar or outside 1970–9999 is a ValueError naming `until`."""
    with pytest.raises(ValueError, match=r"^until: "):
        parse_time("until", text, NOW)


@given(st.text(max_size=80), st.floats(allow_nan=True, allow_infinity=True))
@example("1" * 400, NOW)
@example("9" * 30 + "w", NOW)
@example("15m", float("inf"))
@example("15m", float("nan"))
@example("0s", -1.0)
def test_any_text_is_a_time_in_range_or_a_value_error(text: str, now: float) -> None:
    """Any text and any `now`: a time within 1970–9999, or a ValueError naming the parameter;
    never an OverflowError or another exception."""
    try:
        value = parse_time("since", text, now)
    except ValueError as err:
        assert str(err).startswith("since: ")
        assert type(err) is ValueError
    else:
        assert MIN_TIME <= value < MAX_TIME


@given(
    st.from_regex(
        r"\A\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})?)?\Z",
        fullmatch=True,
    )
)
def test_rfc3339_shaped_text_never_raises_anything_but_value_error(text: str) -> None:
    """Text of RFC 3339's shape with any digits (month 99, offset 99:99) parses or is a
    ValueError: the calendar checks never leak another exception."""
    try:
        parse_time("since", text, NOW)
    except ValueError as err:
        assert str(err).startswith("since: ")


@given(st.one_of(in_range, st.floats(min_value=2.4e11, max_value=MAX_TIME, exclude_max=True)))
@example(math.nextafter(MAX_TIME, 0))
@example(253_402_300_799.000_015)
@example(1e-7)
@example(0.0000005)
def test_format_then_parse_round_trips(ts: float) -> None:
    """format_time gives the one format; parsing it gives the time back to the microsecond."""
    text = format_time(ts)
    assert FORMAT.fullmatch(text)
    back = parse_time("since", text, NOW)
    assert abs(back - ts) <= 0.5e-6 + ts * 2**-52  # to the microsecond, ties included
    assert format_time(back) == text


@given(moments)
def test_any_rfc3339_time_parses_to_its_instant(moment: datetime) -> None:
    """Python's own RFC 3339 rendering of any aware time, any offset, parses to that instant."""
    offset = moment.utcoffset() or timedelta(0)
    moment = moment.replace(tzinfo=timezone(offset))  # a fixed offset, as RFC 3339 has
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    assert parse_time("since", moment.isoformat(), NOW) == pytest.approx(expected, abs=1e-6)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_durations_count_back_from_the_injected_now(n: int, unit: str) -> None:
    """`<n><unit>` is now minus that long, whatever now the caller's clock gives."""
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit] * n
    now = 253_000_000_000.0
    if now - seconds < 0:
        with pytest.raises(ValueError, match="since"):
            parse_time("since", f"{n}{unit}", now)
    else:
        assert parse_time("since", f"{n}{unit}", now) == now - seconds


def test_format_is_rfc3339_utc_with_microseconds() -> None:
    """One precision everywhere: microseconds, as log records are stamped, and a Z."""
    assert format_time(0) == "1970-01-01T00:00:00.000000Z"
    assert format_time(NOW + 0.1234564) == "2027-01-15T08:00:00.123456Z"
    last = math.nextafter(MAX_TIME, 0)  # floats are ~30 µs apart there
    assert format_time(last) == "9999-12-31T23:59:59.999969Z"
    assert parse_time("until", "9999-12-31T23:59:59.999999Z", NOW) == last


def test_format_reaches_back_before_1970() -> None:
    """A window computed back from a parsed time (a day before until=0) still formats."""
    assert format_time(-86400) == "1969-12-31T00:00:00.000000Z"
    assert format_time(-62135596800) == "0001-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), -62135596801.0, MAX_TIME, 1e300])
def test_format_refuses_what_is_not_a_time(ts: float) -> None:
    """Outside the years 1–9999 (or not a number) is a ValueError, not a wrong string."""
    with pytest.raises(ValueError):
        format_time(ts)
