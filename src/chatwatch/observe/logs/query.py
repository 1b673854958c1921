"""The log search language: query parameters and the full-text ``q``, checked before SQL.

``q`` is parsed here, never handed raw to FTS5 or ``to_tsquery``, so any text is either
a valid query or a ``LogQueryError`` naming the problem (an HTTP 400), never a database
error. Grammar (operators upper case, like FTS5)::

    query   := or ( "OR" or )*          # OR binds loosest
    or      := unary ( ["AND"] unary )* # juxtaposition is AND
    unary   := ("NOT" | "-") primary | primary
    primary := "(" query ")" | '"' phrase '"' | word | word "*"   # word* is a prefix

Words and phrases match the tokens of an event name or message case-insensitively;
punctuation separates tokens, so ``ai.request`` finds ``ai.request.completed``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatwatch.observe.logs.pipeline import LEVELS
from chatwatch.params import MAX_INT64, parse_int
from chatwatch.timefmt import parse_time

__all__ = [
    "MAX_LIMIT",
    "And",
    "LogFilters",
    "LogQueryError",
    "Or",
    "Term",
    "decode_cursor",
    "encode_cursor",
    "parse_filters",
    "parse_text_query",
    "time_param",
    "to_fts5",
    "to_tsquery",
]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_QUERY_CHARS = 256
MAX_TERMS = 16
MAX_DEPTH = 8
_EVENT = re.compile(r"[A-Za-z0-9_:-]+(?:\.[A-Za-z0-9_:-]+)*")
_ID_CHARS = re.compile(r"[\x21-\x7e]{1,128}")
_NON_WORD = re.compile(r"[\W_]+")
SEARCH_PARAMS = frozenset(
    {
        "q",
        "level",
        "component",
        "event",
        "user_id",
        "session_id",
        "correlation_id",
        "since",
        "until",
        "limit",
        "cursor",
    }
)


class LogQueryError(ValueError):
    """A malformed log query; the message says what is wrong (the API answers 400)."""


# --- full text -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word or quoted phrase; ``prefix`` matches any token starting with its last word."""

    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class And:
    """All of ``include`` and none of ``exclude`` (``include`` is never empty)."""

    include: tuple[Node, ...]
    exclude: tuple[Node, ...] = ()


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ``items``."""

    items: tuple[Node, ...]


Node = Term | And | Or

_OPERATORS = {"AND", "OR", "NOT"}


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split into (kind, value): kinds are ( ) - OP WORD PHRASE."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append((c, c))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise LogQueryError("q: a quoted phrase is not closed (missing '\"')")
            out.append(("PHRASE", text[i + 1 : end]))
            i = end + 1
            if i < n and text[i] == "*":
                out.append(("STAR", "*"))
                i += 1
        elif c == "-" and i + 1 < n and not text[i + 1].isspace():
            out.append(("-", "-"))
            i += 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            word = text[i:j]
            i = j
            if word in _OPERATORS:
                out.append(("OP", word))
            elif word.endswith("*"):
                stem = word.rstrip("*")
                if not stem:
                    raise LogQueryError("q: '*' must follow a word (as in 'auth*')")
                out.append(("WORD", stem))
                out.append(("STAR", "*"))
            else:
                out.append(("WORD", word))
        if len(out) > MAX_TERMS * 4:
            raise LogQueryError(f"q: too many terms (at most {MAX_TERMS})")
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.terms = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def query(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise LogQueryError(f"q: parentheses nested deeper than {MAX_DEPTH}")
        items = [self.conjunction(depth)]
        while self.peek() == ("OP", "OR"):
            self.take()
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self, depth: int) -> Node:
        include: list[Node] = []
        exclude: list[Node] = []
        expect_term = True
        while True:
            token = self.peek()
            if token is None or token == ("OP", "OR") or token[0] == ")":
                break
            if token == ("OP", "AND"):
                if expect_term:
                    raise LogQueryError("q: 'AND' needs a term on each side")
                self.take()
                expect_term = True
                continue
            negated = token in (("OP", "NOT"), ("-", "-"))
            if negated:
                self.take()
            node = self.primary(depth)
            (exclude if negated else include).append(node)
            expect_term = False
        if expect_term:
            following = self.peek()
            where = "at the end" if following is None else f"before {following[1]!r}"
            raise LogQueryError(f"q: a term is missing {where}")
        if not include:
            raise LogQueryError("q: a query needs at least one term that is not negated")
        if len(include) == 1 and not exclude:
            return include[0]
        return And(tuple(include), tuple(exclude))

    def primary(self, depth: int) -> Node:
        token = self.peek()
        if token is None:
            raise LogQueryError("q: a term is missing at the end")
        kind, value = self.take()
        if kind == "(":
            following = self.peek()
            if following is not None and following[0] == ")":
                raise LogQueryError("q: empty parentheses")
            node = self.query(depth + 1)
            if self.peek() is None or self.take()[0] != ")":
                raise LogQueryError("q: a '(' is not closed")
            return node
        if kind in ("WORD", "PHRASE"):
            prefix = self.peek() == ("STAR", "*")
            if prefix:
                self.take()
            if not any(ch.isalnum() for ch in value):
                raise LogQueryError(f"q: {value!r} has no letters or digits to search for")
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise LogQueryError(f"q: too many terms (at most {MAX_TERMS})")
            return Term(value, prefix)
        if kind == ")":
            raise LogQueryError("q: a ')' has no matching '('")
        if kind == "STAR":
            raise LogQueryError("q: '*' must follow a word (as in 'auth*')")
        raise LogQueryError(f"q: {value!r} needs a term after it")


def parse_text_query(text: str) -> Node:
    """Parse ``q``; raises LogQueryError with the reason when it is malformed."""
    if len(text) > MAX_QUERY_CHARS:
        raise LogQueryError(f"q: longer than {MAX_QUERY_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise LogQueryError("q: control characters (such as NUL) are not allowed")
    parser = _Parser(_tokens(text))
    if not parser.tokens:
        raise LogQueryError("q: empty query")
    node = parser.query(0)
    if parser.peek() is not None:
        raise LogQueryError("q: a ')' has no matching '('")
    return node


def to_fts5(node: Node) -> str:
    """The node as an FTS5 expression; every term is a quoted string, so none is syntax."""
    if isinstance(node, Term):
        quoted = '"' + node.text.replace('"', '""') + '"'
        return quoted + " *" if node.prefix else quoted
    if isinstance(node, Or):
        return "(" + " OR ".join(to_fts5(n) for n in node.items) + ")"
    text = "(" + " AND ".join(to_fts5(n) for n in node.include) + ")"
    for n in node.exclude:
        text = f"({text} NOT {to_fts5(n)})"
    return text


def to_tsquery(node: Node, params: dict[str, Any]) -> str:
    """The node as a PostgreSQL tsquery expression; term texts go into ``params``."""
    if isinstance(node, Term):
        words = _NON_WORD.sub(" ", node.text).split()
        lexemes = [f"'{w}'" for w in words]
        if node.prefix:
            lexemes[-1] += ":*"
        name = f"tsq{len(params)}"
        params[name] = " <-> ".join(lexemes)
        return f"to_tsquery('simple', :{name})"
    if isinstance(node, Or):
        return "(" + " || ".join(to_tsquery(n, params) for n in node.items) + ")"
    parts = [to_tsquery(n, params) for n in node.include]
    parts += ["!!" + to_tsquery(n, params) for n in node.exclude]
    return "(" + " && ".join(parts) + ")"


# --- parameters ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogFilters:
    """Every search filter; all given ones must hold (they combine with AND)."""

    text: Node | None = None
    levels: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    event: str | None = None
    event_family: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    correlation_id: str | None = None
    since: float | None = None
    until: float | None = None
    raw: dict[str, str] = field(default_factory=dict, compare=False)


def time_param(name: str, value: str, now: float) -> float:
    """A ``since``/``until`` value in the admin API's one grammar (``chatwatch.timefmt``)."""
    try:
        return parse_time(name, value, now)
    except ValueError as err:
        raise LogQueryError(str(err)) from None


