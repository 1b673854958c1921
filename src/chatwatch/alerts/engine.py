"""The alert engine: rules over signal readings → alerts → grouped notifications.

Each evaluation reads the signals once and walks the enabled rules (yielding to the
event loop every ``CHUNK`` rules). Per rule and signal label set there is at most one
active alert:

* no alert and the condition holds → ``pending`` (``firing`` at once when ``for`` is 0s);
* ``pending`` → ``firing`` once the condition held for ``for``; a pending alert whose
  condition clears never fired and is dropped (``inactive``);
* ``firing`` → ``resolved`` when the value clears (past ``resolve_threshold`` if set);
* no data (None, or fewer events than ``min_samples``) changes nothing. For ``count``
  signals a label set that vanished from the reading counted zero events: that is data.

Notifications: an alert needs one when it fires, when it resolves after a firing
notification, again after ``cooldown`` while it keeps firing, and once more to the
escalation channels when it is critical and not acknowledged within ``escalate_after``.
Needs are grouped per rule; a group goes out ``group_wait`` after it first had one, as one
notification per channel, stored in the outbox in the same transaction that marks the
alerts notified (so a restart neither loses nor repeats it). Silenced alerts wait: a
firing one is notified when its silence ends, if still firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from chatwatch.alerts.channels.base import Channel
from chatwatch.alerts.notification import (
    AlertView,
    Notification,
    NotificationKind,
    new_notification_id,
)
from chatwatch.alerts.outbox import Dispatcher
from chatwatch.alerts.rules import (
    SLO_SIGNAL,
    AlertType,
    Rule,
    RuleError,
    RuleKind,
    RuleSource,
    Severity,
    build_rule,
)
from chatwatch.alerts.signals_port import (
    SIGNALS,
    WATCHDOG_SIGNAL,
    SignalKind,
    SignalReading,
    SignalSource,
)
from chatwatch.alerts.silences import Silence, parse_matchers, parse_time_value
from chatwatch.alerts.slo import SEVERITY_OF_BURN
from chatwatch.alerts.state import Alert, AlertState, Notified, fingerprint
from chatwatch.alerts.store import AlertStore, NameTaken
from chatwatch.clock import Clock
from chatwatch.observe.context import background_job
from chatwatch.observe.logs.pipeline import get_logger
from chatwatch.timefmt import format_time as iso_time

__all__ = [
    "CHUNK",
    "ActiveCounter",
    "AlertConflict",
    "AlertEngine",
    "AlertNotFound",
    "EngineOptions",
]

CHUNK = 50  # rules evaluated between two yields to the event loop
_SEVERITIES = tuple(s.value for s in Severity)
_log = get_logger("alerts")

Key = tuple[str, tuple[tuple[str, str], ...]]


class AlertNotFound(LookupError):
    """No alert, rule or silence of that id or name."""


class AlertConflict(Exception):
    """The request contradicts the current state (read-only rule, taken name, resolved alert)."""


class ActiveCounter(Protocol):
    """Where the active alert counts go (``ChatMetrics`` is one)."""

    def set_alerts_active(self, counts: Mapping[str, int]) -> None:
        """Publish counts of pending or firing alerts by severity."""
        ...


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """The engine's settings (from ``alerts.*``, ``server.public_url``, ``metrics.window``)."""

    evaluation_interval: float = 15.0
    group_wait: float = 5.0
    escalate_after: float | None = None
    escalate_to: tuple[str, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    logs_lookback: float = 300.0
    history_retention: float = 90 * 86400.0
    outbox_retention: float = 30 * 86400.0


@dataclass(slots=True)
class _Need:
    alert: Alert
    kind: NotificationKind
    group: str
    channels: list[str] = field(default_factory=list)


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# One series of a reading, ready for rules split by one label set: (sorted labels as a
# key, labels, value, samples).
_Row = tuple[tuple[tuple[str, str], ...], Mapping[str, str], float | None, float | None]
_WATCHDOG_ROWS: list[_Row] = [((), {}, 1.0, None)]


def _rows(reading: SignalReading, signal: str, by: tuple[str, ...]) -> list[_Row]:
    """The series of ``signal`` whose labels are exactly ``by`` (computed once per cycle)."""
    if signal == WATCHDOG_SIGNAL:
        return _WATCHDOG_ROWS
    want = set(by)
    return [
        (_label_key(s.labels), s.labels, s.value, s.samples)
        for s in reading.series(signal)
        if s.labels.keys() == want
    ]


def _slo_rows(reading: SignalReading, name: str) -> list[_Row]:
    """The burn-rate series of the SLO rule ``name`` (one per window pair)."""
    return [
        (_label_key(s.labels), s.labels, s.value, s.samples)
        for s in reading.series(SLO_SIGNAL)
        if s.labels.get("slo") == name
    ]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


class AlertEngine:
    """Evaluates rules, keeps alert state, groups notifications into the outbox."""

    def __init__(
        self,
        store: AlertStore,
        source: SignalSource,
        clock: Clock,
        *,
        rules: Iterable[Rule] = (),
        channels: Mapping[str, Channel] | None = None,
        options: EngineOptions | None = None,
        dispatcher: Dispatcher | None = None,
        counter: ActiveCounter | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.clock = clock
        self.options = options or EngineOptions()
        self.channels: Mapping[str, Channel] = channels or {}
        self.dispatcher = dispatcher
        self.counter = counter
        self._config_rules: dict[str, Rule] = {r.name: r for r in rules}
        self._api_rules: dict[str, Rule] = {}
        self._rules: list[Rule] = []
        self._active: dict[Key, Alert] = {}  # rule alerts, pending or firing
        self._manual: dict[str, Alert] = {}  # manual alerts by fingerprint
        self._held: dict[str, Alert] = {}  # every alert in memory, by id
        self._rule_keys: dict[str, set[Key]] = {}
        self._cleared_by_hand: set[Key] = set()
        self._group_since: dict[str, float] = {}
        self._silences: list[Silence] = []
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._rebuild()

    # --- life -------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Load stored rules, open alerts and silences; start the loops when ``background``."""
        for spec in await self.store.list_rules():
            try:
                rule = build_rule(spec, source=RuleSource.API)
            except RuleError as err:
                _log.error("error.alert_rule_invalid", rule=str(spec.get("name")), error=str(err))
                continue
            if rule.name in self._config_rules:
                _log.warning("alert.rule_shadowed", rule=rule.name)
                continue
            self._api_rules[rule.name] = rule
        self._rebuild()
        for alert in await self.store.load_open():
            self._hold(alert)
        self._silences = await self.store.list_silences()
        self._publish_counts()
        self._started = True
        if background:
            self._tasks.append(asyncio.create_task(self.run(), name="alerts-engine"))
            if self.dispatcher is not None:
                self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="alerts-outbox"))

    async def stop(self) -> None:
        """Stop the loops and close the channels."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.aclose()

    async def run(self) -> None:
        """Evaluate every ``evaluation_interval``, flush groups when due (run as a task)."""
        interval = self.options.evaluation_interval
        next_eval = self.clock.monotonic()
        next_prune = self.clock.monotonic() + 60.0
        while True:
            if self.clock.monotonic() >= next_eval:
                next_eval = self.clock.monotonic() + interval
                with background_job("alerts"):
                    try:
                        await self.evaluate()
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        _log.exception("error.alert_evaluation")
            with background_job("alerts"):
                try:
                    await self.flush()
                    if self.clock.monotonic() >= next_prune:
                        next_prune = self.clock.monotonic() + 3600.0
                        now = self.clock.time()
                        await self.store.prune(
                            now - self.options.history_retention,
                            outbox_before=now - self.options.outbox_retention,
                        )
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception("error.alert_flush")
            wait = next_eval - self.clock.monotonic()
            due = self.next_flush_at()
            if due is not None:
                wait = min(wait, due - self.clock.time())
            await asyncio.sleep(min(interval, max(0.01, wait)))

    # --- rules --------------------------------------------------------------------------

    def _rebuild(self) -> None:
        merged = {**self._api_rules, **self._config_rules}
        self._rules = [r for r in merged.values() if r.enabled]

    def rules(self) -> list[Rule]:
        """Every rule (enabled or not): configuration first, then the API's, by name."""
        config = sorted(self._config_rules.values(), key=lambda r: r.name)
        api = sorted(self._api_rules.values(), key=lambda r: r.name)
        return config + api

    def rule(self, name: str) -> Rule:
        """One rule by name; AlertNotFound."""
        found = self._config_rules.get(name) or self._api_rules.get(name)
        if found is None:
            raise AlertNotFound(f"no rule named {name!r}")
        return found

    def _read_only(self, name: str) -> None:
        rule = self._config_rules.get(name)
        if rule is not None:
            where = "the default rules" if rule.source is RuleSource.DEFAULT else "alerts.rules"
            raise AlertConflict(
                f"rule {name!r} comes from the configuration ({where}); change it in the "
                "config file, not through the API"
            )

    async def create_rule(self, data: Mapping[str, Any]) -> Rule:
        """Validate and store a new API rule (RuleError; AlertConflict for a taken name)."""
        rule = build_rule(data, source=RuleSource.API, channels=set(self.channels))
        async with self._lock:
            self._read_only(rule.name)
            if rule.name in self._api_rules:
                raise AlertConflict(f"a rule named {rule.name!r} exists already")
            try:
                await self.store.insert_rule(rule.spec(), self.clock.time())
            except NameTaken:
                raise AlertConflict(f"a rule named {rule.name!r} exists already") from None
            self._api_rules[rule.name] = rule
            self._rebuild()
        _log.info("alert.rule_created", rule=rule.name)
        return rule

    async def replace_rule(self, name: str, data: Mapping[str, Any]) -> Rule:
        """Replace an API rule (AlertConflict for a config rule, AlertNotFound, RuleError)."""
        self._read_only(name)
        if name not in self._api_rules:
            raise AlertNotFound(f"no rule named {name!r}")
        body_name = data.get("name", name)
        if body_name != name:
            raise RuleError(
                "name", "must match the rule's name in the path (rules cannot be renamed)"
            )
        rule = build_rule(
            {**data, "name": name}, source=RuleSource.API, channels=set(self.channels)
        )
        async with self._lock:
            old = self._api_rules.get(name)
            if old is None:
                raise AlertNotFound(f"no rule named {name!r}")
            if not await self.store.update_rule(rule.spec(), self.clock.time()):
                raise AlertNotFound(f"no rule named {name!r}")
            self._api_rules[name] = rule
            self._rebuild()
            if (old.signal, old.by) != (rule.signal, rule.by) or not rule.enabled:
                await self._end_rule_alerts(name, "rule_changed")
        _log.info("alert.rule_updated", rule=name)
        return rule

    async def delete_rule(self, name: str) -> None:
        """Delete an API rule and resolve its alerts."""
        self._read_only(name)
        async with self._lock:
            if name not in self._api_rules or not await self.store.delete_rule(name):
                raise AlertNotFound(f"no rule named {name!r}")
            del self._api_rules[name]
            self._rebuild()
            await self._end_rule_alerts(name, "rule_deleted")
        _log.info("alert.rule_deleted", rule=name)

    async def _end_rule_alerts(self, name: str, reason: str) -> None:
        now = self.clock.time()
        updates: list[Alert] = []
        deletes: list[Alert] = []
        for key in list(self._rule_keys.get(name, ())):
            alert = self._active.get(key)
            if alert is not None:
                (deletes if alert.state is AlertState.PENDING else updates).append(alert)
                self._end(alert, key, now, reason)
        await self.store.save_alerts((), updates, [a.id for a in deletes])
        self._publish_counts()

    # --- evaluation ---------------------------------------------------------------------

    async def evaluate(self, reading: SignalReading | None = None) -> None:
        """Read the signals (or take ``reading``) and apply every enabled rule once."""
        if reading is None:
            refresh = getattr(self.source, "refresh", None)  # sources with async probes
            if refresh is not None:
                await refresh()
            reading = self.source.read()
        async with self._lock:
            now = self.clock.time()
            inserts: list[Alert] = []
            updates: list[Alert] = []
            deletes: list[str] = []
            rules = list(self._rules)
            series_index: dict[tuple[str, tuple[str, ...]], list[_Row]] = {}
            for position, rule in enumerate(rules):
                if position and position % CHUNK == 0:
                    await asyncio.sleep(0)
                self._evaluate_rule(rule, reading, now, inserts, updates, deletes, series_index)
            await asyncio.sleep(0)
            live = {r.name for r in rules}
            for name in [n for n in self._rule_keys if n not in live]:
                for key in list(self._rule_keys.get(name, ())):
                    alert = self._active[key]
                    if alert.state is AlertState.PENDING:
                        deletes.append(alert.id)
                    else:
                        updates.append(alert)
                    self._end(alert, key, now, "rule_removed")
            await self.store.save_alerts(inserts, updates, deletes)
            self._publish_counts()
            await asyncio.sleep(0)
            self._note_needs(now)

    def _evaluate_rule(
        self,
        rule: Rule,
        reading: SignalReading,
        now: float,
        inserts: list[Alert],
        updates: list[Alert],
        deletes: list[str],
        index: dict[tuple[str, tuple[str, ...]], list[_Row]],
    ) -> None:
        rows = index.get((rule.signal, rule.by))
        if rows is None:
            rows = index[(rule.signal, rule.by)] = _rows(reading, rule.signal, rule.by)
        if rule.kind is RuleKind.SLO:
            rows = _slo_rows(reading, rule.name)
        name = rule.name
        active = self._active
        fires = rule.op.compare
        threshold = rule.threshold
        min_samples = rule.min_samples
        for label_key, labels, value, samples in rows:
            if value is None or (min_samples and samples is not None and samples < min_samples):
                continue  # no data: neither fires nor resolves
            key = (name, label_key)
            alert = active.get(key)
            # The common case by far: nothing active and nothing firing.
            if alert is None and not fires(value, threshold) and key not in self._cleared_by_hand:
                continue
            self._step(rule, key, labels, value, now, inserts, updates, deletes)
        keys = self._rule_keys.get(name)
        spec = SIGNALS.get(rule.signal)
        if keys and spec is not None and spec.kind is SignalKind.COUNT:
            seen = {(name, row[0]) for row in rows}
            for key in [k for k in keys if k not in seen]:
                self._step(rule, key, dict(key[1]), 0.0, now, inserts, updates, deletes)

    def _step(
        self,
        rule: Rule,
        key: Key,
        labels: Mapping[str, str],
        value: float,
        now: float,
        inserts: list[Alert],
        updates: list[Alert],
        deletes: list[str],
    ) -> None:
        alert = self._active.get(key)
        if alert is None:
            if key in self._cleared_by_hand:
                if rule.clears(value):
                    self._cleared_by_hand.discard(key)
                return
            if rule.fires(value):
                alert = self._new_alert(rule, key, labels, value, now)
                inserts.append(alert)
                if rule.for_s <= 0:
                    self._fire(alert, value, now)
            return
        if alert.state is AlertState.PENDING:
            if rule.clears(value):
                self._end(alert, key, now, "cleared", to=AlertState.INACTIVE)
                deletes.append(alert.id)
            elif rule.fires(value) and now - alert.starts_at >= rule.for_s:
                self._fire(alert, value, now)
                updates.append(alert)
        elif alert.state is AlertState.FIRING and rule.clears(value):
            self._end(alert, key, now, "condition")
            updates.append(alert)

    def _new_alert(
        self, rule: Rule, key: Key, labels: Mapping[str, str], value: float, now: float
    ) -> Alert:
        all_labels = {
            **rule.labels,
            **labels,
            "alertname": rule.name,
            # An SLO rule's severity is that of the burn-rate pair that fires.
            "severity": SEVERITY_OF_BURN.get(labels.get("burn", ""), rule.severity).value
            if rule.kind is RuleKind.SLO
            else rule.severity.value,
            "type": rule.type.value,
        }
        summary = rule.summary or f"{rule.signal} {rule.op.value} {rule.threshold:g}"
        alert = Alert(
            id=uuid.uuid4().hex,
            rule=rule.name,
            labels=all_labels,
            annotations={
                "summary": summary,
                "value": _fmt(value),
                "threshold": _fmt(rule.threshold),
                "signal": rule.signal,
            },
            starts_at=now,
            value=value,
        )
        self._annotate_links(alert)
        self._hold(alert, key)
        _log.info("alert.pending", **self._log_fields(alert))
        return alert

    def _fire(self, alert: Alert, value: float, now: float) -> None:
        alert.move(AlertState.FIRING, now)
        alert.value = value
        alert.annotations["value"] = _fmt(value)
        self._annotate_links(alert)
        _log.warning("alert.fired", **self._log_fields(alert))

    def _end(
        self,
        alert: Alert,
        key: Key | None,
        now: float,
        reason: str,
        to: AlertState = AlertState.RESOLVED,
    ) -> None:
        if to is AlertState.RESOLVED and alert.state is AlertState.PENDING:
            to = AlertState.INACTIVE  # never fired: nothing to resolve or tell
        alert.move(to, now)
        alert.resolved_by = reason
        if key is not None:
            self._active.pop(key, None)
            keys = self._rule_keys.get(key[0])
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._rule_keys[key[0]]
        else:
            self._manual.pop(alert.fingerprint, None)
        if to is AlertState.RESOLVED:
            self._annotate_links(alert)
            _log.info("alert.resolved", reason=reason, **self._log_fields(alert))
        if alert.notified is not Notified.FIRING:
            self._held.pop(alert.id, None)  # nobody was told it fired: nothing to tell now

    def _hold(self, alert: Alert, key: Key | None = None) -> None:
        self._held[alert.id] = alert
        if not alert.state.active:
            return
        if alert.rule is None:
            self._manual[alert.fingerprint] = alert
            return
        if key is None:
            rule = self._config_rules.get(alert.rule) or self._api_rules.get(alert.rule)
            by = rule.by if rule is not None else ()
            key = (alert.rule, _label_key({k: alert.labels[k] for k in by if k in alert.labels}))
        self._active[key] = alert
        self._rule_keys.setdefault(alert.rule, set()).add(key)

    def _annotate_links(self, alert: Alert) -> None:
        base = self.options.public_url.rstrip("/")
        since = alert.starts_at - self.options.logs_lookback
        until = alert.ends_at if alert.ends_at is not None else (alert.fired_at or alert.starts_at)
        query = urlencode({"since": iso_time(since), "until": iso_time(until + 1.0)})
        alert.annotations["logs_url"] = f"{base}/api/v1/admin/chat/logs?{query}"

    def alert_url(self, alert: Alert) -> str:
        """The alert's own address in the admin API."""
        return f"{self.options.public_url.rstrip('/')}/api/v1/admin/chat/alerts/{alert.id}"

    @staticmethod
    def _log_fields(alert: Alert) -> dict[str, Any]:
        return {
            "alert_id": alert.id,
            "alertname": alert.name,
            "severity": alert.severity,
            "alert_type": alert.type,
            "fingerprint": alert.fingerprint,
            "alert_labels": dict(alert.labels),
            "value": alert.value,
        }

    # --- notifications ------------------------------------------------------------------

    def _silenced(self, labels: Mapping[str, str], now: float) -> bool:
        return any(s.active(now) and s.matches(labels) for s in self._silences)

    def _escalation_of(self, alert: Alert) -> tuple[float | None, tuple[str, ...]]:
        rule = (
            None
            if alert.rule is None
            else (self._config_rules.get(alert.rule) or self._api_rules.get(alert.rule))
        )
        after = rule.escalate_after_s if rule is not None and rule.escalate_after_s else None
        to = rule.escalate_to if rule is not None and rule.escalate_to else None
        return (after or self.options.escalate_after, to or self.options.escalate_to)

    def _needs(self, now: float) -> tuple[list[_Need], list[Alert]]:
        """What must be notified now, and silenced resolutions to mark done without a word."""
        needs: list[_Need] = []
        quiet: list[Alert] = []
        for alert in list(self._held.values()):
            rule = (
                None
                if alert.rule is None
                else (self._config_rules.get(alert.rule) or self._api_rules.get(alert.rule))
            )
            kind: NotificationKind | None = None
            if alert.state is AlertState.FIRING:
                if alert.notified is not Notified.FIRING:
                    kind = NotificationKind.FIRING
                else:
                    cooldown = rule.cooldown_s if rule is not None else 900.0
                    last = alert.last_notified_at or 0.0
                    if now - last >= cooldown:
                        kind = NotificationKind.REPEAT
            elif alert.state is AlertState.RESOLVED and alert.notified is Notified.FIRING:
                kind = NotificationKind.RESOLVED
            escalate = (
                alert.state is AlertState.FIRING
                and alert.notified is Notified.FIRING
                and alert.severity == Severity.CRITICAL
                and not alert.acknowledged
                and alert.escalated_at is None
            )
            if kind is None and not escalate:
                continue  # the steady state of a firing alert: nothing to say, nothing to check
            group = (
                alert.rule
                if alert.rule is not None
                else f"manual:{alert.name}:{alert.severity}:{alert.type}"
            )
            silenced = self._silenced(alert.labels, now)
            if kind is NotificationKind.RESOLVED and silenced:
                quiet.append(alert)
                continue
            if kind is not None and not silenced:
                needs.append(_Need(alert, kind, group, self._route(alert, rule)))
            if escalate and not silenced:
                after, targets = self._escalation_of(alert)
                if after is not None and targets and now - (alert.fired_at or now) >= after:
                    needs.append(
                        _Need(
                            alert, NotificationKind.ESCALATION, f"escalation:{group}", list(targets)
                        )
                    )
        return needs, quiet

    def _route(self, alert: Alert, rule: Rule | None) -> list[str]:
        if rule is not None and rule.channels is not None:
            return [c for c in rule.channels if c in self.channels]
        return [
            name for name, ch in self.channels.items() if ch.accepts(alert.severity, alert.type)
        ]

    def _note_needs(self, now: float) -> None:
        needs, quiet = self._needs(now)
        for need in needs:
            self._group_since.setdefault(need.group, now)
        if quiet:
            self._group_since.setdefault("", now)

    def next_flush_at(self) -> float | None:
        """When the earliest waiting group is due (wall time), if any."""
        if not self._group_since:
            return None
        return min(self._group_since.values()) + self.options.group_wait

    async def flush(self) -> int:
        """Store the notifications of every group whose ``group_wait`` is over; returns how
        many notifications were stored."""
        async with self._lock:
            now = self.clock.time()
            needs, quiet = self._needs(now)
            for need in needs:
                self._group_since.setdefault(need.group, now)
            wait = self.options.group_wait
            due = {g for g, since in self._group_since.items() if now - since >= wait}
            ready = [n for n in needs if n.group in due]
            waiting = {n.group for n in needs} - due
            notifications: list[Notification] = []
            by_group: dict[str, list[_Need]] = {}
            for need in ready:
                by_group.setdefault(need.group, []).append(need)
            done: list[Alert] = []
            for group, members in by_group.items():
                notifications.extend(self._notifications(group, members, now))
                for need in members:
                    if need.kind is NotificationKind.ESCALATION:
                        need.alert.escalated_at = now
                    else:
                        need.alert.notified = (
                            Notified.RESOLVED
                            if need.kind is NotificationKind.RESOLVED
                            else Notified.FIRING
                        )
                        need.alert.last_notified_at = now
                    done.append(need.alert)
            for alert in quiet:
                alert.notified = Notified.RESOLVED
                done.append(alert)
            if not done:
                self._group_since = {g: t for g, t in self._group_since.items() if g in waiting}
                return 0
            await self.store.enqueue(notifications, list({a.id: a for a in done}.values()), now)
            for alert in done:
                if alert.state is AlertState.RESOLVED and alert.notified is Notified.RESOLVED:
                    self._held.pop(alert.id, None)
            self._group_since = {g: t for g, t in self._group_since.items() if g in waiting}
        if notifications and self.dispatcher is not None:
            self.dispatcher.wake()
        for n in notifications:
            _log.info(
                "alert.notification_queued",
                notification_id=n.id,
                channel=n.channel,
                kind=n.kind.value,
                group_key=n.group_key,
                alerts=len(n.alerts),
            )
        return len(notifications)

    def _notifications(self, group: str, members: list[_Need], now: float) -> list[Notification]:
        kinds = {m.kind for m in members}
        if NotificationKind.ESCALATION in kinds:
            kind = NotificationKind.ESCALATION
        elif NotificationKind.FIRING in kinds:
            kind = NotificationKind.FIRING
        elif NotificationKind.REPEAT in kinds:
            kind = NotificationKind.REPEAT
        else:
            kind = NotificationKind.RESOLVED
        group_labels = {"alertname": members[0].alert.name}
        route = "{}/escalation" if kind is NotificationKind.ESCALATION else "{}"
        group_key = f"{route}:{{alertname={_quote(members[0].alert.name)}}}"
        views = [self._view(m.alert) for m in members]
        out = []
        targets: dict[str, list[AlertView]] = {}
        for member, view in zip(members, views, strict=True):
            for channel in member.channels:
                targets.setdefault(channel, []).append(view)
        for channel, alerts in targets.items():
            out.append(
                Notification(
                    id=new_notification_id(),
                    channel=channel,
                    kind=kind,
                    group_key=group_key,
                    group_labels=group_labels,
                    alerts=tuple(alerts),
                    external_url=self.options.public_url,
                    created_at=now,
                )
            )
        if not targets:
            _log.info("alert.not_routed", group=group, alerts=len(members))
        return out

    def _view(self, alert: Alert) -> AlertView:
        return AlertView(
            id=alert.id,
            status="firing" if alert.state is AlertState.FIRING else "resolved",
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=alert.fired_at or alert.starts_at,
            ends_at=alert.ends_at if alert.state is AlertState.RESOLVED else None,
            fingerprint=alert.fingerprint,
            url=self.alert_url(alert),
        )

    def _publish_counts(self) -> None:
        if self.counter is not None:
            self.counter.set_alerts_active(self.counts())

    # --- reading ------------------------------------------------------------------------

    def active(self) -> list[Alert]:
        """Pending and firing alerts, newest first."""
        alerts = [*self._active.values(), *self._manual.values()]
        return sorted(alerts, key=lambda a: (a.starts_at, a.id), reverse=True)

    def counts(self) -> dict[str, int]:
        """Active alerts by severity (every severity present)."""
        counts = dict.fromkeys(_SEVERITIES, 0)
        for alert in [*self._active.values(), *self._manual.values()]:
            counts[alert.severity] = counts.get(alert.severity, 0) + 1
        return counts

    def to_json(self, alert: Alert) -> dict[str, Any]:
        """An alert as the API shows it, with its silenced flag and link."""
        body = alert.to_json(silenced=self._silenced(alert.labels, self.clock.time()))
        body["url"] = self.alert_url(alert)
        return body

    def held(self, alert: Alert) -> Alert:
        """The engine's live copy of a stored alert, when it holds one."""
        return self._held.get(alert.id, alert)

    async def get(self, alert_id: str) -> Alert:
        """One alert by id, held or stored; AlertNotFound."""
        held = self._held.get(alert_id)
        if held is not None:
            return held
        stored = await self.store.get_alert(alert_id)
        if stored is None:
            raise AlertNotFound(f"no alert with id {alert_id!r}")
        return stored

    # --- actions ------------------------------------------------------------------------

    async def acknowledge(self, alert_id: str, by: str | None) -> Alert:
        """Mark an active alert acknowledged (it still resolves by itself)."""
        async with self._lock:
            alert = await self.get(alert_id)
            if not alert.state.active:
                raise AlertConflict(
                    f"alert {alert_id} is {alert.state.value}: nothing to acknowledge"
                )
            if not alert.acknowledged:
                alert.acknowledged = True
                alert.acknowledged_at = self.clock.time()
                alert.acknowledged_by = by
                await self.store.save_alerts((), [alert], ())
                _log.info("alert.acknowledged", by=by, **self._log_fields(alert))
        return alert

    async def resolve(self, alert_id: str, by: str | None) -> Alert:
        """Resolve an active alert by hand. A rule's alert is not raised again until its
        condition has first cleared."""
        async with self._lock:
            alert = await self.get(alert_id)
            if not alert.state.active:
                raise AlertConflict(f"alert {alert_id} is {alert.state.value} already")
            now = self.clock.time()
            key = next((k for k, a in self._active.items() if a is alert), None)
            was_pending = alert.state is AlertState.PENDING
            if was_pending:
                alert.move(AlertState.RESOLVED, now)  # an admin's word ends a pending alert too
                alert.resolved_by = "api"
                if key is not None:
                    self._active.pop(key, None)
                    self._rule_keys.get(key[0], set()).discard(key)
                self._held.pop(alert.id, None)
            else:
                self._end(alert, key, now, "api")
            if key is not None:
                self._cleared_by_hand.add(key)
            alert.annotations["resolved_by"] = by or "api"
            await self.store.save_alerts((), [alert], ())
            self._publish_counts()
            self._note_needs(now)
        return alert

    async def raise_manual(
        self,
        name: str,
        severity: Severity,
        alert_type: AlertType,
        summary: str,
        labels: Mapping[str, str],
        by: str | None,
    ) -> tuple[Alert, bool]:
        """Raise a firing alert by hand; (alert, created). The same labels while one is
        active return that one."""
        all_labels = {
            **labels,
            "alertname": name,
            "severity": severity.value,
            "type": alert_type.value,
        }
        fp = fingerprint(all_labels)
        async with self._lock:
            existing = self._manual.get(fp) or next(
                (a for a in self._active.values() if a.fingerprint == fp), None
            )
            if existing is not None:
                return existing, False
            now = self.clock.time()
            alert = Alert(
                id=uuid.uuid4().hex,
                rule=None,
                labels=all_labels,
                annotations={"summary": summary, "value": "", "raised_by": by or "api"},
                starts_at=now,
            )
            alert.move(AlertState.FIRING, now)
            self._annotate_links(alert)
            self._hold(alert)
            await self.store.save_alerts([alert], (), ())
            self._publish_counts()
            self._note_needs(now)
        _log.warning("alert.fired", manual=True, by=by, **self._log_fields(alert))
        return alert, True

    # --- silences -----------------------------------------------------------------------

    def silences(self) -> list[Silence]:
        """Every silence, newest first."""
        return sorted(self._silences, key=lambda s: s.created_at, reverse=True)

    async def add_silence(self, body: Mapping[str, Any], by: str | None) -> Silence:
        """Validate and store a silence (RuleError naming the bad field)."""
        now = self.clock.time()
        matchers = parse_matchers(body.get("matchers"))
        ends_at = parse_time_value("ends_at", body.get("ends_at"), now, ahead=True)
        starts_raw = body.get("starts_at")
        starts_at = now if starts_raw is None else parse_time_value("starts_at", starts_raw, now)
        if ends_at <= now:
            raise RuleError("ends_at", "must be in the future")
        if ends_at <= starts_at:
            raise RuleError("ends_at", "must be after starts_at")
        comment = body.get("comment", "")
        if not isinstance(comment, str) or len(comment) > 1024:
            raise RuleError("comment", "must be a string of at most 1024 chars")
        silence = Silence(
            id=uuid.uuid4().hex,
            matchers=matchers,
            starts_at=starts_at,
            ends_at=ends_at,
            comment=comment,
            created_by=by,
            created_at=now,
        )
        async with self._lock:
            await self.store.insert_silence(silence)
            self._silences.append(silence)
        _log.info("alert.silence_created", silence_id=silence.id, by=by, ends_at=iso_time(ends_at))
        return silence

    async def end_silence(self, silence_id: str) -> None:
        """End a silence now; AlertNotFound when unknown."""
        async with self._lock:
            now = self.clock.time()
            if not await self.store.end_silence(silence_id, now):
                raise AlertNotFound(f"no silence with id {silence_id!r}")
            self._silences = [
                s
                if s.id != silence_id
                else Silence(
                    s.id,
                    s.matchers,
                    s.starts_at,
                    min(s.ends_at, now),
                    s.comment,
                    s.created_by,
                    s.created_at,
                )
                for s in self._silences
            ]
            self._note_needs(now)
        _log.info("alert.silence_ended", silence_id=silence_id)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
