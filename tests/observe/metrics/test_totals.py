"""Typed totals: every figure is a field, so a misspelt one fails loudly instead of reading 0."""

from __future__ import annotations

import dataclasses

import pytest

from chatwatch.events import EventBus
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.metrics.totals import ModelTotals, Totals
from tests.observe import factory as f


def test_a_misspelt_figure_is_an_error_not_a_zero(bus: EventBus, metrics: ChatMetrics):
    """Reading a figure that does not exist raises; the old string keys read back 0.0.

    Tried: ``"messages.recieved"``, which ``totals.get(k, 0.0)`` used to answer with 0.
    """
    bus.emit(f.received())
    totals = metrics.read().totals
    assert totals.messages_received == 1
    with pytest.raises(AttributeError):
        _ = totals.messages_recieved  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        totals.messages_received = 5  # type: ignore[misc]


def test_minus_plus_and_scaled_work_field_by_field():
    """Growth, sums and rates apply to every field, label maps and per-model figures too."""
    later = Totals(
        messages_received=10,
        errors_by_type={"system": 3.0, "timeout": 1.0},
        ai_by_model={"m": ModelTotals(requests=4, cost_usd=0.5)},
    )
    earlier = Totals(messages_received=4, errors_by_type={"system": 1.0})
    growth = later.minus(earlier)
    assert growth.messages_received == 6
    assert growth.errors_by_type == {"system": 2.0, "timeout": 1.0}  # unseen earlier: from 0
    assert growth.ai_by_model == {"m": ModelTotals(requests=4, cost_usd=0.5)}
    assert growth.scaled(0.5).messages_received == 3
    assert earlier.plus(growth) == later


def test_totals_follow_every_event_family(bus: EventBus, metrics: ChatMetrics):
    """The totals read back what the counters hold, by typed field."""
    bus.emit(f.received())
    bus.emit(f.processed())
    bus.emit(f.processed(ok=False))
    bus.emit(f.ai_done(tokens=(7, 3), cost=0.25))
    bus.emit(f.ai_done("other-model", tokens=(1, 1), cost=0.5))
    bus.emit(f.ai_failed("timeout"))
    t = metrics.read().totals
    assert (t.messages_received, t.messages_handled, t.messages_handled_ok) == (1, 2, 1)
    assert (t.ai_requests, t.ai_failed) == (3, 1)
    assert (t.ai_tokens_input, t.ai_tokens_output, t.ai_cost_usd) == (8, 4, 0.75)
    assert t.ai_by_model["gpt-4o-mini"] == ModelTotals(2, 7, 3, 0.25)
    assert t.ai_by_outcome["timeout"] == 1 and t.ai_by_outcome["success"] == 2
