"""Signals read from the database, not the in-process metrics: AI spend, SLO burn rates.

Spend comes from each stored reply's ``cost_usd``, so it survives restarts and counts the
replies of every node. The query runs at most once per ``max_age`` (the evaluation
interval), before the engine reads, and never on the chat path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from chatwatch.alerts.rules import SLO_SIGNAL, Rule
from chatwatch.alerts.signals_port import SIGNALS, Series, SignalReading, StaticReading
from chatwatch.alerts.slo import burn_series, window_counts, windows_needed
from chatwatch.clock import Clock
from chatwatch.observe.logs import get_logger
from chatwatch.store.db import Database
from chatwatch.store.spend import TOP_USERS, SpendByUser, spend_by_user

__all__ = ["AI_COST_SIGNAL", "StaticSource", "StoredSignalsSource"]

AI_COST_SIGNAL = "ai_cost_usd_24h"
DAY = 86_400.0
_log = get_logger("alerts")


class StaticSource(Protocol):
    """A source whose readings can be amended (``SignalsSource``, ``WatcherSource``)."""

    def read(self) -> SignalReading:
        """A reading taken now."""
        ...


class StoredSignalsSource:
    """``inner``'s signals with ``ai_cost_usd_24h`` (total and per ``user_id``) from the store."""

    def __init__(
        self,
        inner: StaticSource,
        db: Database,
        clock: Clock,
        *,
        max_age: float,
        limit: int = TOP_USERS,
    ) -> None:
        self.inner = inner
        self.db = db
        self.clock = clock
        self.max_age = max_age
        self.limit = limit
        self.queries = 0
        self._spend: SpendByUser | None = None
        self._slo: list[Series] = []
        self._at: float | None = None
        # The engine's rules (set once it is built): its SLO rules need burn rates.
        self.rules: Callable[[], Sequence[Rule]] = tuple

    async def refresh(self) -> None:
        """Refresh the inner source, then query the store unless the cache is fresh."""
        inner_refresh = getattr(self.inner, "refresh", None)
        if inner_refresh is not None:
            await inner_refresh()
        rules = [r for r in self.rules() if r.enabled]
        now = self.clock.time()
        if self._at is not None and 0 <= now - self._at < self.max_age:
            return
        try:
            spend = await spend_by_user(self.db, now - DAY, now, self.limit)
            counts = await window_counts(self.db, now, windows_needed(rules))
        except Exception:
            # A failed query must not stop the in-process signals from being evaluated:
            # the stored signals go to no data until the next interval's query succeeds.
            _log.exception("error.alert_stored_signals", component="alerts")
            self._spend, self._slo, self._at = None, [], now
            return
        self._spend = spend
        self._slo = burn_series(rules, counts)
        self._at = now
        self.queries += 1

    def read(self) -> StaticReading:
        """The inner reading, its AI spend replaced by the stored one (once refreshed)."""
        inner = self.inner.read()
        reading = inner if isinstance(inner, StaticReading) else _copy(inner)
        spend = self._spend
        if spend is not None:
            rows = [Series({}, spend.total)]
            rows += [Series({"user_id": user}, cost) for user, cost in spend.users]
            reading.data[AI_COST_SIGNAL] = rows
        reading.data[SLO_SIGNAL] = list(self._slo)
        return reading


def _copy(reading: SignalReading) -> StaticReading:
    """A reading of another shape as a ``StaticReading`` (the catalogue's signals)."""
    out = StaticReading()
    for name in SIGNALS:
        rows = list(reading.series(name))
        if rows:
            out.data[name] = rows
    return out
