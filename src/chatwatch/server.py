"""Running the app under uvicorn: HTTP limits, and a shutdown that drains chat sockets first.

HTTP parser (issue 8): uvicorn's httptools protocol has no header-size, header-count or
header-timeout setting, and its h11 protocol bounds only the size (and parses in pure
Python, several times slower). So the server keeps httptools — the same parser a bare
``uvicorn --http httptools`` runs, which is what a performance baseline must use — and
``GuardedHttpProtocol``, a thin subclass, adds the limits around it: bytes and lines of
headers (431), time to send them (408), keep-alive idleness, and connections per peer
address (429). Normal requests pay a few counters per read; WebSocket upgrades are handed
to uvicorn's WebSocket protocol exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Process

from chatwatch.api.incidents import report_incident
from chatwatch.config import ServerSettings, Settings, load_settings
from chatwatch.services import Services
from chatwatch.vocabulary import ErrorType, SecurityEventType

__all__ = [
    "ChatwatchConfig",
    "ChatwatchServer",
    "GuardedHttpProtocol",
    "HttpLimits",
    "create_app",
    "install_log_filters",
    "run_server",
    "uvicorn_config",
]


_DUPLICATES = frozenset({"connection open", "connection closed"})


class _DenialNoiseFilter(logging.Filter):
    """Drops uvicorn's false alarm after a handshake refused with an HTTP response.

    uvicorn's sans-I/O WebSocket protocol logs "returned without completing handshake"
    even when the app sent a ``websocket.http.response`` (a 401/403/429 denial); it sends
    nothing more in that case, so the record is noise that would page an operator.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # "connection open/closed" duplicate chatwatch's own connection.* records.
        return "without completing handshake" not in message and message not in _DUPLICATES


def install_log_filters() -> None:
    """Install chatwatch's filters on uvicorn's loggers (idempotent)."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoiseFilter) for f in log.filters):
        log.addFilter(_DenialNoiseFilter())


# The services of this worker process, set by ``create_app`` (uvicorn's factory mode builds
# the app inside the worker, where the supervisor's server object cannot be handed them).
_worker_services: list[Services] = []


class ChatwatchServer(uvicorn.Server):
    """uvicorn's server, but on SIGTERM the chat hub drains before sockets are torn down.

    uvicorn's own shutdown fails open WebSockets abruptly; draining first lets in-flight
    replies finish (or get an error frame) and closes every socket with 1001.
    """

    def __init__(self, config: uvicorn.Config, services: Services | None = None) -> None:
        super().__init__(config)
        self.services = services

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving; refusals at the HTTP layer become security events of the app."""
        services = self.services or (_worker_services[0] if _worker_services else None)
        if services is not None and isinstance(self.config, ChatwatchConfig):
            self.config.on_http_refused = _http_refusal_reporter(services)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain the chat, then let uvicorn finish."""
        for server in getattr(self, "servers", []):
            server.close()
        services = self.services or (_worker_services[0] if _worker_services else None)
        if services is not None:
            await services.hub.shutdown(services.settings.server.shutdown_grace, code=1001)
        await super().shutdown(sockets)


# --- HTTP limits -------------------------------------------------------------------------

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HttpLimits:
    """What ``GuardedHttpProtocol`` enforces; see ``ServerSettings`` for each field."""

    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    connections_per_ip: int = 200
    uncapped_peers: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, server: ServerSettings) -> HttpLimits:
        """The limits a server's settings ask for."""
        return cls(
            max_header_bytes=server.max_header_bytes,
            max_headers=server.max_headers,
            header_timeout=server.header_timeout,
            keepalive_timeout=server.keepalive_timeout,
            connections_per_ip=server.http_connections_per_ip,
            uncapped_peers=tuple(server.forwarded_allow_ips),
        )

    def capped(self, peer: str) -> bool:
        """Whether connections from ``peer`` count against ``connections_per_ip``.

        A trusted proxy carries many clients on its connections; the app's own per-IP
        limits see their forwarded addresses instead.
        """
        if not self.connections_per_ip:
            return False
        everyone, literal, networks = self._uncapped
        if everyone or peer in literal:
            return False
        if networks:
            try:
                address = ipaddress.ip_address(peer)
            except ValueError:
                return True
            return not any(address in network for network in networks)
        return True

    @functools.cached_property
    def _uncapped(self) -> tuple[bool, frozenset[str], tuple[_Network, ...]]:
        networks: list[_Network] = []
        for entry in self.uncapped_peers:
            # A host name or a unix socket path is compared literally.
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.ip_network(entry, strict=False))
        return "*" in self.uncapped_peers, frozenset(self.uncapped_peers), tuple(networks)


