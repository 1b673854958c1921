"""Client frame parsing: every frame-level bad input gets its SPEC §4 error code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatwatch.chat.protocol import (
    QUICK_ACTIONS,
    ClientMessage,
    Ping,
    ProtocolError,
    QuickAction,
    encode,
    error_frame,
    parse_frame,
)

LIMIT = 100  # max_message_bytes used throughout


def frame(**fields: Any) -> str:
    return json.dumps(fields, ensure_ascii=False)


def message(**fields: Any) -> str:
    return frame(**{"type": "message", "id": "m1", "content": "hello", **fields})


def rejected(raw: str | bytes, limit: int = LIMIT) -> tuple[str, str | None]:
    """(code, reply_to) of the ProtocolError parse_frame raises for ``raw``."""
    with pytest.raises(ProtocolError) as info:
        parse_frame(raw, limit)
    return info.value.code, info.value.reply_to


# --- accepted frames --------------------------------------------------------------------


def test_message_is_parsed() -> None:
    """A valid message frame becomes a ClientMessage with id, content and correlation id."""
    raw = message(content="What do you charge?", correlation_id="abc-1.2_3")
    expected = ClientMessage(id="m1", content="What do you charge?", correlation_id="abc-1.2_3")
    assert expected == parse_frame(raw, LIMIT)


def test_message_without_correlation_id_is_parsed() -> None:
    """correlation_id is optional: without it the message carries None."""
    assert ClientMessage(id="m1", content="hello", correlation_id=None) == parse_frame(
        message(), LIMIT
    )


def test_ping_is_parsed() -> None:
    """{"type": "ping"} is a Ping, with or without extra fields."""
    assert (Ping(), Ping()) == (
        parse_frame('{"type":"ping"}', LIMIT),
        parse_frame('{"type":"ping","id":"p"}', LIMIT),
    )


@pytest.mark.parametrize("action", QUICK_ACTIONS)
def test_every_quick_action_is_parsed(action: str) -> None:
    """Each known quick action becomes a QuickAction."""
    raw = frame(type="quick_action", id="q1", action=action)
    assert QuickAction(id="q1", action=action, correlation_id=None) == parse_frame(raw, LIMIT)


def test_spec_quick_actions_are_known() -> None:
    """The four actions SPEC §4 names are all accepted quick actions."""
    spec = {"pricing", "services", "book_consultation", "talk_to_human"}
    assert spec == spec & set(QUICK_ACTIONS)


def test_id_of_64_chars_is_accepted() -> None:
    """An id of exactly 64 characters is within the limit."""
    assert parse_frame(message(id="a" * 64), LIMIT).id == "a" * 64  # type: ignore[union-attr]


def test_content_of_exactly_the_limit_is_accepted() -> None:
    """Content of exactly max_message_bytes bytes is accepted."""
    content = "a" * LIMIT
    assert content == parse_frame(message(content=content), LIMIT).content  # type: ignore[union-attr]


def test_multibyte_content_under_the_byte_limit_is_accepted() -> None:
    """33 euro signs are 99 UTF-8 bytes: accepted under a 100-byte limit."""
    content = "€" * 33
    assert content == parse_frame(message(content=content), LIMIT).content  # type: ignore[union-attr]


def test_surrogate_pair_escape_is_accepted() -> None:
    """A valid escaped surrogate pair (\\ud83d\\ude00) decodes to one emoji."""
    raw = '{"type":"message","id":"m1","content":"hi \\ud83d\\ude00"}'
    assert parse_frame(raw, LIMIT).content == "hi \U0001f600"  # type: ignore[union-attr]


# --- not JSON / not an object -----------------------------------------------------------


@pytest.mark.parametrize("raw", ["{", '{"type":"message",', "", "hello", "{'type':'ping'}", "NaN"])
def test_malformed_json_is_invalid_json(raw: str) -> None:
    """Truncated, empty, bare-word, single-quoted and NaN frames are invalid_json."""
    assert rejected(raw) == ("invalid_json", None)


@pytest.mark.parametrize("raw", ["[1, 2]", "[]", "42", "-1.5", '"ping"', "null", "true"])
def test_json_that_is_not_an_object_is_invalid_frame(raw: str) -> None:
    """A JSON array, number, string, null or bool is invalid_frame."""
    assert rejected(raw) == ("invalid_frame", None)


def test_binary_frame_is_invalid_frame() -> None:
    """A binary frame, even holding valid JSON bytes, is invalid_frame."""
    assert rejected(b'{"type":"ping"}') == ("invalid_frame", None)


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    """100 000 nested arrays give a protocol error, not a RecursionError."""
    raw = "[" * 100_000 + "]" * 100_000
    code, _ = rejected(raw, limit=1_000_000)
    assert code in ("invalid_json", "invalid_frame")


# --- type -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["foo", "MESSAGE", "", 1, None])
def test_unknown_type_is_invalid_frame_with_reply_to(kind: Any) -> None:
    """An unknown, upper-case, empty, numeric or null type is invalid_frame, echoing the id."""
    assert rejected(frame(type=kind, id="m1")) == ("invalid_frame", "m1")


def test_missing_type_is_invalid_frame() -> None:
    """A frame with no type is invalid_frame."""
    assert rejected(frame(id="m1", content="hi")) == ("invalid_frame", "m1")


def test_long_unknown_type_is_not_echoed() -> None:
    """A 10 000-char type is refused without being copied into the error message."""
    with pytest.raises(ProtocolError) as info:
        parse_frame(frame(type="x" * 10_000, id="m1"), 100_000)
    assert (info.value.code, "x" * 100 in info.value.message) == ("invalid_frame", False)


# --- id ---------------------------------------------------------------------------------


def test_missing_id_is_invalid_frame() -> None:
    """A message without id is invalid_frame with no reply_to."""
    assert rejected(frame(type="message", content="hi")) == ("invalid_frame", None)


def test_empty_id_is_invalid_frame() -> None:
    """An empty id is invalid_frame with no reply_to."""
    assert rejected(message(id="")) == ("invalid_frame", None)


def test_65_char_id_is_invalid_frame() -> None:
    """A 65-char id is over the 64-char limit: invalid_frame, and not echoed as reply_to."""
    assert rejected(message(id="a" * 65)) == ("invalid_frame", None)


@pytest.mark.parametrize("bad_id", [5, 1.5, True, None, ["m1"], {"id": "m1"}])
def test_non_string_id_is_invalid_frame(bad_id: Any) -> None:
    """A numeric, boolean, null, list or object id is invalid_frame with no reply_to."""
    assert rejected(message(id=bad_id)) == ("invalid_frame", None)


def test_quick_action_without_id_is_invalid_frame() -> None:
    """A quick_action needs an id too."""
    assert rejected(frame(type="quick_action", action="pricing")) == ("invalid_frame", None)


# --- content ----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", " ", "\n\t  \r\n", "\u3000"])
def test_empty_or_blank_content_is_invalid_frame(content: str) -> None:
    """Empty and whitespace-only content (spaces, newlines, ideographic space) is invalid_frame."""
    assert rejected(message(content=content)) == ("invalid_frame", "m1")


@pytest.mark.parametrize("content", [None, 5, ["hi"], {"text": "hi"}, True])
def test_non_string_content_is_invalid_frame(content: Any) -> None:
    """Null, number, list, object or bool content is invalid_frame with reply_to."""
    assert rejected(message(content=content)) == ("invalid_frame", "m1")


def test_missing_content_is_invalid_frame() -> None:
    """A message without content is invalid_frame with reply_to."""
    assert rejected(frame(type="message", id="m1")) == ("invalid_frame", "m1")


def test_content_one_byte_over_is_too_large() -> None:
    """101 ASCII bytes under a 100-byte limit is message_too_large with reply_to."""
    assert rejected(message(content="a" * (LIMIT + 1))) == ("message_too_large", "m1")


def test_multibyte_content_is_measured_in_bytes() -> None:
    """34 euro signs are only 34 chars but 102 UTF-8 bytes: message_too_large."""
    assert rejected(message(content="€" * 34)) == ("message_too_large", "m1")


def test_escaped_multibyte_content_is_measured_after_decoding() -> None:
    """34 euro signs sent as \\u20ac escapes still count 102 bytes: message_too_large."""
    raw = json.dumps({"type": "message", "id": "m1", "content": "€" * 34}, ensure_ascii=True)
    assert rejected(raw) == ("message_too_large", "m1")


def test_huge_frame_is_too_large() -> None:
    """A frame far beyond the limit (1 MB of content) is message_too_large."""
    code, _ = rejected(message(content="a" * 1_000_000))
    assert code == "message_too_large"


def test_nul_in_content_is_invalid_frame() -> None:
    """Content with a NUL character (\\u0000) is invalid_frame with reply_to."""
    assert rejected('{"type":"message","id":"m1","content":"hi\\u0000there"}') == (
        "invalid_frame",
        "m1",
    )


def test_lone_surrogate_escape_is_refused_with_reply_to() -> None:
    """Content "\\ud800" (a lone surrogate escape, no valid UTF-8) is invalid_frame for id m1."""
    raw = '{"type":"message","id":"m1","content":"hi \\ud800"}'
    assert rejected(raw) == ("invalid_frame", "m1")


# --- correlation id ---------------------------------------------------------------------


@pytest.mark.parametrize("corr", ["", "a b", "a" * 65, "ü", "a/b", "<script>", 5, ["x"]])
def test_bad_correlation_id_is_replaced(corr: Any) -> None:
    """Empty, spaced, 65-char, non-ASCII, slash, markup, numeric or list ids are dropped, so the
    server assigns a new one (the X-Correlation-ID rule); the message itself is accepted."""
    parsed = parse_frame(message(correlation_id=corr), LIMIT)
    assert (type(parsed), parsed.correlation_id) == (ClientMessage, None)  # type: ignore[union-attr]


def test_null_correlation_id_means_none() -> None:
    """correlation_id: null is the same as no correlation id."""
    assert parse_frame(message(correlation_id=None), LIMIT).correlation_id is None  # type: ignore[union-attr]


def test_64_char_correlation_id_is_accepted() -> None:
    """A 64-char correlation id of the allowed alphabet is kept."""
    corr = "A1._-" * 12 + "abcd"
    assert corr == parse_frame(message(correlation_id=corr), LIMIT).correlation_id  # type: ignore[union-attr]


# --- quick actions ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["hack", "", "PRICING", None, 3, ["pricing"]])
def test_bad_quick_action_is_invalid_frame(action: Any) -> None:
    """Unknown, empty, upper-case, null, numeric or list actions are invalid_frame with reply_to."""
    assert rejected(frame(type="quick_action", id="q1", action=action)) == ("invalid_frame", "q1")


def test_quick_action_without_action_is_invalid_frame() -> None:
    """A quick_action frame lacking 'action' is invalid_frame with reply_to."""
    assert rejected(frame(type="quick_action", id="q1")) == ("invalid_frame", "q1")


# --- server frames ----------------------------------------------------------------------


def test_error_frame_with_reply_to() -> None:
    """error_frame builds the SPEC error frame, reply_to included when given."""
    expected = {
        "type": "error",
        "code": "invalid_frame",
        "message": "bad",
        "correlation_id": "c1",
        "reply_to": "m1",
    }
    assert expected == error_frame("invalid_frame", "bad", "c1", reply_to="m1")


def test_error_frame_without_reply_to_omits_it() -> None:
    """Without reply_to the error frame has no reply_to key at all."""
    assert "reply_to" not in error_frame("invalid_json", "bad", "c1")


def test_encode_is_compact_utf8_json() -> None:
    """encode() writes JSON that round-trips, non-ASCII kept as text."""
    frame_in = {"type": "ai_delta", "reply_to": "m1", "correlation_id": "c", "delta": "€ ok"}
    assert (frame_in, True) == (json.loads(encode(frame_in)), "€" in encode(frame_in))
