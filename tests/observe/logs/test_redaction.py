"""Redaction and bounding: secrets never reach a record, harmless text is left alone."""

from __future__ import annotations

import logging
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwatch.observe.logs.pipeline import add_secret, get_logger
from chatwatch.observe.logs.redaction import REDACTED, Sanitizer, is_sensitive_key
from tests.observe.logcapture import capture_logging

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJndWVzdC0xIiwicm9sZSI6InVzZXIifQ"
    ".4pcPyMD09olPSyXnrXCjTwXyr4BsezdI1AVTmud2fU4"
)
OPENAI_KEY = "sk-proj-Abc123Def456Ghi789Jkl012Mno345"


def clean(**fields: Any) -> dict[str, Any]:
    """Run one record through a fresh Sanitizer."""
    return dict(Sanitizer()(None, "info", dict(fields)))


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"ws upgrade /ws/chat?token={JWT}", JWT),
        (f"bad credentials {JWT} seen", JWT),
        (f"calling upstream with {OPENAI_KEY}", OPENAI_KEY),
        ("Authorization: Bearer abc.DEF-ghi_123~xyz", "abc.DEF-ghi_123~xyz"),
        ("headers: authorization=Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        ("retrying with bearer Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
        ("login failed password=hunter2&user=bob", "hunter2"),
        ('{"user": "bob", "password": "s3cr3t!"}', "s3cr3t!"),
        ("client_secret: 'XYZ-987-abc'", "XYZ-987-abc"),
        ("GET /v1/models?api_key=abcdef123456 HTTP/1.1", "abcdef123456"),
        ("Cookie: session=abc123; csrftoken=zzz999", "zzz999"),
        ("aws key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
            "MIIEowIBAAKCAQEA7",
        ),
        ("X-Api-Key: k-1234567890", "k-1234567890"),
    ],
)
def test_secret_shapes_in_text_are_redacted(text: str, secret: str) -> None:
    """Each secret shape in free text is replaced by [REDACTED]."""
    out = clean(detail=text)["detail"]
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "api_key",
        "apiKey",
        "Authorization",
        "x-api-key",
        "access_token",
        "jwt_secret",
        "admin_token",
        "cookie",
        "set-cookie",
        "headers.authorization",
        "client_secret",
    ],
)
def test_values_under_sensitive_keys_are_redacted(key: str) -> None:
    """A value under a secret-naming key is redacted whatever it looks like."""
    assert clean(**{key: "plain-value"})[key] == REDACTED


@pytest.mark.parametrize(
    "key", ["input_tokens", "output_tokens", "token_count", "cache_key", "event", "user_agent"]
)
def test_ordinary_keys_are_not_sensitive(key: str) -> None:
    """Keys that only resemble secret names are kept."""
    assert not is_sensitive_key(key)


