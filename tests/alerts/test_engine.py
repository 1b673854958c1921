"""The engine with an injected clock and a fake signal source: for, cooldown, escalation,
hysteresis, no data, silences, grouping, routing, manual alerts, and restarts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from chatwatch.alerts.engine import AlertConflict
from chatwatch.alerts.notification import NotificationKind
from chatwatch.alerts.rules import AlertType, Severity
from chatwatch.alerts.state import Alert, AlertState, IllegalTransition
from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import EventBus
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.store.db import Database
from tests.alerts.conftest import Harness, RecordingChannel, default_rules, rule
from tests.observe.live import LiveChat

Make = Callable[..., Harness]


def kinds(h: Harness, channel: str = "ops") -> list[str]:
    return [n.kind.value for n in h.sent(channel)]


# --- states ---------------------------------------------------------------------------


def test_state_enum_refuses_illegal_transitions() -> None:
    """resolved → firing, firing → pending, inactive → pending raise; moves stamp times."""
    alert = Alert(id="a", rule="R", labels={"alertname": "R"}, annotations={}, starts_at=1.0)
    alert.move(AlertState.FIRING, 2.0)
    with pytest.raises(IllegalTransition):
        alert.move(AlertState.PENDING, 3.0)
    alert.move(AlertState.RESOLVED, 4.0)
    with pytest.raises(IllegalTransition):
        alert.move(AlertState.FIRING, 5.0)
    assert (alert.fired_at, alert.ends_at) == (2.0, 4.0)
    assert not AlertState.INACTIVE.can_become(AlertState.PENDING)


# --- for ------------------------------------------------------------------------------


async def test_for_duration_boundary(harness: Make) -> None:
    """A condition held 59.9 s of a 60 s ``for`` is pending; at 60 s it fires, notified once."""
    h = await harness([rule(for_="60s")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    assert h.states() == {"R": "pending"} and h.sent() == []
    await h.tick(59.9)
    assert h.states() == {"R": "pending"} and h.sent() == []
    await h.tick(0.1)
    assert h.states() == {"R": "firing"}
    assert kinds(h) == ["firing"]
    await h.tick(15)
    assert kinds(h) == ["firing"]


async def test_zero_for_fires_on_first_evaluation(harness: Make) -> None:
    """``for: 0s`` fires at once: the burst is the event."""
    h = await harness([rule(for_="0s")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    assert h.states() == {"R": "firing"} and kinds(h) == ["firing"]


async def test_pending_that_clears_is_dropped_unnotified(harness: Make) -> None:
    """A pending alert whose condition clears before ``for`` never fires, is not notified
    and leaves no history."""
    h = await harness([rule(for_="60s")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    h.source.set("error_rate", 0.1)
    await h.tick(30)
    assert h.states() == {} and h.sent() == []
    items, _ = await h.store.history(10)
    assert items == []


async def test_pending_keeps_its_start_while_condition_holds(harness: Make) -> None:
    """The ``for`` clock runs from the first evaluation that saw the condition."""
    h = await harness([rule(for_="30s")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    start = h.engine.active()[0].starts_at
    await h.tick(15)
    await h.tick(15)
    alert = h.engine.active()[0]
    assert (alert.state, alert.starts_at, alert.fired_at) == (AlertState.FIRING, start, start + 30)


# --- resolve and cooldown -------------------------------------------------------------


async def test_resolution_is_notified_once(harness: Make) -> None:
    """Firing → resolved when the value clears: one resolved notification, then silence."""
    h = await harness([rule()]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    h.source.set("error_rate", 0.1)
    await h.tick(15)
    await h.tick(15)
    await h.tick(15)
    assert kinds(h) == ["firing", "resolved"]
    resolved = h.sent()[1].alerts[0]
    assert resolved.status == "resolved" and resolved.ends_at == h.clock.time() - 30


async def test_cooldown_boundary(harness: Make) -> None:
    """A continuing alert is not re-notified within its cooldown; at the cooldown it is."""
    h = await harness([rule(cooldown="15m")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    await h.tick(899)
    assert kinds(h) == ["firing"]
    await h.tick(1)
    assert kinds(h) == ["firing", "repeat"]
    await h.tick(899)
    assert kinds(h) == ["firing", "repeat"]


async def test_new_firing_after_resolution_is_notified_within_cooldown(harness: Make) -> None:
    """Resolved then firing again a minute later (inside the 15 m cooldown) is notified:
    a new alert, with a new id and the same fingerprint."""
    h = await harness([rule()]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    h.source.set("error_rate", 0.1)
    await h.tick(30)
    h.source.set("error_rate", 0.9)
    await h.tick(30)
    assert kinds(h) == ["firing", "resolved", "firing"]
    first, _, again = (n.alerts[0] for n in h.sent())
    assert first.id != again.id and first.fingerprint == again.fingerprint


# --- flapping -------------------------------------------------------------------------

FLAP = [0.51, 0.49, 0.52, 0.48, 0.51, 0.495, 0.53, 0.49]


async def test_flapping_without_hysteresis_notifies_every_flip(harness: Make) -> None:
    """A value hovering at the threshold fires and resolves on every crossing."""
    h = await harness([rule(threshold=0.5)]).start()
    for value in FLAP:
        h.source.set("error_rate", value)
        await h.tick(15)
    assert kinds(h) == ["firing", "resolved"] * 4


async def test_flapping_with_hysteresis_stays_firing(harness: Make) -> None:
    """With ``resolve_threshold`` 0.4 the same hovering value fires once and stays firing;
    it resolves only when the value falls to 0.4."""
    h = await harness([rule(threshold=0.5, resolve_threshold=0.4)]).start()
    for value in FLAP:
        h.source.set("error_rate", value)
        await h.tick(15)
    assert kinds(h) == ["firing"] and h.states() == {"R": "firing"}
    h.source.set("error_rate", 0.41)
    await h.tick(15)
    assert h.states() == {"R": "firing"}
    h.source.set("error_rate", 0.4)
    await h.tick(15)
    assert kinds(h) == ["firing", "resolved"]


async def test_hysteresis_for_a_low_rule(harness: Make) -> None:
    """For ``<`` rules the resolve threshold sits above: fires under 0.95, resolves at 0.97."""
    h = await harness(
        [rule(signal="cache_hit_rate", op="<", threshold=0.95, resolve_threshold=0.97)]
    ).start()
    for value, state in [(0.9, "firing"), (0.96, "firing"), (0.94, "firing"), (0.97, None)]:
        h.source.set("cache_hit_rate", value)
        await h.tick(15)
        assert h.states().get("R") == state, value


# --- no data --------------------------------------------------------------------------


async def test_no_data_neither_fires_nor_resolves(harness: Make) -> None:
    """A rate over zero events (None) does not raise an alert, and does not resolve a firing one."""
    h = await harness([rule()]).start()
    h.source.set("error_rate", None)
    await h.tick()
    assert h.states() == {}
    h.source.set("error_rate", 0.9)
    await h.tick(15)
    h.source.set("error_rate", None)
    for _ in range(4):
        await h.tick(15)
    assert h.states() == {"R": "firing"} and kinds(h) == ["firing"]


async def test_fewer_samples_than_min_samples_is_no_data(harness: Make) -> None:
    """1 error in 2 messages (50%) with ``min_samples`` 10 is no data; 5 in 10 fires; and a
    thin window does not resolve either."""
    h = await harness([rule(min_samples=10)]).start()
    h.source.set("error_rate", 0.5 + 1e-9, samples=2)
    await h.tick()
    assert h.states() == {}
    h.source.set("error_rate", 0.6, samples=10)
    await h.tick(15)
    assert h.states() == {"R": "firing"}
    h.source.set("error_rate", 0.0, samples=3)
    await h.tick(15)
    assert h.states() == {"R": "firing"}


async def test_missing_rate_series_is_no_data(harness: Make) -> None:
    """A rate signal that vanishes from the reading keeps the alert firing."""
    h = await harness([rule()]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    h.source.clear("error_rate")
    await h.tick(15)
    assert h.states() == {"R": "firing"}


async def test_per_ip_alert_resolves_when_that_ips_count_falls_to_zero(harness: Make) -> None:
    """One alert per offending IP; an IP gone from the per-IP counts counted 0 (data), so
    its alert resolves while the other IP's keeps firing."""
    h = await harness(default_rules()).start()
    h.source.set("auth_failures_per_minute", 22.0)
    h.source.set("auth_failures_per_minute", 11.0, client_ip="198.51.100.1")
    h.source.set("auth_failures_per_minute", 11.0, client_ip="198.51.100.2")
    await h.tick()
    assert h.states() == {
        "AuthFailureBurst": "firing",
        "AuthFailureBurstByIP|client_ip=198.51.100.1": "firing",
        "AuthFailureBurstByIP|client_ip=198.51.100.2": "firing",
    }
    h.source.reading.data["auth_failures_per_minute"] = [
        s
        for s in h.source.reading.data["auth_failures_per_minute"]
        if s.labels.get("client_ip") != "198.51.100.1"
    ]
    await h.tick(15)
    assert "AuthFailureBurstByIP|client_ip=198.51.100.1" not in h.states()
    assert "AuthFailureBurstByIP|client_ip=198.51.100.2" in h.states()


