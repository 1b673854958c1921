"""Structured logging: one structlog pipeline for our records and the stdlib's.

The pipeline, in order::

    merge contextvars → stamp (level, RFC 3339 UTC timestamp, component, correlation_id)
    → exception fields → Sanitizer (redact, bound, one line) → emit (count by level,
    hand a copy to the log store) → render (orjson JSON line, or console)

Record shape: flat keys, the error fields dotted (``error.type``, ``error.message``,
``error.stack_trace``), so a record is one level deep and reads the same in ``jq``,
Loki and the stored copy: ``timestamp``, ``level`` (lower case), ``event``,
``component``, ``correlation_id`` (null when none is bound) and, where known,
``user_id``, ``session_id``, ``connection_id``, ``client_ip``, ``user_agent``,
``duration_ms``. Stdlib records (uvicorn, SQLAlchemy, httpx, asyncio) come through
``ProcessorFormatter`` as ``event = "log.<logger name>"`` with their text in ``message``.

``configure_logging`` may be called again (tests do): loggers cached by structlog keep
working because the processor list, the output and the level filter are stable objects
whose contents are swapped, never replaced.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chatwatch.clock import Clock
from chatwatch.config import LoggingSettings
from chatwatch.observe.logs.redaction import Sanitizer

__all__ = [
    "LEVELS",
    "ChatwatchLogger",
    "LogMetrics",
    "add_secret",
    "configure_logging",
    "get_logger",
    "render_json",
    "reset_logging",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_METHOD_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
}
# Chatty at DEBUG, and some would log what must not be logged: websockets (and uvicorn's
# WebSocket protocol, which hands it the "uvicorn.error" logger) log every frame's text,
# hpack logs header values, aiosqlite logs statement parameters. Never below INFO.
# Start-up chatter (alembic lists a dozen plugins at INFO) that buries what matters.
_QUIET_LOGGERS = ("alembic",)
_CLAMPED_LOGGERS = (
    "aiosqlite",
    "asyncpg",
    "httpcore",
    "hpack",
    "websockets",
    "uvicorn.error",
    "multipart",
)
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

EventDict = MutableMapping[str, Any]
Sink = Callable[[dict[str, Any]], None]


class LogMetrics:
    """The log pipeline's Prometheus instruments, on a given registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.records = Counter(
            "chat_log_records_total", "Log records written, by level.", ["level"], registry=registry
        )
        self.dropped = Counter(
            "chat_log_records_dropped_total",
            "Log records written to stdout that did not reach the log store.",
            registry=registry,
        )
        self.shed = Counter(
            "chat_log_records_shed_total",
            "Log records dropped because the log store's queue was full, by the level of the"
            " record lost (the least valuable goes first; also in the dropped total).",
            ["level"],
            registry=registry,
        )
        self.stored = Counter(
            "chat_log_records_stored_total",
            "Log records written to the log store.",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "chat_log_store_queue_depth",
            "Log records waiting to be written to the log store.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.write_seconds = Histogram(
            "chat_log_store_write_seconds",
            "Time to write one batch of log records to the store.",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        # Children bound once: counting is on every record's path.
        self._by_level = {level: self.records.labels(level) for level in LEVELS}
        self._shed_by_level = {level: self.shed.labels(level) for level in LEVELS}

    def count(self, level: str) -> None:
        """Count one record at ``level``."""
        child = self._by_level.get(level)
        if child is not None:
            child.inc()

    def count_dropped(self, n: int = 1, *, level: str | None = None) -> None:
        """Count ``n`` records that will never be stored; ``level`` when the queue shed them."""
        self.dropped.inc(n)
        if level is not None:
            child = self._shed_by_level.get(level)
            if child is not None:
                child.inc(n)


class _State:
    """What the stable pipeline objects read on every record; swapped by configure."""

    def __init__(self) -> None:
        self.stream: BinaryIO | None = None
        self.min_level = 20
        self.sink: Sink | None = None
        self.metrics: LogMetrics | None = None
        self.sanitizer = Sanitizer()
        self.now: Callable[[], float] = time.time
        self.ts_cache: tuple[int, str] = (-1, "")


_STATE = _State()
_PROCESSORS: list[Any] = []
_WRITE_LOCK = threading.Lock()


class _Output:
    """The wrapped logger: writes one rendered record per line to the configured stream."""

    def msg(self, message: bytes | str) -> None:
        """Write ``message`` and a newline, flushed, without interleaving."""
        data = message.encode("utf-8", "replace") if isinstance(message, str) else message
        stream = _STATE.stream or sys.stdout.buffer
        with _WRITE_LOCK:
            stream.write(data + b"\n")
            stream.flush()

    debug = info = warning = warn = error = critical = fatal = exception = log = msg


_OUTPUT = _Output()


def _logger_factory(*_args: Any) -> _Output:
    return _OUTPUT


class ChatwatchLogger(structlog.BoundLoggerBase):
    """A bound logger whose level threshold follows ``configure_logging``.

    structlog's filtering loggers freeze the level into their class, which cached
    loggers would keep across reconfiguration; this one reads it on each call.
    """

    def _log(self, method: str, level: int, event: Any, args: tuple[Any, ...], kw: Any) -> Any:
        if level < _STATE.min_level:
            return None
        if args:
            event = event % args
        return self._proxy_to_logger(method, event, **kw)

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at DEBUG."""
        return self._log("debug", 10, event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at INFO."""
        return self._log("info", 20, event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at WARNING."""
        return self._log("warning", 30, event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR."""
        return self._log("error", 40, event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR with the exception being handled."""
        kw.setdefault("exc_info", True)
        return self._log("error", 40, event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at CRITICAL."""
        return self._log("critical", 50, event, args, kw)

    fatal = critical

    def log(self, level: int, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at a numeric stdlib level."""
        name = logging.getLevelName(level).lower()
        method = name if name in _LEVEL_NUMBERS else "info"
        return self._log(method, level, event, args, kw)

    # The async flavours of structlog's FilteringBoundLogger: logging never blocks on I/O
    # that matters here (a line to stdout, a deque append), so they just log.

    async def adebug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at DEBUG."""
        return self.debug(event, *args, **kw)

    async def ainfo(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at INFO."""
        return self.info(event, *args, **kw)

    async def awarning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at WARNING."""
        return self.warning(event, *args, **kw)

    async def aerror(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR."""
        return self.error(event, *args, **kw)

    async def aexception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at ERROR with the exception being handled."""
        return self.exception(event, *args, **kw)

    async def acritical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        """Log at CRITICAL."""
        return self.critical(event, *args, **kw)


def get_logger(component: str | None = None, **initial: Any) -> Any:
    """A logger whose records carry ``component`` (overriding the one bound in context)."""
    if component is not None:
        initial["component"] = component
    return structlog.get_logger(**initial)


def add_secret(value: str | None) -> None:
    """Redact this exact value (a configured token or key) from every record from now on."""
    _STATE.sanitizer.add_secret(value)


# --- processors ------------------------------------------------------------------------

# structlog keeps one ContextVar per bound key in this registry (since 21.1). Reading those
# directly is several times cheaper than iterating a copy of the whole context, which is
# what ``merge_contextvars`` does; the result is the same.
_CONTEXT_REGISTRY: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
_PREFIX_LEN = len(getattr(structlog.contextvars, "STRUCTLOG_KEY_PREFIX", "structlog_"))


def _merge_context(logger: Any, method: str, ed: EventDict) -> EventDict:
    registry = _CONTEXT_REGISTRY
    if registry is None:
        return structlog.contextvars.merge_contextvars(logger, method, ed)
    for name, var in list(registry.items()):
        value = var.get()
        if value is not Ellipsis:
            ed.setdefault(name[_PREFIX_LEN:], value)
    return ed


def _stamp(_logger: Any, method: str, ed: EventDict) -> EventDict:
    ed["level"] = _METHOD_LEVELS.get(method, "info")
    now = _STATE.now()
    sec = int(now)
    cached_sec, prefix = _STATE.ts_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _STATE.ts_cache = (sec, prefix)
    ed["timestamp"] = f"{prefix}.{int((now - sec) * 1_000_000):06d}Z"
    if "component" not in ed:
        ed["component"] = "app"
    if "correlation_id" not in ed:
        ed["correlation_id"] = None
    return ed


def _type_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _exception_fields(_logger: Any, _method: str, ed: EventDict) -> EventDict:
    if "exc_info" not in ed:
        return ed
    exc_info = ed.pop("exc_info")
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
        return ed
    cls, exc, tb = exc_info
    ed.setdefault("error.type", _type_name(cls))
    try:
        ed.setdefault("error.message", str(exc))
        ed["error.stack_trace"] = "".join(traceback.format_exception(cls, exc, tb))
    except Exception:  # a broken __str__ must not lose the record
        ed.setdefault("error.message", f"<unprintable {cls.__name__}>")
    return ed


def _emit(_logger: Any, _method: str, ed: EventDict) -> EventDict:
    state = _STATE
    if state.metrics is not None:
        state.metrics.count(ed["level"])
    skip_store = ed.pop("_skip_store", False)
    if state.sink is not None and not skip_store:
        try:
            state.sink(dict(ed))
        except Exception:  # the store is best effort; stdout still gets the record
            if state.metrics is not None:
                state.metrics.count_dropped()
    return ed


def render_json(_logger: Any, _method: str, ed: EventDict) -> bytes:
    """Render a record as one orjson line (no newline; the output adds it)."""
    try:
        return orjson.dumps(ed, default=str)
    except (TypeError, orjson.JSONEncodeError):
        # Only reachable if a processor before us let an odd value through.
        safe = {k: ed.get(k) for k in ("timestamp", "level", "event", "component")}
        safe["error.type"] = "log_render_failed"
        return orjson.dumps(safe, default=str)


def _render_json_text(logger: Any, method: str, ed: EventDict) -> str:
    return render_json(logger, method, ed).decode("utf-8")


def _stdlib_fields(_logger: Any, _method: str, ed: EventDict) -> EventDict:
    """Give a stdlib record our shape: event ``log.<name>``, text in ``message``."""
    record = ed.get("_record")
    name = record.name if isinstance(record, logging.LogRecord) else "stdlib"
    # uvicorn logs everything but access lines to "uvicorn.error", errors or not.
    name = "uvicorn" if name == "uvicorn.error" else name
    ed["message"] = ed.get("event")
    ed["event"] = f"log.{name}"
    ed["logger"] = name
    parts = name.split(".")
    if "component" not in ed:
        ed["component"] = parts[1] if parts[0] == "chatwatch" and len(parts) > 1 else parts[0]
    return ed


class _StdlibHandler(logging.Handler):
    """Writes formatted stdlib records to the same output as structlog's."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _OUTPUT.msg(self.format(record))
        except Exception:
            self.handleError(record)


# --- configuration ---------------------------------------------------------------------


def configure_logging(
    settings: LoggingSettings,
    *,
    sink: Sink | None = None,
    stream: BinaryIO | None = None,
    metrics: LogMetrics | None = None,
    clock: Clock | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog and the stdlib root logger; safe to call again."""
    state = _STATE
    state.stream = stream
    state.min_level = _LEVEL_NUMBERS[settings.level.lower()]
    state.sink = sink
    state.metrics = metrics
    state.now = clock.time if clock is not None else time.time
    state.ts_cache = (-1, "")
    state.sanitizer = Sanitizer()
    for secret in secrets:
        state.sanitizer.add_secret(secret)
    sanitizer = state.sanitizer
    if settings.format == "console":
        is_tty = bool(getattr(stream or sys.stdout, "isatty", lambda: False)())
        renderer: Any = structlog.dev.ConsoleRenderer(colors=is_tty, sort_keys=False)
        text_renderer: Any = renderer
    else:
        renderer, text_renderer = render_json, _render_json_text
    _PROCESSORS[:] = [
        _merge_context,
        _stamp,
        _exception_fields,
        sanitizer,
        _emit,
        renderer,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=ChatwatchLogger,
        logger_factory=_logger_factory,
        context_class=dict,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            _merge_context,
            _stdlib_fields,
            _stamp,
            _exception_fields,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            sanitizer,
            _emit,
            text_renderer,
        ],
    )
    _configure_stdlib(settings, formatter)


def reset_logging() -> None:
    """Undo ``configure_logging`` (tests): structlog's defaults, the root logger as it was."""
    state = _STATE
    state.stream, state.sink, state.metrics = None, None, None
    state.min_level = 20
    state.now = time.time
    state.sanitizer = Sanitizer()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(handler)
    if _SAVED_ROOT_LEVEL:
        root.setLevel(_SAVED_ROOT_LEVEL.pop())


_SAVED_ROOT_LEVEL: list[int] = []


def _configure_stdlib(settings: LoggingSettings, formatter: logging.Formatter) -> None:
    root = logging.getLogger()
    if not _SAVED_ROOT_LEVEL:
        _SAVED_ROOT_LEVEL.append(root.level)
    for handler in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(handler)
    handler = _StdlibHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    level = _LEVEL_NUMBERS[settings.level.lower()]
    root.setLevel(level)
    for name in _CLAMPED_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # uvicorn's own logging config gives these handlers and stops propagation; we want
    # them in our pipeline (uvicorn is run with log_config=None, this covers the rest).
    for name in _UVICORN_LOGGERS:
        log = logging.getLogger(name)
        for h in list(log.handlers):
            log.removeHandler(h)
        log.propagate = True
