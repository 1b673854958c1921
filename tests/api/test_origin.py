"""Which browser origins may open /ws/chat (SPEC §2): the pure check and its settings."""

from __future__ import annotations

from typing import Any

import pytest

from chatwatch.api.origin import allowed_origins, origin_allowed, parse_origin
from chatwatch.config import ServerSettings, Settings


def server(**values: Any) -> ServerSettings:
    return ServerSettings(**values)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://Chat.Example.com", ("https", "chat.example.com", 443)),
        ("http://chat.example.com:8080", ("http", "chat.example.com", 8080)),
        ("http://[::1]:8000", ("http", "::1", 8000)),
        ("null", None),
        ("file://", None),
        ("ws://chat.example.com", None),
        ("https://", None),
        ("https://chat.example.com:99999", None),
        ("https://chat example.com", None),
        ("https://a.example;script-src", None),
        ("", None),
    ],
)
def test_parse_origin(origin: str, expected: tuple[str, str, int] | None) -> None:
    """Origins parse to (scheme, lower-case host, explicit port); anything else is None."""
    assert parse_origin(origin) == expected


PUBLIC = {
    "public_url": "https://chat.example.com",
    "allowed_origins": ["https://www.client.example"],
}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser: unaffected
        ("https://chat.example.com", True),
        ("https://CHAT.example.COM", True),  # host compared case-insensitively
        ("https://chat.example.com:443", True),  # the default port made explicit
        ("https://www.client.example", True),  # server.allowed_origins
        ("http://chat.example.com", False),  # another scheme
        ("https://chat.example.com:8443", False),  # another port
        ("https://evil.example", False),
        ("https://chat.example.com.evil.example", False),
        ("https://client.example", False),  # a parent domain is not the origin
        ("null", False),  # sandboxed frames and file:// pages
        ("", False),
        ("http://localhost:8000", False),  # loopback only counts for the default public_url
    ],
)
def test_origin_allowed(origin: str | None, allowed: bool) -> None:
    """Scheme, host and port must equal public_url's or an allowed origin's exactly."""
    assert origin_allowed(origin, server(**PUBLIC)) is allowed


def test_default_public_url_admits_the_loopback_names_of_its_port() -> None:
    """With the default public_url on 127.0.0.1:8000, localhost/127.0.0.1/[::1] at port
    8000 are this machine and allowed; other ports and hosts are not."""
    s = server(host="127.0.0.1", port=8000)
    checks = {
        o: origin_allowed(o, s)
        for o in (
            "http://127.0.0.1:8000",
            "http://localhost:8000",
            "http://[::1]:8000",
            "http://localhost:8001",
            "http://rebound.example:8000",
        )
    }
    assert list(checks.values()) == [True, True, True, False, False]


def test_public_url_with_a_path_allows_its_origin() -> None:
    """A public_url under a path (behind a proxy) still names the origin scheme://host:port."""
    s = server(public_url="https://example.com/chat/")
    assert allowed_origins(s) == frozenset({("https", "example.com", 443)})


def test_external_url_defaults_to_host_and_port() -> None:
    """public_url defaults to http://<host>:<port> (SPEC §2), brackets for IPv6."""
    assert (server(host="10.0.0.5", port=9000).external_url, server(host="::1").external_url) == (
        "http://10.0.0.5:9000",
        "http://[::1]:8000",
    )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"allowed_origins": ["*"]}, "'*' is not allowed"),
        ({"allowed_origins": ["https://a.example/path"]}, "is not an origin"),
        ({"allowed_origins": ["a.example"]}, "is not an origin"),
        ({"allowed_origins": ["https://a.example:99999"]}, "bad port"),
        ({"allowed_origins": ["https://a.example;x"]}, "bad host"),
        ({"public_url": "chat.example.com"}, "http:// or https://"),
        ({"public_url": "https://user:pw@chat.example.com"}, "user name"),
    ],
)
def test_bad_origin_settings_fail_naming_the_key(values: dict[str, Any], named: str) -> None:
    """'*', paths, missing schemes, bad ports and hosts are refused at start, naming the key."""
    with pytest.raises(ValueError) as info:
        Settings(server=values)  # type: ignore[arg-type]
    key = "server." + next(iter(values))
    text = str(info.value)
    assert (named in text, key.split(".")[1] in text) == (True, True)
