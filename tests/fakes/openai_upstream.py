"""A real OpenAI-compatible HTTP server on loopback, scriptable per test.

It speaks just enough HTTP/1.1 (keep-alive, chunked responses) to serve
``POST …/chat/completions`` (streamed SSE or one JSON document) and ``GET …/models``.
It runs its own event loop in a background thread, so sync tests, async tests and
server processes started by tests can all call it.

Usage::

    def test_x(fake_openai: FakeOpenAI) -> None:
        fake_openai.behaviour = Behaviour(text="Hi there", prompt_tokens=9)
        fake_openai.script.append(Behaviour(status=500))  # the next request only
        ...  # point the code at fake_openai.url ("http://127.0.0.1:PORT/v1")
        assert fake_openai.requests[-1].headers["x-correlation-id"] == "abc"

Why hand-written instead of uvicorn: a test needs byte-level control (cut a chunked body
mid-way, stall after N chunks) and a shutdown that never waits on a stalled response.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest

__all__ = ["Behaviour", "FakeOpenAI", "RecordedRequest", "fake_openai"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it was not JSON

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent, or [] when the body had none."""
        if isinstance(self.json, dict) and isinstance(self.json.get("messages"), list):
            return list(self.json["messages"])
        return []


@dataclass
class Behaviour:
    """How the fake answers one chat request; every field has a harmless default."""

    text: str | Callable[[RecordedRequest], str] = "Hello! How can I help you today?"
    chunks: Sequence[str] | None = None  # explicit pieces; default: the text split into words
    model: str | None = None  # model reported back; None echoes the requested model
    prompt_tokens: int = 12
    completion_tokens: int | None = None  # None: the number of chunks
    usage: bool = True  # send usage (when the client asked via stream_options.include_usage)
    status: int = 200  # >= 400 answers a JSON error body with this status
    error_message: str = "fake upstream failure"
    first_byte_delay: float = 0.0  # seconds before the response headers
    chunk_delay: float = 0.0  # seconds between content chunks
    stall_after: int | None = None  # after N content chunks, send nothing until the client leaves
    cut_after: int | None = None  # after N content chunks, close the connection mid-body
    malformed_after: int | None = None  # after N content chunks, send a chunk that is not JSON
    send_finish: bool = True  # the chunk with finish_reason "stop"
    send_done: bool = True  # the final "data: [DONE]"
    stream: bool | None = None  # None: as the request asks; False forces one JSON document
    # Sent verbatim, one ``data:`` line each, instead of the generated chunks (then usage
    # and [DONE] as usual): for replies of the wrong shape.
    raw_data: Sequence[str] | None = None
    # Replaces the JSON document of a non-streamed reply (sent as application/json).
    raw_document: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # extra response headers


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 with a free port, in its own thread."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.script: list[Behaviour] = []  # consumed first-in-first-out, one per chat request
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = 0

    # ---- control, from the test's thread -------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to configure clients with, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        with self._lock:
            return self._open

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded requests to the chat completions endpoint."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def configure(self, **changes: Any) -> None:
        """Change fields of the default behaviour, e.g. ``configure(text="Hi")``."""
        self.behaviour = dataclasses.replace(self.behaviour, **changes)

    def reset(self) -> None:
        """Forget recorded requests and script; restore the default behaviour."""
        with self._lock:
            self.requests.clear()
            self.script.clear()
            self.behaviour = Behaviour()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"fake OpenAI got {len(self.requests)} request(s), expected {count}"
                    )
                self._lock.wait(left)
            return list(self.requests)

    def start(self) -> FakeOpenAI:
        """Start serving; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI already started")
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start within 10s")
        if self._startup_error is not None:
            raise RuntimeError("fake OpenAI server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving, dropping any stalled or open connection; idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        if thread.is_alive():
            raise RuntimeError("fake OpenAI server did not stop within 10s")
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- the server, in its own thread ----------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); a thread must not raise
            self._startup_error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
            # Let aborted transports deliver connection_lost before the loop closes.
            for _ in range(3):
                await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        with self._lock:
            self._open += 1
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                keep_alive = await self._respond(request, reader, writer)
                if not keep_alive or request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: just drop the connection
        except ValueError:
            pass  # an unparsable request line or header
        finally:
            if not writer.transport.is_closing():
                writer.transport.close()
            self._writers.discard(writer)
            self._tasks.discard(task)
            with self._lock:
                self._open -= 1

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed between requests
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = RecordedRequest(method, target, headers, body, parsed)
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
        return request

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self.script.pop(0) if self.script else self.behaviour

    async def _respond(
        self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must be dropped afterwards."""
        path = urlsplit(request.path).path
        if request.method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(request, self._next_behaviour(), reader, writer)
        if request.method == "GET" and path.endswith("/models"):
            model = self.behaviour.model or "fake-model"
            listing = {"object": "list", "data": [{"id": model, "object": "model"}]}
            await _send_json(writer, 200, listing)
            return True
        await _send_json(writer, 404, {"error": {"message": f"no route {path}"}})
        return True

    async def _chat(
        self,
        request: RecordedRequest,
        b: Behaviour,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        body = request.json if isinstance(request.json, dict) else {}
        if b.first_byte_delay:
            await asyncio.sleep(b.first_byte_delay)
        if b.status >= 400:
            error = {"message": b.error_message, "type": "server_error", "code": b.status}
            await _send_json(writer, b.status, {"error": error}, b.headers)
            return True

        text = b.text(request) if callable(b.text) else b.text
        chunks = list(b.chunks) if b.chunks is not None else re.findall(r"\S+\s*|\s+", text)
        content = "".join(chunks)
        model = b.model or str(body.get("model") or "fake-model")
        usage = {
            "prompt_tokens": b.prompt_tokens,
            "completion_tokens": (
                b.completion_tokens if b.completion_tokens is not None else len(chunks)
            ),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        wants_stream = body.get("stream") is True if b.stream is None else b.stream
        ident = f"chatcmpl-fake-{id(request):x}"
        created = int(time.time())

        if not wants_stream:
            document: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
            if b.usage:
                document["usage"] = usage
            if b.raw_document is not None:
                await _send_raw(writer, 200, b.raw_document.encode(), b.headers)
                return True
            await _send_json(writer, 200, document, b.headers)
            return True

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if b.raw_data is not None:
            for payload in b.raw_data:
                await _send_chunk(writer, f"data: {payload}\n\n".encode())
            chunks = []
        else:
            await _send_chunk(
                writer, chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
            )
        for i in range(len(chunks) + 1):
            if b.stall_after == i:
                await _until_client_leaves(reader)
                return False
            if b.cut_after == i:
                await writer.drain()
                writer.close()  # no terminating chunk: the body is cut short
                return False
            if b.malformed_after == i:
                await _send_chunk(writer, b'data: {"choices": [{"delta": {"content": "oops\n\n')
            if i == len(chunks):
                break
            if i and b.chunk_delay:
                await asyncio.sleep(b.chunk_delay)
            piece = {"index": 0, "delta": {"content": chunks[i]}, "finish_reason": None}
            await _send_chunk(writer, chunk([piece]))
        if b.send_finish and b.raw_data is None:
            await _send_chunk(writer, chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        options = body.get("stream_options")
        if b.usage and isinstance(options, dict) and options.get("include_usage"):
            await _send_chunk(writer, chunk([], usage=usage))
        if b.send_done:
            await _send_chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _send_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    document: object,
    headers: dict[str, str] | None = None,
) -> None:
    await _send_raw(writer, status, json.dumps(document).encode(), headers)


async def _send_raw(
    writer: asyncio.StreamWriter, status: int, data: bytes, headers: dict[str, str] | None
) -> None:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        f"Content-Type: application/json\r\n"
        f"{extra}"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()


async def _until_client_leaves(reader: asyncio.StreamReader) -> None:
    """Stall: the request body is fully read, so the next read ends only at the client's EOF."""
    while await reader.read(65536):
        pass


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fresh fake OpenAI-compatible server on loopback for one test."""
    with FakeOpenAI() as server:
        yield server