class PeerCounts:
    """Open HTTP connections per peer address (one event loop: no locking needed)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, peer: str, cap: int) -> bool:
        """Count one more connection from ``peer``, unless it has ``cap`` already."""
        n = self._open.get(peer, 0)
        if n >= cap:
            return False
        self._open[peer] = n + 1
        return True

    def release(self, peer: str) -> None:
        """One connection from ``peer`` is gone."""
        n = self._open.get(peer, 0) - 1
        if n > 0:
            self._open[peer] = n
        else:
            self._open.pop(peer, None)


class ChatwatchConfig(uvicorn.Config):
    """uvicorn's config, serving HTTP with ``GuardedHttpProtocol`` under ``limits``.

    The limits and the per-peer counts ride on the config because uvicorn builds each
    protocol from it (and pickles it to worker processes, each then counting its own).
    """

    def __init__(self, app: Any, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpProtocol, **kwargs)
        self.http_limits = limits
        self.http_peers = PeerCounts()
        # Set in the serving process (a callback cannot travel to worker processes).
        self.on_http_refused: Callable[[int, str, str], None] | None = None


def _http_refusal_reporter(services: Services) -> Callable[[int, str, str], None]:
    """Report one HTTP-layer refusal as a security event and an error (counted, logged)."""

    def report(status: int, reason: str, client_ip: str) -> None:
        report_incident(
            services.bus,
            kind=SecurityEventType.HTTP_LIMIT,
            error_type=ErrorType.RATE_LIMIT if status == 429 else ErrorType.VALIDATION,
            code=f"http_{status}",
            client_ip=client_ip,
            user_agent="",
            user_id=None,
            detail=f"{status} {reason}",
        )

    return report


class _LimitExceeded(Exception):
    """Raised inside a parser callback to stop parsing; the status is on the protocol."""


def _response(status: int, reason: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = reason.encode("ascii")
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode("ascii")]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on headers, their time, and peers.

    Header size is checked twice: from the raw bytes of each read that starts while a
    request's head is awaited and ends with it still incomplete (one header that never
    ends grows inside the parser, unseen by any callback), and exactly once the head is
    complete — summed only when the reads it came in could exceed the limit, so that a
    normal request pays no per-header Python call. A read in which one request ends and
    the next begins is not counted raw: a pipelined request never counts against the next.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = getattr(config, "http_limits", None) or HttpLimits()
        self.peers: PeerCounts = getattr(config, "http_peers", None) or PeerCounts()
        # uvicorn's keep-alive timer (armed after each response) with the exact setting.
        self.timeout_keep_alive = self.limits.keepalive_timeout  # type: ignore[assignment]
        self._peer: str | None = None  # counted in self.peers while set
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request's line and headers
        self._head_begun = False  # ...and some of them have come
        self._ended_in_read = False  # a request ended during the current read
        self._read_size = 0
        self._seen_bytes = False
        self._raw_bytes = 0
        self._refusal: tuple[int, str] | None = None
        self._refused = False

    # --- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the peer (refusing it over the cap) and start the header clock."""
        super().connection_made(transport)
        peer = self.client[0] if self.client else None
        if peer is not None and self.limits.capped(peer):
            if not self.peers.acquire(peer, self.limits.connections_per_ip):
                self._refuse(429, "Too many connections from this address.")
                return
            self._peer = peer
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection: timer and peer count."""
        self._cancel_header_timer()
        self._release_peer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """Hand over to the WebSocket protocol; the app's own per-IP limits take over."""
        self._cancel_header_timer()
        self._release_peer()
        super().handle_websocket_upgrade()

    # --- reading -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the parser (as uvicorn does) and enforce the header limits around it."""
        if self._refused:
            return
        self._unset_keepalive_if_required()
        self._seen_bytes = True
        was_in_head = self._in_head
        self._ended_in_read = False
        self._read_size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._in_head:
            if self._head_begun and self._header_timer is None:
                self._arm_header_timer()  # the first bytes of a request on a kept-alive socket
            if was_in_head and not self._ended_in_read:
                self._raw_bytes += len(data)
                if self._raw_bytes > self.limits.max_header_bytes:
                    self._refuse(431, "Request header fields too large.")

    def on_message_begin(self) -> None:
        """A request starts: its header counts start from zero."""
        self._in_head = self._head_begun = True
        self._raw_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """Headers are in: stop the header clock, check them, let uvicorn start the request."""
        self._in_head = self._head_begun = False
        if self._header_timer is not None:
            self._cancel_header_timer()
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            self._refusal = (431, "Too many request header fields.")
            raise _LimitExceeded  # httptools re-raises it from feed_data as a parser error
        if self._raw_bytes + self._read_size > limits.max_header_bytes:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_header_bytes:
                self._refusal = (431, "Request header fields too large.")
                raise _LimitExceeded
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request is read; what comes next is the head of another one."""
        self._in_head = True
        self._ended_in_read = True
        super().on_message_complete()

    # --- refusing ------------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` with a one-line reason and close; nothing more is read.

        While an earlier (pipelined) request's response is being sent, the connection is
        only closed: a status line in the middle of that response would corrupt it.
        """
        self._refused = True
        self._cancel_header_timer()
        report = getattr(self.config, "on_http_refused", None)
        if report is not None and self.client:
            with contextlib.suppress(Exception):  # reporting never keeps a socket open
                report(status, reason, self.client[0])
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_response(status, reason, self.server_state.default_headers))
        self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self._seen_bytes:
            self._refuse(408, "Request headers were not received in time.")
        else:
            self._refused = True  # a socket that never spoke gets no answer
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _release_peer(self) -> None:
        if self._peer is not None:
            self.peers.release(self._peer)
            self._peer = None


