"""Making a log record safe to write: secrets redacted, size bounded, one line.

One structlog processor, ``Sanitizer``, walks a record once and, for every value:

- under a key that names a secret (``password``, ``api_key``, ``authorization``,
  ``*_token``…) replaces the value with ``[REDACTED]``;
- in any string, redacts what has the shape of a secret: JWTs, ``sk-…`` keys,
  ``Bearer …``/``Basic …`` credentials, ``password=…``-style pairs, ``Authorization:`` and
  ``Cookie:`` header lines, PEM private keys, AWS and Slack keys, and any exact value
  registered with ``add_secret`` (the admin token, the JWT secret, the AI API key);
  a string holding ``%XX`` escapes is also scrubbed percent-decoded, as the service reads
  a query string, so ``?%74oken=…`` or a percent-encoded admin token is redacted too;
- neutralises control characters (newlines, ANSI escapes, bidi overrides) into visible
  escapes, so that even a console renderer writes one record per line;
- truncates long strings and large containers, saying how much was cut;
- turns values JSON cannot hold (objects, bytes, huge ints) into bounded strings.

Work is linear in the input and bounded per record (issue 8): no pattern below can
backtrack more than a constant number of times per character (possessive quantifiers,
and a JWT start found once per run of token characters, not at each ``eyJ``); at most
``max_chars + 4096`` characters of one string and ``max_record_chars`` of one record are
scanned; what is past the record's budget is replaced, never written unscanned.

Speed: a regex pass over every string would cost the pipeline about 3× (issue 4), so each
pattern runs only on strings that contain one of its markers (``eyj``, ``bearer``,
``token``…), and the verdict for short strings is memoised: context values (ids, IP, user
agent) repeat on every record of a connection, so most strings cost one dict look-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any, NamedTuple
from urllib.parse import unquote

__all__ = ["REDACTED", "Sanitizer", "is_sensitive_key"]

REDACTED = "[REDACTED]"
OVER_BUDGET = "[omitted: record too large to scan]"


class _Rule(NamedTuple):
    """A secret shape: run ``pattern`` when the lower-cased text holds one of ``markers``."""

    markers: tuple[str, ...]
    pattern: re.Pattern[str]
    replacement: str


_KEYWORDS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|authorization|cookie|credentials?"
    r"|private[_-]?key|access[_-]?key|signature"
)
# Each pattern is linear: a quantifier is possessive (``*+``) wherever what follows it can
# never match what it gave back, so a failed match costs one scan, not one per split.
_RULES: tuple[_Rule, ...] = (
    # PEM blocks first: their base64 body would otherwise be left half-redacted. Each
    # BEGIN or END scans only the letters after it, and those runs never overlap.
    _Rule(
        ("private",),
        re.compile(
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|$)",
            re.S,
        ),
        REDACTED,
    ),
    # Whole header lines: a cookie or authorization value may contain spaces and '='.
    _Rule(
        ("authoriz", "cookie", "x-api-key"),
        re.compile(
            r"(?im)((?:proxy-)?authorization|set-cookie|cookie|x-api-key)(\s*+[:=]\s*+)"
            r"[^\r\n]*+"
        ),
        r"\1\2" + REDACTED,
    ),
    # A JWT may start anywhere in a run of token characters, but only the run's first
    # ``eyJ`` needs trying: a later one leaves fewer characters before the dot, so fails
    # too. Trying each ``eyJ`` made ``eyJeyJeyJ…`` quadratic.
    _Rule(
        ("eyj",),
        re.compile(
            r"(?<![A-Za-z0-9_-])((?:(?!eyJ)[A-Za-z0-9_-])*+)"
            r"eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+\.?[A-Za-z0-9_-]*+"
        ),
        r"\1" + REDACTED,
    ),
    _Rule(("bearer",), re.compile(r"(?i)\b(bearer)(\s++)[A-Za-z0-9._~+/=-]++"), r"\1\2" + REDACTED),
    _Rule(("basic",), re.compile(r"\b(Basic)(\s++)[A-Za-z0-9+/]{8,}+={0,2}"), r"\1\2" + REDACTED),
    _Rule(
        ("sk-", "sk_", "rk-", "rk_"),
        re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)[-_][A-Za-z0-9_-]{8,}+"),
        REDACTED,
    ),
    _Rule(("akia",), re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    _Rule(("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}+"), REDACTED),
    # ``name=value`` pairs whose name ends in a keyword. The name before the keyword is
    # not matched (it is kept as it is anyway): matching it lazily, as before issue 8,
    # retried every keyword position from every start: ``/`` + 8,000 dots took 5 s.
    _Rule(
        (
            "passw",
            "pwd",
            "secret",
            "token",
            "api_key",
            "apikey",
            "api-key",
            "authoriz",
            "cookie",
            "credential",
            "private",
            "access",
            "signature",
        ),
        re.compile(
            r"(?i)(" + _KEYWORDS + r")"
            r"([\"']?\s*+[:=]\s*+[\"']?)"
            r"(?!\[REDACTED\])[^\s\"'&,;)}\]]++"
        ),
        r"\1\2" + REDACTED,
    ),
)

# Any marker at all: one pass over a string that has none (most of them), instead of one
# ``in`` per marker. Literals without IGNORECASE let the engine skip to candidate letters.
_ANY_MARKER = re.compile("|".join(sorted({re.escape(m) for r in _RULES for m in r.markers})))

# The only non-ASCII characters that ``re.IGNORECASE`` matches to ASCII letters; folded
# before the marker test so that ``paſsword=`` is not waved through by it.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})

_SENSITIVE_KEY = re.compile(
    r"(?:^|[_.])(?:password|passwd|pwd|secret|token|api_?key|authorization|auth|cookie"
    r"|set_cookie|credentials?|private_?key|access_?key|jwt|signature|bearer)$"
)

# Control characters made visible: C0, DEL, C1, line/paragraph separators, bidi controls.
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_ESCAPES.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F))})
_ESCAPES.update({c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)})
_ESCAPES_KEEP_NEWLINES = {k: v for k, v in _ESCAPES.items() if k not in (0x0A, 0x09)}

_PLAIN, _SECRET, _TRACE, _SKIP = 0, 1, 2, 3
_MEMO_MAX_LEN = 256
_MEMO_MAX_ENTRIES = 20_000
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def is_sensitive_key(key: str) -> bool:
    """True when a field named ``key`` holds a secret by its name alone."""
    return _SENSITIVE_KEY.search(key.lower().replace("-", "_")) is not None


class Sanitizer:
    """structlog processor: redact secrets, bound sizes, neutralise control characters."""

    def __init__(
        self,
        *,
        max_chars: int = 4096,
        max_trace_chars: int = 16384,
        max_items: int = 64,
        max_depth: int = 4,
        max_record_chars: int = 65536,
        trace_keys: Iterable[str] = ("error.stack_trace",),
        skip_keys: Iterable[str] = ("timestamp", "level"),
        secrets: Iterable[str] = (),
    ) -> None:
        if max_chars < _MEMO_MAX_LEN:
            raise ValueError(f"max_chars must be at least {_MEMO_MAX_LEN}")
        self.max_chars = max_chars
        self.max_trace_chars = max_trace_chars
        self.max_items = max_items
        self.max_depth = max_depth
        self.max_record_chars = max_record_chars
        self._trace_keys = frozenset(trace_keys)
        self._skip_keys = frozenset(skip_keys)
        self._secrets: tuple[str, ...] = ()
        self._memo: dict[str, str] = {}
        self._key_kinds: dict[str, int] = {}
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, value: str | None) -> None:
        """Redact this exact value wherever it appears (ignored when shorter than 6 chars)."""
        if value and len(value) >= 6 and value not in self._secrets:
            # Longest first, so a secret containing another is replaced whole.
            self._secrets = tuple(sorted((*self._secrets, value), key=len, reverse=True))
            self._memo.clear()

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Sanitise every field of ``event_dict`` in place."""
        # Hot path: locals and one memo look-up per key and per short string. The record's
        # scanning budget is only made when a long string or a container needs it.
        kinds = self._key_kinds
        memo = self._memo
        budget: list[int] | None = None
        for key, value in event_dict.items():
            kind = kinds.get(key)
            if kind is None:
                kind = self._classify(key)
            if kind == _PLAIN:
                cls = type(value)
                if cls is str:
                    if len(value) <= _MEMO_MAX_LEN:
                        clean = memo.get(value)
                        if clean is None:
                            clean = self._short_text(value)
                    else:
                        if budget is None:
                            budget = [self.max_record_chars]
                        clean = self._text(value, self.max_chars, budget)
                elif value is None or cls is bool or cls is float:
                    continue
                elif cls is int:
                    if _INT_MIN <= value <= _INT_MAX:
                        continue
                    clean = str(value)[: self.max_chars]
                else:
                    if budget is None:
                        budget = [self.max_record_chars]
                    clean = self._nested(value, 1, budget)
                if clean is not value:
                    event_dict[key] = clean
            elif kind == _SECRET:
                if value is not None:
                    event_dict[key] = REDACTED
            elif kind == _TRACE:
                if budget is None:
                    budget = [self.max_record_chars]
                event_dict[key] = (
                    self._text(value, self.max_trace_chars, budget, keep_newlines=True)
                    if isinstance(value, str)
                    else self._nested(value, 1, budget)
                )
        return event_dict

    def scrub(self, text: str) -> str:
        """``text`` with every secret-shaped part replaced by ``[REDACTED]``.

        A string with ``%XX`` escapes is scrubbed again percent-decoded (once, as Starlette
        decodes a query string); when that finds a secret the decoded, redacted text is
        returned, since the encoded one would still hold it.
        """
        text = self._scrub_once(text)
        if "%" in text:
            decoded = unquote(text, errors="replace")
            if decoded != text:
                clean = self._scrub_once(decoded)
                if clean != decoded:
                    return clean
        return text

    # --- strings -------------------------------------------------------------------------

    def _scrub_once(self, text: str) -> str:
        low = text.lower() if text.isascii() else text.translate(_FOLD).lower()
        if _ANY_MARKER.search(low) is not None:
            for markers, pattern, replacement in _RULES:
                for marker in markers:
                    if marker in low:
                        text = pattern.sub(replacement, text)
                        break
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _classify(self, key: str) -> int:
        if key in self._skip_keys:
            kind = _SKIP
        elif is_sensitive_key(key):
            kind = _SECRET
        elif key in self._trace_keys:
            kind = _TRACE
        else:
            kind = _PLAIN
        if len(self._key_kinds) < 4096:
            self._key_kinds[key] = kind
        return kind

    def _sensitive(self, key: str) -> bool:
        kind = self._key_kinds.get(key)
        return (kind if kind is not None else self._classify(key)) == _SECRET

    def _short_text(self, text: str) -> str:
        clean = self._memo.get(text)
        if clean is None:
            clean = self._text(text, self.max_chars, [_MEMO_MAX_LEN])
            if len(self._memo) >= _MEMO_MAX_ENTRIES:
                self._memo.clear()
            self._memo[text] = clean
        return clean

    def _text(
        self, text: str, limit: int, budget: list[int], *, keep_newlines: bool = False
    ) -> str:
        original = len(text)
        if original > limit + 4096:
            # Bound the regex work; a secret straddling this cut is beyond the kept part.
            text = text[: limit + 4096]
        if len(text) > budget[0]:
            # Never written unscanned: what the record's budget cannot cover is left out.
            return OVER_BUDGET
        budget[0] -= len(text)
        text = self.scrub(text)
        if not text.isprintable():
            text = text.translate(_ESCAPES_KEEP_NEWLINES if keep_newlines else _ESCAPES)
        if len(text) > limit:
            text = f"{text[:limit]}…[truncated, {original} chars]"
        return text

    # --- containers and odd types --------------------------------------------------------

    def _nested(self, value: Any, depth: int, budget: list[int]) -> Any:
        cls = type(value)
        if cls is str:
            if len(value) <= _MEMO_MAX_LEN:
                # Memoised, but a container can repeat one string many times: still paid.
                budget[0] -= len(value) + 1
                return self._short_text(value) if budget[0] >= 0 else OVER_BUDGET
            return self._text(value, self.max_chars, budget)
        if value is None or cls is bool or cls is float:
            return value
        if cls is int:
            return value if _INT_MIN <= value <= _INT_MAX else str(value)[: self.max_chars]
        if depth > self.max_depth:
            return "[nested too deep]"
        if budget[0] <= 0:
            return OVER_BUDGET
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= self.max_items:
                    out["…"] = f"[{len(value) - i} more items]"
                    break
                budget[0] -= 1
                key = k if isinstance(k, str) else str(k)[:_MEMO_MAX_LEN]
                name = (
                    self._short_text(key)
                    if len(key) <= _MEMO_MAX_LEN
                    else self._text(key, 128, budget)
                )[:128]
                out[name] = (
                    REDACTED
                    if self._sensitive(name) and v is not None
                    else (self._nested(v, depth + 1, budget))
                )
            return out
        if isinstance(value, list | tuple | set | frozenset):
            items = []
            for i, v in enumerate(value):
                if i >= self.max_items:
                    items.append(f"[{len(value) - self.max_items} more items]")
                    break
                budget[0] -= 1
                items.append(self._nested(v, depth + 1, budget))
            return items
        if isinstance(value, bytes | bytearray | memoryview):
            text = bytes(value[: self.max_chars + 4096]).decode("utf-8", "replace")
            return self._text(text, self.max_chars, budget)
        try:
            text = str(value)
        except Exception:  # a broken __str__ must not lose the record
            text = f"<unprintable {type(value).__name__}>"
        return self._text(text, self.max_chars, budget)