# --- silences -------------------------------------------------------------------------


async def test_silence_holds_back_notifications_not_the_alert(harness: Make) -> None:
    """A matching silence: the alert fires (visible, marked silenced) but nobody is told;
    when the silence ends while it still fires, it is notified then."""
    h = await harness([rule(labels={"team": "chat"})]).start()
    silence = await h.engine.add_silence(
        {
            "matchers": [{"name": "team", "value": "ch.*", "is_regex": True}],
            "ends_at": h.clock.time() + 600,
        },
        "admin",
    )
    h.source.set("error_rate", 0.9)
    await h.tick()
    assert h.states() == {"R": "firing"} and h.sent() == []
    assert h.engine.to_json(h.engine.active()[0])["silenced"] is True
    await h.tick(300)
    assert h.sent() == []
    await h.engine.end_silence(silence.id)
    await h.tick(1)
    assert kinds(h) == ["firing"]


async def test_silenced_resolution_is_not_notified(harness: Make) -> None:
    """An alert notified firing, then silenced, resolves without a resolved notification."""
    h = await harness([rule()]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    await h.engine.add_silence(
        {"matchers": [{"name": "alertname", "value": "R"}], "ends_at": h.clock.time() + 600}, None
    )
    h.source.set("error_rate", 0.1)
    await h.tick(15)
    await h.tick(15)
    assert kinds(h) == ["firing"]


async def test_non_matching_silence_changes_nothing(harness: Make) -> None:
    """A silence whose matchers do not all match lets the notification through."""
    h = await harness([rule()]).start()
    await h.engine.add_silence(
        {
            "matchers": [{"name": "alertname", "value": "R"}, {"name": "severity", "value": "low"}],
            "ends_at": h.clock.time() + 600,
        },
        None,
    )
    h.source.set("error_rate", 0.9)
    await h.tick()
    assert kinds(h) == ["firing"]


# --- grouping -------------------------------------------------------------------------


async def test_thirty_offending_ips_are_one_notification(harness: Make) -> None:
    """30 per-IP alerts of one rule firing together go out as one notification of 30
    alerts once ``group_wait`` (5 s) has passed — not before."""
    h = await harness(
        [r for r in default_rules() if r.name == "AuthFailureBurstByIP"], group_wait=5.0
    ).start()
    for i in range(30):
        h.source.set("auth_failures_per_minute", 12.0, client_ip=f"203.0.113.{i}")
    await h.tick()
    await h.tick(4.9)
    assert h.sent() == []
    await h.tick(0.1)
    assert len(h.sent()) == 1 and len(h.sent()[0].alerts) == 30
    assert {a.labels["client_ip"] for a in h.sent()[0].alerts} == {
        f"203.0.113.{i}" for i in range(30)
    }


async def test_alerts_firing_within_group_wait_join_one_notification(harness: Make) -> None:
    """An IP that starts failing 3 s after the first joins the same notification."""
    h = await harness(
        [r for r in default_rules() if r.name == "AuthFailureBurstByIP"], group_wait=5.0
    ).start()
    h.source.set("auth_failures_per_minute", 12.0, client_ip="203.0.113.1")
    await h.tick()
    h.source.set("auth_failures_per_minute", 12.0, client_ip="203.0.113.2")
    await h.tick(3)
    await h.tick(2)
    assert [len(n.alerts) for n in h.sent()] == [2]


async def test_different_rules_are_different_notifications(harness: Make) -> None:
    """Grouping is per rule: two rules firing together are two notifications."""
    h = await harness([rule("A"), rule("B")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    assert sorted(n.alerts[0].labels["alertname"] for n in h.sent()) == ["A", "B"]


# --- routing --------------------------------------------------------------------------


async def test_routing_by_channel_filters_and_rule_channels(harness: Make) -> None:
    """A channel gets what its severities/types let through; a rule's ``channels`` picks
    its own targets."""
    channels = [
        RecordingChannel("ops"),
        RecordingChannel("pager", severities=["critical"]),
        RecordingChannel("sec", types=["security"]),
    ]
    h = await harness(
        [
            rule("Crit", severity="critical"),
            rule("Sec", type="security"),
            rule("Only", channels=["sec"]),
        ],
        channels,
    ).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    names = {
        c: sorted(n.alerts[0].labels["alertname"] for n in h.sent(c))
        for c in ("ops", "pager", "sec")
    }
    assert names == {"ops": ["Crit", "Sec"], "pager": ["Crit"], "sec": ["Only", "Sec"]}


# --- escalation -----------------------------------------------------------------------


async def test_escalation_boundary(harness: Make) -> None:
    """A critical alert not acknowledged within 10 m is notified to the escalation channel
    at 10 m (not at 9:59), once."""
    # The pager's filter keeps ordinary notifications out; escalation names it directly.
    channels = [RecordingChannel("ops"), RecordingChannel("pager", types=["security"])]
    h = await harness(
        [rule(severity="critical", escalate_after="10m", escalate_to=["pager"])], channels
    ).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    await h.tick(599)
    assert h.sent("pager") == []
    await h.tick(1)
    assert [n.kind for n in h.sent("pager")] == [NotificationKind.ESCALATION]
    assert h.sent("pager")[0].title.startswith("[ESCALATED]")
    await h.tick(600)
    assert len(h.sent("pager")) == 1


async def test_acknowledged_alert_is_not_escalated(harness: Make) -> None:
    """Acknowledging before ``escalate_after`` stops the escalation; the alert still resolves."""
    channels = [RecordingChannel("ops"), RecordingChannel("pager", types=["security"])]
    h = await harness(
        [rule(severity="critical")], channels, escalate_after=600.0, escalate_to=("pager",)
    ).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    await h.engine.acknowledge(h.engine.active()[0].id, "admin")
    await h.tick(700)
    assert h.sent("pager") == []
    h.source.set("error_rate", 0.0)
    await h.tick(15)
    assert kinds(h) == ["firing", "resolved"]


async def test_non_critical_alerts_do_not_escalate(harness: Make) -> None:
    """Escalation is for critical alerts only."""
    channels = [RecordingChannel("ops"), RecordingChannel("pager", types=["security"])]
    h = await harness(
        [rule(severity="high")], channels, escalate_after=60.0, escalate_to=("pager",)
    ).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    await h.tick(120)
    assert h.sent("pager") == []


# --- manual alerts, acknowledge, resolve ----------------------------------------------


async def test_manual_alert_fires_and_resolves_by_hand(harness: Make) -> None:
    """POST /alerts semantics: firing at once, notified; the same labels again return the
    same alert; resolving notifies the resolution."""
    h = await harness([]).start()
    alert, created = await h.engine.raise_manual(
        "Maintenance", Severity.LOW, AlertType.SYSTEM, "db upgrade", {"db": "main"}, "admin"
    )
    again, created_again = await h.engine.raise_manual(
        "Maintenance", Severity.LOW, AlertType.SYSTEM, "x", {"db": "main"}, "admin"
    )
    assert (created, created_again, again.id) == (True, False, alert.id)
    await h.tick()
    await h.engine.resolve(alert.id, "admin")
    await h.tick(1)
    assert kinds(h) == ["firing", "resolved"]
    with pytest.raises(AlertConflict):
        await h.engine.resolve(alert.id, "admin")


async def test_resolved_by_hand_rule_alert_waits_for_the_condition_to_clear(harness: Make) -> None:
    """An admin resolves a rule's alert while the condition still holds: it is not raised
    again until the condition first clears."""
    h = await harness([rule()]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    await h.engine.resolve(h.engine.active()[0].id, "admin")
    await h.tick(15)
    assert h.states() == {}
    h.source.set("error_rate", 0.1)
    await h.tick(15)
    h.source.set("error_rate", 0.9)
    await h.tick(15)
    assert h.states() == {"R": "firing"}
    assert kinds(h) == ["firing", "resolved", "firing"]


async def test_removed_rule_resolves_its_alerts(db: Database, clock: FakeClock) -> None:
    """A rule that is gone after a restart (turned off in config) resolves its alerts."""
    h = await Harness(db, clock, [rule()], [RecordingChannel("ops")]).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    h2 = await Harness(db, clock, [], [RecordingChannel("ops")]).start()
    await h2.tick(15)
    assert h2.states() == {} and kinds(h2) == ["resolved"]


async def test_watchdog_always_fires_when_enabled(harness: Make) -> None:
    """The Watchdog rule (off by default) fires with no signal data and repeats each cooldown."""
    rules = default_rules(rules=[{"name": "Watchdog", "enabled": True, "cooldown": "5m"}])
    h = await harness([r for r in rules if r.name == "Watchdog"]).start()
    await h.tick()
    await h.tick(300)
    assert kinds(h) == ["firing", "repeat"]
    assert not [r for r in default_rules() if r.name == "Watchdog" and r.enabled]


async def test_logs_url_covers_the_alert_time_range(harness: Make) -> None:
    """Annotations carry a logs_url under public_url with since (lookback before the start)
    and until."""
    h = await harness([rule()], public_url="https://chat.example", logs_lookback=300.0).start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    url = h.engine.active()[0].annotations["logs_url"]
    assert url.startswith("https://chat.example/api/v1/admin/chat/logs?since=")
    assert "until=" in url


async def test_active_counts_reach_the_metrics_gauge(db: Database, clock: FakeClock) -> None:
    """``chat_alerts_active{severity}`` follows the engine through ChatMetrics' hook."""
    registry = CollectorRegistry()
    metrics = ChatMetrics(registry, clock, MetricsSettings(), live=LiveChat(EventBus(), clock).hub)
    h = Harness(
        db,
        clock,
        [rule(severity="high"), rule("L", severity="low", for_="1m")],
        [RecordingChannel("ops")],
    )
    h.engine.counter = metrics
    await h.start()
    h.source.set("error_rate", 0.9)
    await h.tick()
    got = {
        s: registry.get_sample_value("chat_alerts_active", {"severity": s})
        for s in ("low", "high", "critical")
    }
    assert got == {"low": 1.0, "high": 1.0, "critical": 0.0}


# --- restarts (SQLite and PostgreSQL) -------------------------------------------------


async def test_restart_in_the_middle_of_pending_keeps_the_start(
    any_db: Database, clock: FakeClock
) -> None:
    """A new engine over the same database continues a pending alert from its stored start:
    it fires when ``for`` has elapsed since the first sighting, not since the restart."""
    h1 = await Harness(any_db, clock, [rule(for_="60s")], [RecordingChannel("ops")]).start()
    h1.source.set("error_rate", 0.9)
    await h1.tick()
    started = h1.engine.active()[0].starts_at
    await h1.tick(40)
    h2 = await Harness(any_db, clock, [rule(for_="60s")], [RecordingChannel("ops")]).start()
    h2.source.set("error_rate", 0.9)
    assert [(a.state, a.starts_at) for a in h2.engine.active()] == [(AlertState.PENDING, started)]
    await h2.tick(20)
    assert h2.states() == {"R": "firing"} and kinds(h2) == ["firing"]


async def test_restart_while_firing_sends_no_duplicate(any_db: Database, clock: FakeClock) -> None:
    """An alert notified firing before a restart is not notified firing again after it; its
    resolution later is notified once."""
    h1 = await Harness(any_db, clock, [rule()], [RecordingChannel("ops")]).start()
    h1.source.set("error_rate", 0.9)
    await h1.tick()
    assert kinds(h1) == ["firing"]
    h2 = await Harness(any_db, clock, [rule()], [RecordingChannel("ops")]).start()
    h2.source.set("error_rate", 0.9)
    await h2.tick(15)
    await h2.tick(15)
    assert kinds(h2) == []
    h2.source.set("error_rate", 0.1)
    await h2.tick(15)
    await h2.tick(15)
    assert kinds(h2) == ["resolved"]
    items, _ = await h2.store.history(10)
    assert [(a.state, a.notified.value) for a in items] == [(AlertState.RESOLVED, "resolved")]


async def test_restart_before_the_group_was_flushed_still_notifies(
    any_db: Database, clock: FakeClock
) -> None:
    """An alert that fired but whose group was still waiting when the process stopped is
    notified by the next engine."""
    h1 = await Harness(any_db, clock, [rule()], [RecordingChannel("ops")], group_wait=5.0).start()
    h1.source.set("error_rate", 0.9)
    await h1.tick()
    assert kinds(h1) == []
    h2 = await Harness(any_db, clock, [rule()], [RecordingChannel("ops")], group_wait=5.0).start()
    h2.source.set("error_rate", 0.9)
    await h2.tick(1)
    await h2.tick(5)
    assert kinds(h2) == ["firing"]


async def test_restart_keeps_silences_and_acknowledgements(
    any_db: Database, clock: FakeClock
) -> None:
    """Silences and acknowledgements are stored: a new engine knows them."""
    h1 = await Harness(any_db, clock, [rule()], [RecordingChannel("ops")]).start()
    h1.source.set("error_rate", 0.9)
    await h1.tick()
    await h1.engine.acknowledge(h1.engine.active()[0].id, "alice")
    await h1.engine.add_silence(
        {"matchers": [{"name": "alertname", "value": "X"}], "ends_at": clock.time() + 60}, "alice"
    )
    h2 = await Harness(any_db, clock, [rule()], [RecordingChannel("ops")]).start()
    assert [a.acknowledged_by for a in h2.engine.active()] == ["alice"]
    assert len(h2.engine.silences()) == 1