# --- running -----------------------------------------------------------------------------


def create_app() -> ASGIApp:
    """App factory for worker processes: settings from CHATWATCH_CONFIG and the environment."""
    from chatwatch.app import build_app

    install_log_filters()
    built = build_app(load_settings())
    _worker_services[:] = [built.services]
    return built.asgi


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> ChatwatchConfig:
    """The uvicorn config chatwatch serves ``app`` with (``overrides`` for tests)."""
    kwargs = _uvicorn_kwargs(settings)
    kwargs.update(overrides)
    return ChatwatchConfig(app, limits=HttpLimits.from_settings(settings.server), **kwargs)


def _uvicorn_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.server.host,
        "port": settings.server.port,
        "ws_max_size": settings.limits.frame_limit,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.server.shutdown_grace) + 5,
        "lifespan": "on",
        # X-Forwarded-For is believed only from configured proxies: by default from no one,
        # or any local process could dodge the per-IP limit and forge security events.
        "proxy_headers": bool(settings.server.forwarded_allow_ips),
        "forwarded_allow_ips": ",".join(settings.server.forwarded_allow_ips) or None,
    }


def run_server(settings: Settings, overrides: dict[str, Any] | None = None) -> int:
    """Serve until stopped; returns the process exit code."""
    install_log_filters()
    workers = settings.server.workers
    if workers <= 1:
        from chatwatch.app import build_app

        built = build_app(settings)
        server = ChatwatchServer(uvicorn_config(built.asgi, settings), built.services)
        server.run()
        return 0 if server.started else 1
    # Several workers: each process builds its own app from the same environment.
    for key, value in (overrides or {}).items():
        if value is not None:
            os.environ[f"CHATWATCH_SERVER__{key.upper()}"] = str(value)
    from chatwatch.observe.metrics.multiprocess import prepare_multiprocess
    from chatwatch.store.db import Database

    async def migrate_once() -> None:
        db = Database(settings.database_url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    asyncio.run(migrate_once())

    prepare_multiprocess(settings.server.data_dir.resolve() / "prometheus")
    from uvicorn.supervisors import multiprocess

    # uvicorn's supervisor builds a plain Server in each worker; ours drains the chat on
    # SIGTERM, so the supervisor is pointed at a Process that builds ChatwatchServer.
    multiprocess.Process = _ChatwatchProcess  # type: ignore[misc]
    config = uvicorn_config("chatwatch.server:create_app", settings, factory=True, workers=workers)
    sock = config.bind_socket()
    multiprocess.Multiprocess(config, sockets=[sock]).run()
    return 0


class _ChatwatchProcess(Process):
    """A uvicorn worker process whose server is a ChatwatchServer."""

    @property
    def server(self) -> uvicorn.Server:
        """The worker's server, built on first use (in the child)."""
        if self._server is None:
            self._server = ChatwatchServer(config=self.config)
        return self._server
