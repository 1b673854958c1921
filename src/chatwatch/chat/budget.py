"""The daily AI budget: today's (UTC) spend against ``ai.daily_budget_usd``.

Spend is the sum of completed replies' ``cost_usd``. The first check of a process reads
what today's stored messages already cost, so a restart keeps the figure; after that the
process adds its own replies. Past the budget, AI calls stop until the next UTC day.

Limits, stated: each process counts only the spend it saw (plus the stored figure at its
start), so several workers together can overshoot by what the others spent since; and
replies already under way when the budget runs out still finish and count.
"""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

from chatwatch.clock import Clock
from chatwatch.events import AIBudgetChanged, ErrorOccurred, EventBus
from chatwatch.vocabulary import ErrorType

__all__ = ["BudgetState", "DailyBudget", "SpendLoader", "utc_day_bounds"]

# (day start, next day start) in epoch seconds -> what that day's stored replies cost.
SpendLoader = Callable[[float, float], Awaitable[float]]


class BudgetState(StrEnum):
    """Where today's spend stands."""

    OK = "ok"
    WARNING = "warning"
    EXHAUSTED = "exhausted"


def utc_day_bounds(epoch: float) -> tuple[str, float, float]:
    """The UTC day holding ``epoch``: its name (YYYY-MM-DD), start and next day's start."""
    day = datetime.fromtimestamp(epoch, UTC).date()
    start = float(calendar.timegm(day.timetuple()))
    return day.isoformat(), start, start + 86400.0


class DailyBudget:
    """Allows AI calls while today's spend is under the limit; reports the marks it crosses."""

    def __init__(
        self,
        limit_usd: float,
        clock: Clock,
        bus: EventBus,
        *,
        warning_ratio: float = 0.8,
        load_spent: SpendLoader | None = None,
    ) -> None:
        if limit_usd < 0:
            raise ValueError("limit_usd cannot be negative")
        if not 0 < warning_ratio <= 1:
            raise ValueError("warning_ratio must be in (0, 1]")
        self.limit_usd = limit_usd
        self._clock = clock
        self._bus = bus
        self._warning_ratio = warning_ratio
        self._load_spent = load_spent
        self._loaded = load_spent is None
        self._lock = asyncio.Lock()
        self._day, self._start, self._end = utc_day_bounds(clock.time())
        self._spent = 0.0
        self._state = BudgetState.OK

    @property
    def spent_usd(self) -> float:
        """What today's replies cost so far, as this process knows it."""
        return self._spent

    @property
    def state(self) -> BudgetState:
        """ok, warning or exhausted, for today."""
        return self._state

    @property
    def day(self) -> str:
        """The UTC day the figures are for (YYYY-MM-DD)."""
        return self._day

    async def allows(self) -> bool:
        """True while an AI call may start: today's spend is under the limit."""
        if not self._loaded:
            await self._load()
        self._roll()
        return self._spent < self.limit_usd

    def spend(self, cost_usd: float) -> None:
        """Add a completed reply's cost to today's spend."""
        self._roll()
        if cost_usd > 0:
            self._spent += cost_usd
        self._mark()

    async def _load(self) -> None:
        async with self._lock:
            if self._loaded or self._load_spent is None:
                return
            day, start, end = utc_day_bounds(self._clock.time())
            try:
                stored = await self._load_spent(start, end)
            except Exception as exc:
                # Fail open: a store that cannot be read must not silence the consultant.
                self._bus.emit(
                    ErrorOccurred(
                        type=ErrorType.SYSTEM,
                        code="ai_budget_load_failed",
                        detail="could not read today's stored AI spend; counting from 0",
                        exception=exc,
                    )
                )
                stored = 0.0
            self._loaded = True
            if day == self._day:
                self._spent += max(0.0, stored)
            else:
                self._day, self._start, self._end = day, start, end
                self._spent = max(0.0, stored)
            self._mark()

    def _roll(self) -> None:
        """Start a new day's count once the UTC day has changed."""
        now = self._clock.time()
        if self._start <= now < self._end:
            return
        self._day, self._start, self._end = utc_day_bounds(now)
        self._spent = 0.0
        self._state = BudgetState.OK
        self._emit("reset")

    def _mark(self) -> None:
        """Report each mark (warning, exhausted) the first time today's spend reaches it."""
        if self._state is BudgetState.OK and self._spent >= self.limit_usd * self._warning_ratio:
            self._state = BudgetState.WARNING
            self._emit("warning")
        if self._state is BudgetState.WARNING and self._spent >= self.limit_usd:
            self._state = BudgetState.EXHAUSTED
            self._emit("exhausted")

    def _emit(self, state: str) -> None:
        self._bus.emit(
            AIBudgetChanged(
                state=state, spent_usd=self._spent, budget_usd=self.limit_usd, day=self._day
            )
        )
