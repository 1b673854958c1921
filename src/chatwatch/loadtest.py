"""``chatwatch loadtest`` (SPEC §8): N concurrent guest users, M chat messages each.

The run, against exactly the URL given (no proxy from the environment, no redirect to another
host):

1. **Set-up.** Mint one guest token per user (``POST <http base>/api/v1/auth/guest``, where
   the http base is the ws URL with ``ws``→``http``, ``wss``→``https`` and a trailing
   ``/ws/chat`` removed), open the WebSocket and wait for its ``connected`` frame — at most
   ``SETUP_CONCURRENCY`` users at a time. The first token is a probe: if guest login is
   refused the run stops (``GuestLoginRefused``); if the server cannot be reached at all,
   no other user is tried (the rest are counted as ``not_attempted``).
2. **Messages.** When every user has connected (or failed to), each connection sends its
   messages one at a time, waiting for the reply to each before the next. ``rate`` caps the
   sends per second across all connections (scheduled send slots, ``1/rate`` apart).
3. **Close** every socket.

Counting (``sent == replies + lost`` always holds):

- a *reply* is the ``ai_message`` or the ``error`` frame that answers a message (an error
  frame is a reply — the server answered — and is counted in ``errors`` by its ``code``);
- a message is *lost* when it was sent and no reply came: no reply within ``timeout``, the
  connection dropped while waiting, or the run's hard deadline cut the wait short;
- a *round trip* is send → ``ai_message``; only those are latency samples (an immediate
  ``rate_limited`` error is not a chat round trip). Percentiles are exact, by the
  nearest-rank method over every sample: ``pN`` is the smallest sample with at least N% of
  the samples at or below it;
- ``errors`` also holds connection failures by reason, prefixed so they never clash with
  the server's error codes: ``guest_http_<status>``, ``guest_connect_error``,
  ``guest_timeout``, ``connect_http_<status>`` (upgrade refused, e.g. 401 or 429),
  ``connect_refused``, ``connect_timeout``, ``connect_closed_<code>`` (closed before the
  ``connected`` frame, e.g. 4401), ``disconnected_<code>`` (dropped during the run),
  ``not_attempted``; ``unknown`` for an error frame without a code and
  ``bad_server_frame`` for a frame that is not JSON;
- ``throughput_per_second`` is replies over ``duration_seconds``, the message phase (from
  the moment every user has connected, or failed to, until the last connection is done);
  ``elapsed_seconds`` is the whole run, set-up and close included.

Bounds: at most ``connections × messages`` messages; every step waits at most ``timeout``;
with ``duration``, no message is sent after ``duration`` seconds from the start of the run
and the whole run ends within ``duration + timeout`` seconds (in-flight waits are cut off
and counted as lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import random
import secrets
import socket
import ssl
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer

if TYPE_CHECKING:
    # Imported where used at run time: ``chatwatch --help`` should not pay for them.
    import httpx
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_MESSAGES",
    "QUESTIONS",
    "GuestLoginRefused",
    "LoadReport",
    "LoadTestError",
    "check_arguments",
    "loadtest_command",
    "percentile",
    "register",
    "run_loadtest",
]

MAX_CONNECTIONS = 10_000
MAX_MESSAGES = 1_000_000
MAX_TIMEOUT = 3600.0
SETUP_CONCURRENCY = 100  # guest logins and handshakes in flight at once
GUEST_PATH = "/api/v1/auth/guest"
CHAT_PATH = "/ws/chat"
USER_AGENT = "chatwatch-loadtest/1"
_CLOSE_GRACE = 2.0  # seconds for the closing handshakes at the end
_MAX_FRAME = 4 * 2**20  # largest server frame accepted
_REFUSED = frozenset({401, 403, 404, 405})  # guest login off or not there

#: What the simulated visitors ask: pricing, services and booking questions, so that the
#: consultant's response cache is hit only part of the time.
QUESTIONS: tuple[str, ...] = (
    "How much does a consultation cost?",
    "What are your prices for a small business website?",
    "Do you offer monthly retainers, and what do they cost?",
    "Is there a discount for non-profits?",
    "What services do you offer?",
    "Can you help with data analytics and dashboards?",
    "Do you do security audits?",
    "What does your onboarding process look like?",
    "How do I book a consultation?",
    "Can I book a call for next Tuesday afternoon?",
    "What are your opening hours?",
    "Can I reschedule a booking I already made?",
)


class LoadTestError(Exception):
    """The load test could not run at all."""


class GuestLoginRefused(LoadTestError):
    """The server refuses guest logins, so no simulated user can get a token."""


# --- arguments ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """The one server a run talks to."""

    host: str
    port: int
    secure: bool
    guest_url: str
    _ws_base: str  # scheme://netloc/path
    _query: tuple[tuple[str, str], ...]

    def ws_url(self, token: str) -> str:
        return self._ws_base + "?" + urlencode([*self._query, ("token", token)])

    @property
    def display(self) -> str:
        return self._ws_base + ("?" + urlencode(self._query) if self._query else "")


def _parse_target(url: str) -> _Target:
    if not isinstance(url, str) or not url.strip():
        raise ValueError("--url is required: the chat WebSocket, e.g. ws://127.0.0.1:8000/ws/chat")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(
            f"--url must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:8000/ws/chat (got {url!r})"
        )
    host = parts.hostname
    if not host:
        raise ValueError(f"--url has no host (got {url!r})")
    try:
        explicit_port = parts.port
    except ValueError:
        raise ValueError(f"--url has an invalid port (got {url!r})") from None
    secure = scheme == "wss"
    port = explicit_port or (443 if secure else 80)
    netloc = f"[{host}]" if ":" in host else host
    if explicit_port:
        netloc += f":{explicit_port}"
    path = parts.path or "/"
    prefix = path[: -len(CHAT_PATH)] if path.endswith(CHAT_PATH) else ""
    guest_url = urlunsplit(("https" if secure else "http", netloc, prefix + GUEST_PATH, "", ""))
    query = tuple((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token")
    return _Target(
        host=host,
        port=port,
        secure=secure,
        guest_url=guest_url,
        _ws_base=urlunsplit((scheme, netloc, path, "", "")),
        _query=query,
    )


def _positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number (got {value!r})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be greater than 0 (got {value})")


def check_arguments(
    url: str,
    connections: int,
    messages: int,
    rate: float | None = None,
    duration: float | None = None,
    timeout: float = 30.0,
) -> None:
    """Raise ``ValueError`` with a message naming the option when an argument is out of range."""
    _parse_target(url)
    for name, value, top in (
        ("--connections", connections, MAX_CONNECTIONS),
        ("--messages", messages, MAX_MESSAGES),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number (got {value!r})")
        if not 1 <= value <= top:
            raise ValueError(f"{name} must be between 1 and {top} (got {value})")
    _positive("--rate", rate)
    _positive("--duration", duration)
    _positive("--timeout", timeout)
    if timeout > MAX_TIMEOUT:
        raise ValueError(f"--timeout must be at most {MAX_TIMEOUT:g} s (got {timeout})")


# --- the report --------------------------------------------------------------------------


def percentile(sorted_samples: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p ≤ 100) of ascending samples; None if empty."""
    if not sorted_samples:
        return None
    rank = math.ceil(p / 100.0 * len(sorted_samples))
    return sorted_samples[min(max(rank, 1), len(sorted_samples)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class LoadReport:
    """What one load test run observed. ``sent == replies + lost``."""

    url: str
    run_id: str
    connections_requested: int
    messages_per_connection: int
    rate: float | None
    duration_limit: float | None
    timeout: float
    connections: int = 0  # opened (got the ``connected`` frame)
    connections_failed: int = 0
    sent: int = 0
    replies: int = 0  # ai_message or error frame answering a sent message
    ai_replies: int = 0  # ai_message replies: the latency samples
    cached: int = 0  # ai_message replies with ``cached: true``
    timeouts: int = 0  # no reply within ``timeout`` (part of ``lost``)
    late_replies: int = 0  # replies that came after their message had timed out (ignored)
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # ascending
    duration_seconds: float = 0.0  # the message phase
    elapsed_seconds: float = 0.0  # the whole run
    aborted: str | None = None  # why the run stopped before sending, if it did

    @property
    def lost(self) -> int:
        """Messages sent without a reply."""
        return self.sent - self.replies

    @property
    def throughput_per_second(self) -> float:
        """Replies per second over the message phase."""
        return self.replies / self.duration_seconds if self.duration_seconds > 0 else 0.0

    def latency(self, p: float) -> float | None:
        """The exact ``p``-th percentile round trip in ms (nearest rank); None without samples."""
        return percentile(self.latencies_ms, p)

    def latency_summary(self) -> dict[str, float | int | None]:
        """``p50``, ``p95``, ``p99``, ``mean``, ``max`` in ms (None without samples), ``count``."""
        samples = self.latencies_ms
        return {
            "p50": _ms(self.latency(50)),
            "p95": _ms(self.latency(95)),
            "p99": _ms(self.latency(99)),
            "mean": _ms(math.fsum(samples) / len(samples)) if samples else None,
            "max": _ms(samples[-1]) if samples else None,
            "count": len(samples),
        }

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON-ready object (what ``--json`` prints)."""
        return {
            "url": self.url,
            "run_id": self.run_id,
            "requested": {
                "connections": self.connections_requested,
                "messages": self.messages_per_connection,
                "rate": self.rate,
                "duration": self.duration_limit,
                "timeout": self.timeout,
            },
            "connections": self.connections,
            "connections_failed": self.connections_failed,
            "sent": self.sent,
            "replies": self.replies,
            "ai_replies": self.ai_replies,
            "cached": self.cached,
            "lost": self.lost,
            "timeouts": self.timeouts,
            "late_replies": self.late_replies,
            "errors": dict(sorted(self.errors.items())),
            "throughput_per_second": round(self.throughput_per_second, 3),
            "latency_ms": self.latency_summary(),
            "duration_seconds": round(self.duration_seconds, 3),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "aborted": self.aborted,
        }

    def format_text(self) -> str:
        """The report for people, one figure per line."""

        def ms(value: float | int | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        lat = self.latency_summary()
        frame_errors = self.replies - self.ai_replies
        lines = [
            f"chatwatch loadtest: {self.url} (run {self.run_id})",
            f"  connections  {self.connections} opened, {self.connections_failed} failed "
            f"(of {self.connections_requested})",
            f"  messages     {self.sent} sent, {self.replies} replies "
            f"({self.ai_replies} AI, {self.cached} of them cached; {frame_errors} error frames), "
            f"{self.lost} lost ({self.timeouts} timed out)",
            f"  throughput   {self.throughput_per_second:.1f} replies/s "
            f"over {self.duration_seconds:.2f} s (run {self.elapsed_seconds:.2f} s)",
            f"  latency ms   p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  "
            f"mean {ms(lat['mean'])}  max {ms(lat['max'])}  ({lat['count']} round trips)",
        ]
        if self.errors:
            lines.append(
                "  errors       "
                + ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items()))
            )
        else:
            lines.append("  errors       none")
        if self.late_replies:
            lines.append(f"  late         {self.late_replies} replies came after their timeout")
        if self.aborted:
            lines.append(f"  aborted      {self.aborted}")
        return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------


class _Pacer:
    """Send slots ``1/rate`` seconds apart, shared by every connection; none after ``stop_at``."""

    def __init__(self, rate: float | None, stop_at: float | None, now: Callable[[], float]):
        self._interval = 1.0 / rate if rate else 0.0
        self._stop_at = stop_at
        self._now = now
        self._next = 0.0

    async def turn(self) -> bool:
        """Wait for the next slot; False once sending must stop."""
        now = self._now()
        slot = max(now, self._next)
        if self._stop_at is not None and slot >= self._stop_at:
            return False
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
        return True


def _close_code(err: ConnectionClosed) -> int | None:
    frame = err.rcvd or err.sent
    return frame.code if frame is not None else None


def _os_reason(prefix: str, err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return f"{prefix}_refused"
    if isinstance(err, socket.gaierror):
        return f"{prefix}_dns"
    name = errno.errorcode.get(err.errno) if err.errno else None
    return f"{prefix}_{name.lower()}" if name else f"{prefix}_oserror"


class _Skipped(Exception):
    """This user got no connection; the reason is already counted."""


class _Run:
    def __init__(
        self,
        target: _Target,
        connections: int,
        messages: int,
        rate: float | None,
        duration: float | None,
        timeout: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.now = loop.time
        self.target = target
        self.n = connections
        self.m = messages
        self.timeout = timeout
        self.started = self.now()
        self.stop_at = self.started + duration if duration is not None else None
        self.deadline = self.started + duration + timeout if duration is not None else None
        self.pacer = _Pacer(rate, self.stop_at, self.now)
        self.report = LoadReport(
            url=target.display,
            run_id=secrets.token_hex(4),
            connections_requested=connections,
            messages_per_connection=messages,
            rate=None if rate is None else float(rate),
            duration_limit=None if duration is None else float(duration),
            timeout=float(timeout),
        )
        self.errors: Counter[str] = Counter()
        self.samples: array[float] = array("d")
        self.sockets: list[ClientConnection] = []
        self.setup_slots = asyncio.Semaphore(SETUP_CONCURRENCY)
        self.setting_up = connections
        self.go = asyncio.Event()
        self.phase_start: float | None = None
        self.http: httpx.AsyncClient | None = None

    # -- helpers --

    def budget(self) -> float:
        """How long the next wait may take: ``timeout``, less near the hard deadline."""
        if self.deadline is None:
            return self.timeout
        return max(0.0, min(self.timeout, self.deadline - self.now()))

    def fail(self, reason: str, count: int = 1) -> None:
        self.report.connections_failed += count
        self.errors[reason] += count

    # -- whole run --

    async def run(self) -> LoadReport:
        import httpx

        limits = httpx.Limits(max_connections=SETUP_CONCURRENCY, max_keepalive_connections=20)
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: only the URL given
                verify=ssl.create_default_context(),  # the CAs websockets trusts for wss
                limits=limits,
                headers={"User-Agent": USER_AGENT},
            ) as http:
                self.http = http
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self.deadline):
                        await self._users()
        finally:
            end = self.now()
            if self.phase_start is not None:
                self.report.duration_seconds = max(0.0, end - self.phase_start)
            await self._close_all()
            self.report.elapsed_seconds = self.now() - self.started
            self.report.errors = dict(self.errors)
            self.report.latencies_ms = sorted(self.samples)
        return self.report

    async def _users(self) -> None:
        try:
            first = await self._mint(probe=True)
        except _Skipped:
            first = None
            if self.report.aborted is not None:
                return
        async with asyncio.TaskGroup() as group:
            group.create_task(self._user(0, first, tried=True))
            for index in range(1, self.n):
                group.create_task(self._user(index, None, tried=False))

    async def _user(self, index: int, token: str | None, *, tried: bool) -> None:
        ws: ClientConnection | None = None
        try:
            if token is not None or not tried:
                async with self.setup_slots:
                    ws = await self._open(token)
        except _Skipped:
            pass
        finally:
            self.setting_up -= 1
            if self.setting_up == 0:
                self.phase_start = self.now()
                self.go.set()
        if ws is None:
            return
        await self.go.wait()
        await self._converse(index, ws)

    # -- set-up --

    async def _mint(self, *, probe: bool = False) -> str:
        import httpx

        assert self.http is not None
        url = self.target.guest_url
        budget = self.budget()
        try:
            async with asyncio.timeout(budget):
                response = await self.http.post(url)
        except (TimeoutError, httpx.TimeoutException):
            reason, detail = "guest_timeout", f"no answer within {budget:g} s"
        except httpx.ConnectError as err:
            reason, detail = "guest_connect_error", str(err) or type(err).__name__
        except httpx.HTTPError as err:
            reason, detail = "guest_error", str(err) or type(err).__name__
        else:
            return self._token_from(response, probe=probe)
        if probe:
            # Nothing answers at that address: trying every other user would only wait longer.
            self.report.aborted = f"cannot reach {url}: {detail}"
            self.fail(reason)
            if self.n > 1:
                self.fail("not_attempted", self.n - 1)
            raise _Skipped()
        self.fail(reason)
        raise _Skipped()

    def _token_from(self, response: httpx.Response, *, probe: bool) -> str:
        status = response.status_code
        if status in _REFUSED and probe:
            detail = ""
            with contextlib.suppress(ValueError, AttributeError):
                body = response.json()
                detail = str(body.get("detail") or body.get("error") or "")
            raise GuestLoginRefused(
                f"guest login refused by {self.target.guest_url} (HTTP {status}"
                + (f": {detail}" if detail else "")
                + "); the load test needs auth.guest_login = true"
            )
        if status != 200:
            self.fail(f"guest_http_{status}")
            raise _Skipped()
        try:
            token = response.json()["token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            self.fail("guest_bad_response")
            raise _Skipped()
        return token

    async def _open(self, token: str | None) -> ClientConnection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        if token is None:
            token = await self._mint()
        budget = self.budget()
        if budget <= 0:
            self.fail("connect_timeout")
            raise _Skipped()
        try:
            ws = await connect(
                self.target.ws_url(token),
                open_timeout=budget,
                close_timeout=_CLOSE_GRACE,
                max_size=_MAX_FRAME,
                proxy=None,
                user_agent_header=USER_AGENT,
                # An explicit host and port make websockets refuse cross-origin redirects.
                host=self.target.host,
                port=self.target.port,
            )
        except InvalidStatus as err:
            self.fail(f"connect_http_{err.response.status_code}")
            raise _Skipped() from None
        except TimeoutError:
            self.fail("connect_timeout")
            raise _Skipped() from None
        except OSError as err:
            self.fail(_os_reason("connect", err))
            raise _Skipped() from None
        except (InvalidHandshake, ValueError):
            self.fail("connect_handshake_failed")
            raise _Skipped() from None
        try:
            async with asyncio.timeout(self.budget()):
                first = json.loads(await ws.recv())
        except ConnectionClosed as err:
            code = _close_code(err)
            self.fail(f"connect_closed_{code}" if code is not None else "connect_closed")
            raise _Skipped() from None
        except TimeoutError:
            ws.transport.abort()
            self.fail("connect_timeout")
            raise _Skipped() from None
        except ValueError:
            ws.transport.abort()
            self.fail("connect_unexpected_frame")
            raise _Skipped() from None
        if not isinstance(first, dict) or first.get("type") != "connected":
            ws.transport.abort()
            self.fail("connect_unexpected_frame")
            raise _Skipped()
        self.sockets.append(ws)
        self.report.connections += 1
        return ws

    # -- messages --

    async def _converse(self, index: int, ws: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        report = self.report
        pick = random.Random(f"{report.run_id}-{index}")  # varied texts per run; not security
        for number in range(self.m):
            if not await self.pacer.turn():
                return
            msg_id = f"lt-{index}-{number}"
            frame = {
                "type": "message",
                "id": msg_id,
                "content": QUESTIONS[pick.randrange(len(QUESTIONS))],
                "correlation_id": f"lt-{report.run_id}-{index}-{number}",
            }
            try:
                await ws.send(json.dumps(frame))
            except ConnectionClosed as err:
                self._dropped(err)
                return
            report.sent += 1
            sent_at = time.perf_counter()
            budget = self.budget()
            try:
                async with asyncio.timeout(budget):
                    reply = await self._reply_to(ws, msg_id)
            except TimeoutError:
                if budget >= self.timeout:
                    report.timeouts += 1
                continue
            except ConnectionClosed as err:
                self._dropped(err)
                return
            elapsed_ms = (time.perf_counter() - sent_at) * 1000.0
            report.replies += 1
            if reply.get("type") == "ai_message":
                report.ai_replies += 1
                report.cached += reply.get("cached") is True
                self.samples.append(elapsed_ms)
            else:
                code = reply.get("code")
                self.errors[code if isinstance(code, str) and code else "unknown"] += 1

    async def _reply_to(self, ws: ClientConnection, msg_id: str) -> dict[str, Any]:
        """Frames until the ``ai_message`` or ``error`` that answers ``msg_id``."""
        while True:
            raw = await ws.recv()
            try:
                frame = json.loads(raw)
            except ValueError:
                self.errors["bad_server_frame"] += 1
                continue
            if not isinstance(frame, dict) or frame.get("type") not in ("ai_message", "error"):
                continue  # ack, ai_delta, pong
            reply_to = frame.get("reply_to")
            if reply_to == msg_id or (frame["type"] == "error" and reply_to is None):
                return frame
            self.report.late_replies += 1

    def _dropped(self, err: ConnectionClosed) -> None:
        code = _close_code(err)
        self.errors[f"disconnected_{code}" if code is not None else "disconnected"] += 1

    # -- close --

    async def _close_all(self) -> None:
        sockets, self.sockets = self.sockets, []
        if not sockets:
            return
        grace = _CLOSE_GRACE
        if self.deadline is not None:
            grace = min(grace, self.deadline - self.now())
        if grace > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for ws in sockets:
            ws.transport.abort()


async def run_loadtest(
    url: str,
    connections: int,
    messages: int,
    rate: float | None = None,
    duration: float | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - per reply and handshake, not the whole call
) -> LoadReport:
    """Drive ``connections`` guest users sending ``messages`` each to ``url``; see the module doc.

    Raises ``ValueError`` for an argument out of range and ``GuestLoginRefused`` when the
    server refuses guest logins; every other failure is counted in the report.
    """
    check_arguments(url, connections, messages, rate, duration, timeout)
    target = _parse_target(url)
    return await _Run(target, connections, messages, rate, duration, timeout).run()


# --- the command -------------------------------------------------------------------------


def loadtest_command(
    url: Annotated[
        str,
        typer.Option("--url", help="The chat WebSocket, e.g. ws://127.0.0.1:8000/ws/chat."),
    ],
    connections: Annotated[
        int,
        typer.Option("--connections", "-n", help=f"Concurrent users (1-{MAX_CONNECTIONS})."),
    ],
    messages: Annotated[
        int,
        typer.Option("--messages", "-m", help=f"Messages per user (1-{MAX_MESSAGES})."),
    ],
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="At most this many messages per second, all users together."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            help="Stop sending after this many seconds; the run ends by duration + timeout.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds to wait for each reply (or handshake)."),
    ] = 30.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
) -> None:
    """Load-test a chat server: concurrent guest users, round-trip latency, errors, losses.

    Exit 0: the run completed, even with errors. Exit 1: no connection could be made.

    Exit 2: a bad argument, or the server refuses guest logins.
    """
    try:
        check_arguments(url, connections, messages, rate, duration, timeout)
    except ValueError as err:
        typer.echo(f"chatwatch loadtest: {err}", err=True)
        raise typer.Exit(2) from None
    try:
        report = asyncio.run(run_loadtest(url, connections, messages, rate, duration, timeout))
    except GuestLoginRefused as err:
        typer.echo(f"chatwatch loadtest: {err}", err=True)
        raise typer.Exit(2) from None
    if json_output:
        typer.echo(json.dumps(report.as_json()))
    else:
        typer.echo(report.format_text())
    if report.connections == 0:
        why = f": {report.aborted}" if report.aborted else ""
        typer.echo(f"chatwatch loadtest: no connection could be made{why}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``loadtest`` command to ``app`` (the ``chatwatch`` CLI)."""
    app.command("loadtest")(loadtest_command)