def _names(name: str, value: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    items = tuple(v.strip().lower() if allowed else v.strip() for v in value.split(","))
    for item in items:
        if allowed is not None and item not in allowed:
            raise LogQueryError(f"{name}: {item[:32]!r} is not one of {', '.join(allowed)}")
        if allowed is None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", item):
            raise LogQueryError(f"{name}: {item[:32]!r} is not a component name")
    return items


def _identifier(name: str, value: str) -> str:
    if not _ID_CHARS.fullmatch(value):
        raise LogQueryError(f"{name}: must be 1-128 printable characters without spaces")
    return value


def encode_cursor(record_id: int) -> str:
    """An opaque cursor for the records older than ``record_id``."""
    return base64.urlsafe_b64encode(f"v1:{record_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The record id inside a cursor; LogQueryError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, number = raw.partition(":")
        if version == "v1":
            # The id goes into SQL as a BIGINT: 19 digits past 2**63 - 1 would overflow it.
            return parse_int("cursor", number, 0, MAX_INT64)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise LogQueryError("cursor: not a cursor returned by this endpoint")


def parse_filters(params: Mapping[str, str], now: float) -> tuple[LogFilters, int | None, int]:
    """Query parameters → (filters, cursor id, limit). Empty values count as absent."""
    unknown = sorted(set(params) - SEARCH_PARAMS)
    if unknown:
        raise LogQueryError(
            f"unknown parameter(s): {', '.join(u[:32] for u in unknown)}; "
            f"expected {', '.join(sorted(SEARCH_PARAMS))}"
        )
    p = {k: v for k, v in params.items() if v != ""}
    for key, value in p.items():
        if "\x00" in value:
            raise LogQueryError(f"{key}: NUL characters are not allowed")
    kwargs: dict[str, Any] = {"raw": dict(p)}
    if "q" in p:
        kwargs["text"] = parse_text_query(p["q"])
    if "level" in p:
        kwargs["levels"] = _names("level", p["level"], LEVELS)
    if "component" in p:
        kwargs["components"] = _names("component", p["component"])
    if "event" in p:
        event = p["event"]
        family = event[:-2] if event.endswith(".*") else None
        if not _EVENT.fullmatch(family or event) or len(event) > 128:
            raise LogQueryError(
                "event: expected an event name (security.auth_failed) or a family (security.*)"
            )
        kwargs["event_family" if family else "event"] = family or event
    for key in ("user_id", "session_id", "correlation_id"):
        if key in p:
            kwargs[key] = _identifier(key, p[key])
    since = time_param("since", p["since"], now) if "since" in p else None
    until = time_param("until", p["until"], now) if "until" in p else None
    if since is not None and until is not None and since >= until:
        raise LogQueryError("since: must be before until")
    kwargs.update(since=since, until=until)
    limit = DEFAULT_LIMIT
    if "limit" in p:
        try:
            limit = parse_int("limit", p["limit"], 1, MAX_LIMIT)
        except ValueError as err:
            raise LogQueryError(str(err)) from None
    cursor = decode_cursor(p["cursor"]) if "cursor" in p else None
    return LogFilters(**kwargs), cursor, limit
