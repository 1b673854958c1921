"""The logging pipeline: record shape, context, stdlib records, store hand-off, metrics."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import structlog

from chatwatch.clock import FakeClock
from chatwatch.observe.context import (
    background_job,
    bind_connection,
    bind_message,
    clear_context,
    current_correlation_id,
    start_background_job,
)
from chatwatch.observe.logs.pipeline import get_logger
from tests.observe.logcapture import capture_logging

REQUIRED = ("timestamp", "level", "event", "component", "correlation_id")


def test_record_has_the_spec_fields() -> None:
    """Every record carries timestamp (RFC 3339 UTC), level, event, component, correlation_id."""
    clock = FakeClock(start=1_800_000_000.25)
    with capture_logging(clock=clock) as cap:
        get_logger().info("connection.opened")
    (record,) = cap.lines()
    assert all(key in record for key in REQUIRED)
    assert record["timestamp"] == "2027-01-15T08:00:00.250000Z"
    assert datetime.fromisoformat(record["timestamp"]).tzinfo == UTC
    assert (record["level"], record["event"], record["component"]) == (
        "info",
        "connection.opened",
        "app",
    )
    assert record["correlation_id"] is None


def test_bound_context_reaches_every_record() -> None:
    """Connection and message identity bound in contextvars appear on each record."""
    with capture_logging() as cap:
        bind_connection(
            connection_id="c-1",
            user_id="u-1",
            session_id="s-1",
            client_ip="203.0.113.9",
            user_agent="pytest-agent",
        )
        bind_message("corr-42")
        get_logger().info("message.received")
        get_logger().warning("message.rejected")
    for record in cap.lines():
        assert record["connection_id"] == "c-1"
        assert record["user_id"] == "u-1"
        assert record["session_id"] == "s-1"
        assert record["client_ip"] == "203.0.113.9"
        assert record["user_agent"] == "pytest-agent"
        assert record["component"] == "chat"
        assert record["correlation_id"] == "corr-42"


def test_clear_context_forgets_the_previous_request() -> None:
    """After clear_context a record carries nothing of the earlier binding."""
    with capture_logging() as cap:
        bind_message("old-id")
        clear_context()
        get_logger().info("http.request")
    (record,) = cap.lines()
    assert record["correlation_id"] is None
    assert current_correlation_id() is None


def test_logger_component_overrides_the_bound_one() -> None:
    """A logger made with a component names it, whatever the context says."""
    with capture_logging() as cap:
        bind_connection(
            connection_id="c", user_id="u", session_id="s", client_ip="ip", user_agent="ua"
        )
        get_logger("logstore").info("logstore.started")
    assert cap.lines()[0]["component"] == "logstore"


def test_background_job_gets_its_own_correlation_id_and_restores() -> None:
    """A background job runs under a fresh id and the caller's context comes back after."""
    with capture_logging() as cap:
        bind_message("request-id")
        with background_job("alerts") as job_id:
            get_logger().info("alert.checked")
        get_logger().info("http.request")
    job, after = cap.lines()
    assert job["correlation_id"] == job_id != "request-id"
    assert job["component"] == "alerts"
    assert after["correlation_id"] == "request-id"


def test_start_background_job_clears_request_identity() -> None:
    """A job started in a request's context does not inherit its user or connection."""
    with capture_logging() as cap:
        bind_connection(
            connection_id="c", user_id="u", session_id="s", client_ip="ip", user_agent="ua"
        )
        start_background_job("metrics")
        get_logger().info("metrics.snapshot")
    record = cap.lines()[0]
    assert "user_id" not in record
    assert record["component"] == "metrics"


def test_exception_becomes_error_fields() -> None:
    """A logged exception gives error.type, error.message and error.stack_trace."""
    with capture_logging() as cap:
        try:
            raise KeyError("missing-key")
        except KeyError:
            get_logger().exception("error.unhandled")
    (record,) = cap.lines()
    assert record["level"] == "error"
    assert record["error.type"] == "KeyError"
    assert record["error.message"] == "'missing-key'"
    assert "Traceback (most recent call last)" in record["error.stack_trace"]
    assert "exc_info" not in record


def test_exception_instance_as_exc_info_is_rendered() -> None:
    """exc_info may be the exception itself; its module-qualified type is recorded."""
    with capture_logging() as cap:
        get_logger().error("error.unhandled", exc_info=TimeoutError("slow"))
    assert cap.lines()[0]["error.type"] == "TimeoutError"


def test_stdlib_records_have_the_same_shape() -> None:
    """A stdlib logger's record comes out as JSON with our fields and its text in message."""
    with capture_logging() as cap:
        bind_message("corr-std")
        logging.getLogger("httpx").info("HTTP Request: %s %s", "POST", "http://x/v1/chat")
    (record,) = cap.lines()
    assert all(key in record for key in REQUIRED)
    assert record["event"] == "log.httpx"
    assert record["message"] == "HTTP Request: POST http://x/v1/chat"
    assert record["correlation_id"] == "corr-std"
    assert record["level"] == "info"


def test_stdlib_exception_has_error_fields() -> None:
    """A stdlib ``logger.exception`` gives the same error fields as ours."""
    with capture_logging() as cap:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
    record = cap.lines()[0]
    assert record["error.type"] == "ZeroDivisionError"
    assert "1 / 0" in record["error.stack_trace"]


