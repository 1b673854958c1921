"""SLO burn rates from the stored metrics history (Google SRE workbook, multi-window).

Each history row's ``interval`` object holds the counts of handled messages and service
failures of its interval; a window's error ratio is the sum of failures over the sum of
handled messages of the rows inside it. The burn rate is that ratio over the error budget
(``1 - objective``). A pair fires only when both its long and its short window burn faster
than its factor; a window without handled messages is no data (neither fires nor resolves).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from chatwatch.alerts.rules import Rule, RuleKind, Severity
from chatwatch.alerts.signals_port import Series
from chatwatch.store.db import Database
from chatwatch.store.tables import metrics_history

__all__ = ["BURN_PAIRS", "BurnPair", "Counts", "burn_series", "window_counts"]


@dataclass(frozen=True, slots=True)
class BurnPair:
    """A long and a short window (seconds) that must both burn faster than ``factor``."""

    label: str
    long_s: float
    short_s: float
    factor: float
    severity: Severity


BURN_PAIRS: tuple[BurnPair, ...] = (
    BurnPair("1h/5m", 3600.0, 300.0, 14.4, Severity.CRITICAL),
    BurnPair("6h/30m", 21600.0, 1800.0, 6.0, Severity.HIGH),
)
SEVERITY_OF_BURN = {p.label: p.severity for p in BURN_PAIRS}


@dataclass(frozen=True, slots=True)
class Counts:
    """Handled messages and service failures over one window."""

    handled: int = 0
    failures: int = 0


async def window_counts(db: Database, now: float, windows: Iterable[float]) -> dict[float, Counts]:
    """Summed interval counts of the history rows in ``(now - w, now]`` for each window ``w``."""
    spans = sorted(set(windows))
    if not spans:
        return {}
    t = metrics_history.c
    query = select(t.timestamp, t.data).where(t.timestamp > now - spans[-1], t.timestamp <= now)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    handled = dict.fromkeys(spans, 0)
    failures = dict.fromkeys(spans, 0)
    for timestamp, data in rows:
        interval = json.loads(data).get("interval") or {}
        h = int(interval.get("handled_messages") or 0)
        f = int(interval.get("service_failures") or 0)
        for span in spans:
            if timestamp > now - span:
                handled[span] += h
                failures[span] += f
    return {s: Counts(handled[s], failures[s]) for s in spans}


def _burn(counts: Counts, budget: float) -> float | None:
    if counts.handled <= 0:
        return None
    return counts.failures / counts.handled / budget


def burn_series(rules: Sequence[Rule], counts: dict[float, Counts]) -> list[Series]:
    """One series per SLO rule and pair: ``min(long, short burn) / factor``, None for no data."""
    out = []
    for rule in rules:
        if rule.kind is not RuleKind.SLO or rule.objective is None:
            continue
        budget = 1.0 - rule.objective
        for pair in BURN_PAIRS:
            long_burn = _burn(counts.get(pair.long_s, Counts()), budget)
            short_burn = _burn(counts.get(pair.short_s, Counts()), budget)
            value = (
                None
                if long_burn is None or short_burn is None
                else min(long_burn, short_burn) / pair.factor
            )
            out.append(Series({"slo": rule.name, "burn": pair.label}, value))
    return out


def windows_needed(rules: Sequence[Rule]) -> list[float]:
    """The windows to sum for ``rules`` (none without an SLO rule)."""
    if not any(r.kind is RuleKind.SLO for r in rules):
        return []
    return [w for p in BURN_PAIRS for w in (p.long_s, p.short_s)]


def retention_warnings(rules: Sequence[Rule], retention: float) -> list[str]:
    """Why stored history is too short for an SLO rule (empty when it is long enough)."""
    out = []
    longest_pair = max(p.long_s for p in BURN_PAIRS)
    for rule in rules:
        if rule.kind is not RuleKind.SLO or not rule.enabled:
            continue
        window = rule.window_s or 0.0
        if retention < longest_pair:
            out.append(
                f"{rule.name}: metrics.history_retention {retention:g}s is shorter than the "
                f"{longest_pair:g}s burn-rate window; its alerts see only the retained part"
            )
        elif retention < window:
            out.append(
                f"{rule.name}: its {window:g}s objective window is longer than "
                f"metrics.history_retention ({retention:g}s); burn-rate alerts need only "
                f"{longest_pair:g}s, but the whole window's budget cannot be read from history"
            )
    return out
