"""The circuit breaker on a fake clock (no sleeping) and the retry policy's arithmetic."""

from __future__ import annotations

import pytest

from chatwatch.chat.providers.base import AIProviderError
from chatwatch.chat.resilience import CircuitBreaker, CircuitState, RetryPolicy
from chatwatch.clock import FakeClock
from chatwatch.events import AICircuitChanged, Event, EventBus

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, events: list[Event]) -> CircuitBreaker:
    bus = EventBus()
    bus.subscribe_all(events.append)
    return CircuitBreaker(failures=3, cooloff=30.0, clock=clock, bus=bus, provider="openai")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = breaker.acquire()
        assert permit is not None
        breaker.failed(permit)


def changes(events: list[Event]) -> list[tuple[str, str, int, float]]:
    return [
        (e.previous, e.state, e.consecutive_failures, e.open_for_s)
        for e in events
        if isinstance(e, AICircuitChanged)
    ]


def test_fewer_failures_than_the_threshold_keep_it_closed(
    breaker: CircuitBreaker, events: list[Event]
) -> None:
    """Two failures of three allowed: still closed, no event, calls still admitted."""
    fail(breaker, 2)
    assert (breaker.state, breaker.consecutive_failures, events, breaker.acquire() is None) == (
        CLOSED,
        2,
        [],
        False,
    )


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    """Failures must be consecutive: fail, fail, succeed, fail, fail leaves it closed."""
    fail(breaker, 2)
    permit = breaker.acquire()
    assert permit is not None
    breaker.succeeded(permit)
    fail(breaker, 2)
    assert (breaker.state, breaker.consecutive_failures) == (CLOSED, 2)


def test_threshold_failures_open_it_and_calls_fail_fast(
    breaker: CircuitBreaker, events: list[Event], clock: FakeClock
) -> None:
    """The third failure opens it (one event); until the cool-off passes, no call is admitted."""
    fail(breaker, 3)
    refused = [breaker.acquire() for _ in range(5)]
    clock.advance(29.9)
    assert (
        breaker.state,
        refused,
        breaker.acquire(),
        round(breaker.retry_in(), 3),
        changes(events),
        events[0],
    ) == (
        OPEN,
        [None] * 5,
        None,
        0.1,
        [("closed", "open", 3, 30.0)],
        AICircuitChanged("openai", "open", "closed", 3, 30.0),
    )


def test_after_the_cooloff_exactly_one_probe_goes(
    breaker: CircuitBreaker, events: list[Event], clock: FakeClock
) -> None:
    """Past the cool-off the next call is the probe (half_open); calls during it fail fast."""
    fail(breaker, 3)
    clock.advance(30)
    probe = breaker.acquire()
    during = [breaker.acquire() for _ in range(3)]
    assert (probe is not None and probe.probe, during, breaker.state, changes(events)[-1]) == (
        True,
        [None] * 3,
        HALF_OPEN,
        ("open", "half_open", 3, 0.0),
    )


def test_probe_success_closes_it(
    breaker: CircuitBreaker, events: list[Event], clock: FakeClock
) -> None:
    """A successful probe closes the circuit and calls flow again."""
    fail(breaker, 3)
    clock.advance(30)
    probe = breaker.acquire()
    assert probe is not None
    breaker.succeeded(probe)
    after = breaker.acquire()
    assert (
        breaker.state,
        breaker.consecutive_failures,
        after is not None and not after.probe,
        [c[:2] for c in changes(events)],
    ) == (
        CLOSED,
        0,
        True,
        [("closed", "open"), ("open", "half_open"), ("half_open", "closed")],
    )