def test_nested_headers_are_redacted_by_key() -> None:
    """Secrets in nested dicts and lists (headers) are redacted by key and by shape."""
    out = clean(
        headers={"Authorization": "Bearer xyz", "Accept": "json"},
        hops=[{"token": "abc"}, f"via {JWT}"],
    )
    assert out["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert out["hops"][0] == {"token": REDACTED}
    assert JWT not in out["hops"][1]


def test_harmless_text_is_untouched() -> None:
    """Event names, ids, counts and ordinary sentences pass through unchanged."""
    fields = {
        "event": "security.auth_failed",
        "correlation_id": "0aadd0ed5141890f9b3c2023af051819",
        "detail": "input_tokens=310 output_tokens=95 for the task-queue disk-usage report",
        "input_tokens": 310,
        "cost_usd": 0.0001,
        "cached": False,
        "model": "gpt-4o-mini",
    }
    assert clean(**fields) == fields


def test_registered_secret_is_redacted_anywhere() -> None:
    """A configured secret (admin token) is redacted even without a recognisable shape."""
    sanitizer = Sanitizer(secrets=["plainadmintoken42"])
    out = sanitizer(None, "info", {"detail": "x plainadmintoken42 y", "note": "plainadmintoken42"})
    assert out == {"detail": f"x {REDACTED} y", "note": REDACTED}


def test_add_secret_applies_to_the_running_pipeline() -> None:
    """add_secret redacts a value from records logged afterwards, including memoised ones."""
    with capture_logging() as cap:
        get_logger().info("before", note="opaque-value-77")
        add_secret("opaque-value-77")
        get_logger().info("after", note="opaque-value-77")
    before, after = cap.lines()
    assert before["note"] == "opaque-value-77"
    assert after["note"] == REDACTED


def test_secrets_never_reach_stdout_or_the_store() -> None:
    """Secrets planted in a message, a header and an exception appear in neither output."""
    with capture_logging(secrets=("configured-admin-token-123",)) as cap:
        get_logger().info("message.received", detail=f"please use {OPENAI_KEY}")
        get_logger().info("http.request", headers={"authorization": f"Bearer {JWT}"})
        try:
            raise ValueError(f"upstream refused key {OPENAI_KEY} and password=hunter2")
        except ValueError:
            get_logger().exception("error.unhandled")
        logging.getLogger("httpx").warning("auth header configured-admin-token-123 rejected")
    everything = cap.text + repr(cap.stored)
    for secret in (OPENAI_KEY, JWT, "hunter2", "configured-admin-token-123"):
        assert secret not in everything
    assert len(cap.stored) == 4


def test_long_values_are_truncated_with_a_note() -> None:
    """A string over the limit is cut and says how long it was."""
    out = Sanitizer(max_chars=300)(None, "info", {"detail": "y" * 5000})["detail"]
    assert out.startswith("y" * 300)
    assert out.endswith("[truncated, 5000 chars]")


def test_secret_inside_a_huge_string_is_redacted_before_truncation() -> None:
    """A secret near the start of a 1 MB string is redacted, not cut in half and kept."""
    out = clean(detail="z" * 4000 + " " + JWT + " " + "z" * 1_000_000)["detail"]
    assert "eyJhbGci" not in out


def test_control_characters_become_visible_escapes() -> None:
    """Newlines, ANSI escapes and bidi overrides are escaped; tabs too outside traces."""
    out = clean(detail="a\nb\x1b[2Jc\u202ed\te\x00")["detail"]
    assert out == "a\\nb\\x1b[2Jc\\u202ed\\te\\x00"


def test_stack_traces_keep_newlines_but_lose_escapes() -> None:
    """error.stack_trace keeps its line breaks (JSON escapes them) but not ANSI codes."""
    out = clean(**{"error.stack_trace": "line 1\nline 2 \x1b[31m"})
    assert out["error.stack_trace"] == "line 1\nline 2 \\x1b[31m"


def test_odd_values_become_bounded_strings() -> None:
    """Objects, bytes and huge ints become strings that JSON can hold."""

    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    out = clean(obj=Weird(), raw=b"\xff\xfebytes", big=2**80, deep=[[[[[["x"]]]]]])
    assert out["obj"] == "<unprintable Weird>"
    assert "bytes" in out["raw"]
    assert out["big"] == str(2**80)
    assert "[nested too deep]" in repr(out["deep"])


def test_large_containers_are_capped() -> None:
    """Lists and dicts longer than max_items are cut with a note."""
    out = Sanitizer(max_items=3)(
        None, "info", {"ids": list(range(10)), "m": dict.fromkeys("abcdef", 1)}
    )
    assert out["ids"] == [0, 1, 2, "[7 more items]"]
    assert len(out["m"]) == 4


_WORD = st.text(alphabet=string.ascii_letters + string.digits + " .,:/-", max_size=40)


@given(
    before=_WORD,
    after=_WORD,
    body=st.text(string.ascii_letters + string.digits, min_size=20, max_size=40),
)
def test_planted_keys_never_survive(before: str, after: str, body: str) -> None:
    """An sk- key or a JWT surrounded by arbitrary text is always redacted."""
    key = f"sk-{body}"
    jwt = f"eyJ{body}.eyJ{body}.{body}"
    out = Sanitizer()(
        None, "info", {"a": f"{before} {key} {after}", "b": f"{before} {jwt} {after}"}
    )
    assert key not in out["a"]
    assert jwt not in out["b"]
    assert f"eyJ{body}" not in out["b"]