def test_uvicorn_loggers_propagate_into_the_pipeline() -> None:
    """uvicorn's own handlers are removed so its records reach our output."""
    logging.getLogger("uvicorn.error").addHandler(logging.NullHandler())
    logging.getLogger("uvicorn.error").propagate = False
    with capture_logging() as cap:
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    assert cap.lines()[0]["event"] == "log.uvicorn"
    assert logging.getLogger("uvicorn.error").handlers == []


def test_stdlib_chatwatch_logger_component_is_its_package() -> None:
    """A stdlib logger under chatwatch names its subpackage as the component."""
    with capture_logging() as cap:
        logging.getLogger("chatwatch.chat.pricing").warning("unknown model")
    assert cap.lines()[0]["component"] == "chat"


def test_level_threshold_applies_to_cached_loggers_after_reconfigure() -> None:
    """A logger cached at INFO logs DEBUG once logging is reconfigured at DEBUG."""
    log = get_logger()
    with capture_logging(level="INFO") as cap:
        log.debug("cache.lookup")
        log.info("first")
    assert [r["event"] for r in cap.lines()] == ["first"]
    with capture_logging(level="DEBUG") as cap:
        log.debug("cache.lookup")
    assert [r["event"] for r in cap.lines()] == ["cache.lookup"]


def test_reconfigure_redirects_a_cached_logger() -> None:
    """A logger used before a reconfiguration writes to the new stream afterwards."""
    log = structlog.get_logger()
    with capture_logging() as first:
        log.info("one")
    with capture_logging() as second:
        log.info("two")
    assert [r["event"] for r in first.lines()] == ["one"]
    assert [r["event"] for r in second.lines()] == ["two"]


def test_sink_gets_a_copy_of_each_record() -> None:
    """The store hand-off gets the same record as stdout, as a separate dict."""
    with capture_logging() as cap:
        get_logger().info("message.sent", type="ack")
    assert cap.stored == cap.lines()
    assert cap.stored[0]["type"] == "ack"


def test_records_are_counted_by_level() -> None:
    """chat_log_records_total counts each record under its level."""
    with capture_logging() as cap:
        log = get_logger()
        log.info("a")
        log.info("b")
        log.error("c")
        logging.getLogger("x").warning("d")
    assert cap.sample("chat_log_records_total", {"level": "info"}) == 2
    assert cap.sample("chat_log_records_total", {"level": "error"}) == 1
    assert cap.sample("chat_log_records_total", {"level": "warning"}) == 1


def test_a_failing_sink_loses_no_stdout_record_and_counts_a_drop() -> None:
    """When the store hand-off raises, stdout still gets the record and a drop is counted."""

    def broken(_record: dict[str, object]) -> None:
        raise RuntimeError("store gone")

    with capture_logging(sink=broken) as cap:
        get_logger().info("message.sent")
    assert [r["event"] for r in cap.lines()] == ["message.sent"]
    assert cap.sample("chat_log_records_dropped_total") == 1


def test_skip_store_records_reach_stdout_only() -> None:
    """A record flagged _skip_store (the store's own failures) is not fed back to it."""
    with capture_logging() as cap:
        get_logger().error("logstore.write_failed", _skip_store=True)
    assert cap.stored == []
    assert cap.lines()[0]["event"] == "logstore.write_failed"
    assert "_skip_store" not in cap.lines()[0]


def test_one_record_per_line_despite_injection() -> None:
    """Newlines, ANSI escapes and a 1 MB string stay in one bounded line."""
    evil = 'line1\nFAKE {"level": "critical"}\r\n\x1b[31mred\x1b[0m\u202e' + "A" * 1_000_000
    with capture_logging() as cap:
        get_logger().info("message.rejected", detail=evil)
    raw_lines = cap.stream.getvalue().splitlines()
    assert len(raw_lines) == 1
    assert len(raw_lines[0]) < 20_000
    record = cap.lines()[0]
    assert "\n" not in record["detail"] and "\x1b" not in record["detail"]
    assert record["detail"].startswith("line1\\nFAKE")
    assert "\\x1b[31m" in record["detail"]
    assert "truncated" in record["detail"]
    assert len(cap.stored[0]["detail"]) < 20_000


def test_console_format_is_one_readable_line() -> None:
    """format=console renders a human line with the event, not JSON."""
    with capture_logging(format="console") as cap:
        get_logger().info("connection.opened", detail="a\nb")
    text = cap.text
    assert text.count("\n") == 1
    assert "connection.opened" in text
    assert not text.startswith("{")


def test_logging_from_threads_keeps_lines_whole() -> None:
    """Records written concurrently from threads never interleave within a line."""
    with capture_logging() as cap:

        def work(n: int) -> None:
            for i in range(200):
                get_logger().info("thread.work", n=n, i=i, pad="x" * 300)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(cap.lines()) == 800


async def test_async_methods_log_like_the_sync_ones() -> None:
    """ainfo/aexception log the same records as info/exception."""
    with capture_logging() as cap:
        log = get_logger()
        await log.ainfo("async.info", n=1)
        try:
            raise ValueError("x")
        except ValueError:
            await log.aexception("async.error")
    info, error = cap.lines()
    assert (info["event"], info["n"], info["level"]) == ("async.info", 1, "info")
    assert (error["level"], error["error.type"]) == ("error", "ValueError")


def test_percent_args_are_formatted() -> None:
    """Positional args format the event like the stdlib does."""
    with capture_logging() as cap:
        get_logger().info("hello %s", "world")
    assert cap.lines()[0]["event"] == "hello world"
