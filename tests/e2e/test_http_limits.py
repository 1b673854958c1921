"""HTTP limits on a real server (issue 8): header size and count, header and idle timeouts,
connections per IP — while a normal client's ``/healthz`` keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat

# Generous bounds: the limits under test are 1 s; a loaded CI machine is slow, not stuck.
CLOSE_WITHIN = 6.0
HEALTHZ_WITHIN = 2.0


async def raw(
    srv: LiveServer, *, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the server, from ``source`` (any 127/8 address works)."""
    return await asyncio.open_connection("127.0.0.1", srv.port, local_addr=(source, 0))


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after ``within``."""
    chunks = []
    async with asyncio.timeout(within):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client socket, whatever state the server left it in."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def healthz_ok(srv: LiveServer) -> None:
    """A normal client gets /healthz promptly."""
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=srv.url, timeout=HEALTHZ_WITHIN) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert time.perf_counter() - start < HEALTHZ_WITHIN


@pytest.fixture
async def srv(live_server_factory: LiveServerFactory) -> AsyncIterator[LiveServer]:
    """A server with small limits: 1 s header and keep-alive timeouts, 20 headers, 8 KiB."""
    server = {
        "max_header_bytes": 8192,
        "max_headers": 20,
        "header_timeout": 1,
        "keepalive_timeout": 1,
        "http_connections_per_ip": 5,
    }
    async with live_server_factory(server=server) as live:
        yield live


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no content-length in {head!r}")


def _request(headers: str = "") -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()


async def test_a_huge_header_gets_431(srv: LiveServer) -> None:
    """Headers over max_header_bytes → 431 and closed. Tried before: a 16 MiB header
    was accepted and read to the end."""
    reader, writer = await raw(srv)
    writer.write(_request("X-Big: " + "a" * 20_000 + "\r\n"))
    answer = await read_until_closed(reader, CLOSE_WITHIN)
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"too large" in answer
    await healthz_ok(srv)
    registry = srv.services.metrics.registry
    refused = registry.get_sample_value("chat_security_events_total", {"type": "http_limit"})
    assert refused == 1  # counted and logged as a security event, like every other refusal


async def test_a_header_that_never_ends_is_cut_off(srv: LiveServer) -> None:
    """16 MiB of one header value, streamed: the server closes long before the end."""
    reader, writer = await raw(srv)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(CLOSE_WITHIN):
            while sent < 16 << 20:
                writer.write(b"a" * 65536)
                await writer.drain()
                sent += 65536
    answer = await read_until_closed(reader, CLOSE_WITHIN)
    await close(writer)
    assert sent < 16 << 20  # refused (reset) well before the 16 MiB were taken
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    await healthz_ok(srv)


async def test_too_many_headers_get_431(srv: LiveServer) -> None:
    """More than max_headers header lines → 431 with a reason."""
    reader, writer = await raw(srv)
    writer.write(_request("".join(f"X-H{i}: v\r\n" for i in range(50))))
    answer = await read_until_closed(reader, CLOSE_WITHIN)
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"Too many request header fields" in answer


async def test_headers_within_the_limits_are_served(srv: LiveServer) -> None:
    """19 headers and 6 KiB are fine: the limits do not bite normal requests."""
    reader, writer = await raw(srv)
    writer.write(_request("X-Pad: " + "p" * 6000 + "\r\n" + "X-A: b\r\n" * 17))
    async with asyncio.timeout(CLOSE_WITHIN):
        head = await reader.readuntil(b"\r\n\r\n")
    await close(writer)
    assert head.startswith(b"HTTP/1.1 200 ")


async def test_a_stalled_partial_header_is_closed_with_408(srv: LiveServer) -> None:
    """A request whose headers stop arriving gets 408 after header_timeout (1 s here).
    Tried before: 200 slow-header sockets were all still open after 70 s."""
    reader, writer = await raw(srv)
    start = time.perf_counter()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Partial: ab")
    answer = await read_until_closed(reader, CLOSE_WITHIN)
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.perf_counter() - start < CLOSE_WITHIN
    await healthz_ok(srv)


async def test_a_trickle_of_header_bytes_does_not_reset_the_clock(srv: LiveServer) -> None:
    """Slowloris: a byte every 0.2 s still gets cut at header_timeout, not kept alive."""
    reader, writer = await raw(srv)
    writer.write(b"GET /healthz HTTP/1.1\r\n")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.2)

    feeder = asyncio.create_task(trickle())
    try:
        answer = await read_until_closed(reader, CLOSE_WITHIN)
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_a_silent_socket_is_closed(srv: LiveServer) -> None:
    """A connection that never sends a byte is closed after header_timeout, unanswered.
    Tried before: 100 silent sockets were still open after 70 s."""
    reader, writer = await raw(srv)
    answer = await read_until_closed(reader, CLOSE_WITHIN)
    await close(writer)
    assert answer == b""


async def test_an_idle_keep_alive_socket_is_closed(srv: LiveServer) -> None:
    """After a response, a kept-alive connection idle for keepalive_timeout is closed."""
    reader, writer = await raw(srv)
    writer.write(_request())
    async with asyncio.timeout(CLOSE_WITHIN):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    await reader.readexactly(_content_length(head))
    start = time.perf_counter()
    assert await read_until_closed(reader, CLOSE_WITHIN) == b""
    await close(writer)
    assert time.perf_counter() - start < CLOSE_WITHIN


async def test_keep_alive_serves_several_requests(srv: LiveServer) -> None:
    """Requests on one kept-alive connection, each within the limits, are all served."""
    reader, writer = await raw(srv)
    for _ in range(3):
        writer.write(_request())
        async with asyncio.timeout(CLOSE_WITHIN):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            await reader.readexactly(_content_length(head))
        await asyncio.sleep(0.3)
    await close(writer)


async def test_connections_per_ip_over_the_cap_are_refused(srv: LiveServer) -> None:
    """From one address, the connection past http_connections_per_ip (5) gets 429 and is
    closed; another address is served meanwhile, and the first is again once it has
    closed some."""
    held = [await raw(srv, source="127.0.0.2") for _ in range(5)]
    reader, writer = await raw(srv, source="127.0.0.2")
    answer = await read_until_closed(reader, CLOSE_WITHIN)
    await close(writer)
    assert answer.startswith(b"HTTP/1.1 429 ")
    await healthz_ok(srv)  # from 127.0.0.1
    for _, w in held:
        await close(w)
    await asyncio.sleep(0.2)
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=srv.url, transport=transport) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_websockets_do_not_count_against_the_http_cap(srv: LiveServer) -> None:
    """Upgraded connections leave the HTTP per-IP count: 8 chats with a cap of 5 all work."""
    token, _ = await srv.guest()
    chats = [await open_chat(srv.ws_url, token) for _ in range(8)]
    try:
        await healthz_ok(srv)
        frames = await chats[-1].ask("hello", "m1")
        assert frames[-1]["type"] == "ai_message"
    finally:
        for chat in chats:
            await chat.close()


async def test_trusted_proxies_are_not_capped(live_server_factory: LiveServerFactory) -> None:
    """A peer listed in forwarded_allow_ips carries many clients: it is not capped."""
    server = {"http_connections_per_ip": 2, "forwarded_allow_ips": ["127.0.0.3/32"]}
    async with live_server_factory(server=server) as srv:
        held = [await raw(srv, source="127.0.0.3") for _ in range(4)]
        for reader, writer in held:
            writer.write(_request())
            async with asyncio.timeout(CLOSE_WITHIN):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        for _, writer in held:
            await close(writer)
