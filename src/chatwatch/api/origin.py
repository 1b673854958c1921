"""Which browser origins may open ``/ws/chat`` (SPEC §2): a check against cross-site use.

A browser always sends ``Origin`` on a WebSocket handshake, and a page cannot forge it; so
a page on another site cannot open chats in its visitors' names (cross-site WebSocket
hijacking) when the origin is checked. Programs that send no ``Origin`` are not browsers
and are let through: the check would not stop them anyway.

Allowed: ``server.public_url``'s origin and each of ``server.allowed_origins``; origins are
compared as (scheme, host, port), the host case-insensitively and the port made explicit
(``https://a.example`` is ``https://a.example:443``). While ``public_url`` is the default
and the server listens on a loopback or any-address, ``localhost``, ``127.0.0.1`` and
``[::1]`` at the same port count as the public URL too: they name this very machine, and
``make serve`` users open ``http://localhost:8000``. Any other host name that happens to
resolve to this machine (DNS rebinding) is still refused.

A refusal is ``chat.sessions.OriginRefused`` (403 ``origin_refused``, security event
``origin_refused``), raised at the top of the handshake in ``api/chat_ws.py``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from chatwatch.config import ServerSettings

__all__ = [
    "Origin",
    "allowed_origins",
    "format_origin",
    "origin_allowed",
    "parse_origin",
]

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_LOCAL_BINDS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""})
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_:")


def parse_origin(text: str) -> Origin | None:
    """``(scheme, host, port)`` of an http(s) origin or URL; None when it is not one."""
    if len(text) > 2048:
        return None
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if not set(host) <= _HOST_CHARS:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def format_origin(origin: Origin, scheme: str | None = None) -> str:
    """``scheme://host:port`` (brackets around an IPv6 host); ``scheme`` replaces its own."""
    own, host, port = origin
    return f"{scheme or own}://{f'[{host}]' if ':' in host else host}:{port}"


def allowed_origins(server: ServerSettings) -> frozenset[Origin]:
    """Every origin that may open the chat under these settings."""
    found = {o for o in map(parse_origin, [server.external_url, *server.allowed_origins]) if o}
    if server.public_url is None and server.host.lower() in _LOCAL_BINDS:
        found.update(("http", name, server.port) for name in _LOOPBACK_NAMES)
    return frozenset(found)


def origin_allowed(origin: str | None, server: ServerSettings) -> bool:
    """True when a handshake with this ``Origin`` header (None: absent) may proceed."""
    if origin is None:
        return True
    parsed = parse_origin(origin)  # "null" (sandboxed frames, file://) parses to None
    return parsed is not None and parsed in allowed_origins(server)