def test_probe_failure_reopens_it_for_a_new_cooloff(
    breaker: CircuitBreaker, events: list[Event], clock: FakeClock
) -> None:
    """A failed probe opens the circuit again; the cool-off counts from that failure."""
    fail(breaker, 3)
    clock.advance(30)
    probe = breaker.acquire()
    assert probe is not None
    clock.advance(5)  # the probe took a while
    breaker.failed(probe)
    clock.advance(29)
    still_refused = breaker.acquire()
    clock.advance(1)
    next_probe = breaker.acquire()
    assert (
        still_refused,
        next_probe is not None and next_probe.probe,
        [c[:2] for c in changes(events)],
    ) == (
        None,
        True,
        [("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("open", "half_open")],
    )


def test_cancelled_probe_is_no_verdict(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """A probe released without a verdict (the visitor left) lets the next call probe."""
    fail(breaker, 3)
    clock.advance(30)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    again = breaker.acquire()
    assert (breaker.state, again is not None and again.probe) == (HALF_OPEN, True)


def test_cancelled_calls_do_not_count_as_failures(breaker: CircuitBreaker) -> None:
    """Ten calls released without a verdict leave the circuit closed with no failures."""
    for _ in range(10):
        permit = breaker.acquire()
        assert permit is not None
        breaker.release(permit)
    assert (breaker.state, breaker.consecutive_failures) == (CLOSED, 0)


def test_verdicts_from_before_a_transition_are_ignored(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """Calls admitted while closed that end after the circuit opened change nothing:
    a late success does not close it, a late failure does not restart the cool-off."""
    slow_ok, slow_bad = breaker.acquire(), breaker.acquire()
    assert slow_ok is not None and slow_bad is not None
    fail(breaker, 3)
    clock.advance(20)
    breaker.succeeded(slow_ok)
    breaker.failed(slow_bad)
    state_after_late_verdicts = breaker.state
    clock.advance(10)
    assert (state_after_late_verdicts, breaker.acquire() is not None) == (OPEN, True)


def test_a_verdict_counts_once(breaker: CircuitBreaker) -> None:
    """Reporting the same permit failed three times is one failure."""
    permit = breaker.acquire()
    assert permit is not None
    for _ in range(3):
        breaker.failed(permit)
    assert (breaker.state, breaker.consecutive_failures) == (CLOSED, 1)


def test_breaker_refuses_nonsense_settings(clock: FakeClock) -> None:
    """A threshold below 1 or a negative cool-off is a programming error."""
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0, cooloff=1, clock=clock)
    with pytest.raises(ValueError):
        CircuitBreaker(failures=1, cooloff=-1, clock=clock)


# --- the retry policy --------------------------------------------------------------------


def retryable(retry_after: float | None = None) -> AIProviderError:
    return AIProviderError("HTTP 503", retryable=True, retry_after=retry_after)


@pytest.mark.parametrize(("rand", "delay"), [(0.0, 0.125), (1.0, 0.25), (0.5, 0.1875)])
def test_first_retry_waits_a_jittered_base_delay(rand: float, delay: float) -> None:
    """The first retry waits 50-100 % of the 0.25 s base, by the random draw."""
    policy = RetryPolicy(attempts=1, base_delay=0.25, rand=lambda: rand)
    assert policy.delay(1, retryable(), remaining=10) == pytest.approx(delay)


def test_later_retries_back_off() -> None:
    """The second retry's delay doubles the first's."""
    policy = RetryPolicy(attempts=2, base_delay=0.25, rand=lambda: 1.0)
    assert (policy.delay(1, retryable(), 10), policy.delay(2, retryable(), 10)) == (0.25, 0.5)


def test_no_retry_past_the_attempts_or_for_other_failures() -> None:
    """Retry 2 of 1 allowed, a non-retryable failure and attempts=0 all give None."""
    one = RetryPolicy(attempts=1)
    assert (
        one.delay(2, retryable(), 10),
        one.delay(1, AIProviderError("HTTP 400"), 10),
        RetryPolicy(attempts=0).delay(1, retryable(), 10),
    ) == (None, None, None)


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """Retry-After 2 s waits at least 2 s; 6 s is over the 5 s cap, so no retry at all."""
    policy = RetryPolicy(attempts=1, base_delay=0.25, max_retry_after=5.0, rand=lambda: 0.0)
    assert (policy.delay(1, retryable(2.0), 10), policy.delay(1, retryable(6.0), 10)) == (
        pytest.approx(2.0625),
        None,
    )


def test_no_retry_when_the_deadline_leaves_no_room() -> None:
    """A 2 s wait with 2.2 s left of the call would leave no time to answer: no retry."""
    policy = RetryPolicy(attempts=1, rand=lambda: 0.0)
    assert (policy.delay(1, retryable(2.0), 2.2), policy.delay(1, retryable(), 0.3)) == (
        None,
        None,
    )
