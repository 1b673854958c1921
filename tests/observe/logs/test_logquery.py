"""The log query language: parsing, compiling to FTS5 / tsquery, times and cursors."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwatch.observe.logs.query import (
    And,
    LogQueryError,
    Or,
    Term,
    decode_cursor,
    encode_cursor,
    parse_filters,
    parse_text_query,
    time_param,
    to_fts5,
    to_tsquery,
)

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    """An in-memory FTS5 table shaped like the log index, with two rows."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(event, message, correlation_id)")
    conn.execute("INSERT INTO f VALUES ('ai.request.failed', 'upstream timeout', 'c1')")
    conn.execute("INSERT INTO f VALUES ('message.sent', 'hello there', 'c2')")
    yield conn
    conn.close()


def test_grammar_builds_the_expected_tree() -> None:
    """Juxtaposition is AND, OR binds loosest, -x and NOT x exclude, word* is a prefix."""
    assert parse_text_query('a "b c" -d OR e*') == Or(
        (And((Term("a"), Term("b c")), (Term("d"),)), Term("e", prefix=True))
    )
    assert parse_text_query("(a OR b) AND NOT c") == And(
        (Or((Term("a"), Term("b"))),), (Term("c"),)
    )


def test_fts5_quotes_every_term() -> None:
    """Every term becomes a quoted FTS5 string, so FTS5 syntax in it is inert."""
    assert to_fts5(parse_text_query('NEAR col:umn "^s"')) == '("NEAR" AND "col:umn" AND "^s")'
    assert to_fts5(parse_text_query("a -b -c")) == '((("a") NOT "b") NOT "c")'
    assert to_fts5(parse_text_query("ai.req*")) == '"ai.req" *'


def test_tsquery_uses_parameters_only() -> None:
    """The tsquery SQL holds placeholders; the words travel as parameters."""
    params: dict[str, object] = {}
    sql = to_tsquery(parse_text_query("ai.request OR time* -x'y"), params)
    assert params == {"tsq0": "'ai' <-> 'request'", "tsq1": "'time':*", "tsq2": "'x' <-> 'y'"}
    assert sql == (
        "(to_tsquery('simple', :tsq0) || (to_tsquery('simple', :tsq1)"
        " && !!to_tsquery('simple', :tsq2)))"
    )


def test_fts5_matches_through_the_compiled_query(fts: sqlite3.Connection) -> None:
    """The compiled query finds rows by event tokens, phrases and prefixes."""

    def events(q: str) -> list[str]:
        sql = "SELECT event FROM f WHERE f MATCH ? ORDER BY rowid"
        match = "{event message} : " + to_fts5(parse_text_query(q))
        return [row[0] for row in fts.execute(sql, (match,))]

    assert events("ai.request") == ["ai.request.failed"]
    assert events('"upstream timeout"') == ["ai.request.failed"]
    assert events("hel* OR failed") == ["ai.request.failed", "message.sent"]
    assert events("c1") == []  # the correlation id column is not part of q


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_query_error(text: str) -> None:
    """Whatever the text, parsing gives a tree or a LogQueryError, nothing else."""
    with contextlib.suppress(LogQueryError):
        parse_text_query(text)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_every_parsed_query_is_valid_fts5(text: str) -> None:
    """Any query that parses compiles to FTS5 that SQLite accepts."""
    try:
        node = parse_text_query(text)
    except LogQueryError:
        return
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(event, message)")
    conn.execute("SELECT * FROM f WHERE f MATCH ?", ("{event message} : " + to_fts5(node),))
    conn.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1800000000", 1_800_000_000.0),
        ("1800000000.5", 1_800_000_000.5),
        ("2027-01-15T08:00:00Z", 1_800_000_000.0),
        ("2027-01-15T09:00:00+01:00", 1_800_000_000.0),
        ("2027-01-15T08:00:00", 1_800_000_000.0),
        ("15m", NOW - 900),
        ("1h30m", NOW - 5400),
        ("7d", NOW - 7 * 86400),
    ],
)
def test_times_in_every_accepted_form(text: str, expected: float) -> None:
    """Epoch seconds, RFC 3339 (UTC when no zone) and durations ago are accepted."""
    assert time_param("since", text, NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "-5", "1e30", "nan", "15x", "2027-13-01"])
def test_bad_times_are_query_errors(text: str) -> None:
    """Anything else is a LogQueryError naming the parameter."""
    with pytest.raises(LogQueryError, match="since"):
        time_param("since", text, NOW)


def test_cursor_round_trip_and_tampering() -> None:
    """A cursor decodes to its id; anything else is refused."""
    assert decode_cursor(encode_cursor(1_843_200_000_000_000_123)) == 1_843_200_000_000_000_123
    for bad in ("", "abc", encode_cursor(5)[:-2] + "!!", "djE6LTU"):  # "v1:-5"
        with pytest.raises(LogQueryError, match="cursor"):
            decode_cursor(bad)


def test_filters_from_parameters() -> None:
    """Parameters become filters; a family event and lists of levels are understood."""
    filters, cursor, limit = parse_filters(
        {"event": "security.*", "level": "Warning,ERROR", "since": "1h", "limit": "20"}, NOW
    )
    assert (filters.event, filters.event_family) == (None, "security")
    assert filters.levels == ("warning", "error")
    assert filters.since == NOW - 3600
    assert (cursor, limit) == (None, 20)
