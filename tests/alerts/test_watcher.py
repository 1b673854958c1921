"""The watcher is watched: outbox backlog, dropped log records and free disk space as
signals, with default rules on an injected clock and fake probes, the real outbox count,
and the Prometheus export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chatwatch.alerts.export import prometheus_rules
from chatwatch.alerts.notification import Notification, NotificationKind
from chatwatch.alerts.rules import Rule
from chatwatch.alerts.store import AlertStore
from chatwatch.alerts.watcher import BACKLOG_AGE, DroppedPerMinute, WatcherSource, disk_free
from chatwatch.clock import FakeClock
from chatwatch.store.db import Database
from tests.alerts.conftest import FakeSource, Harness, default_rules

Make = Callable[..., Harness]
GIB = float(1 << 30)
WATCHER_RULES = ("AlertOutboxBacklog", "LogRecordsDropped", "LowDiskSpace")


class Probes:
    """Values the test sets for the watcher's probes."""

    def __init__(self) -> None:
        self.backlog = 0
        self.dropped = 0.0
        self.free: float | None = 10 * GIB
        self.asked_before: list[float] = []

    async def outbox_backlog(self, created_before: float) -> int:
        self.asked_before.append(created_before)
        return self.backlog


def watched(h: Harness, probes: Probes) -> None:
    """Put a WatcherSource over the harness's fake source."""
    h.engine.source = WatcherSource(
        h.source,
        h.clock,
        outbox_backlog=probes.outbox_backlog,
        dropped=DroppedPerMinute(lambda: probes.dropped, h.clock),
        free_bytes=lambda: probes.free,
    )


def only(names: tuple[str, ...]) -> list[Rule]:
    return [r for r in default_rules() if r.name in names]


async def test_low_disk_fires_after_five_minutes_and_resolves(harness: Make) -> None:
    """LowDiskSpace: 900 MiB free stays pending for 5 minutes, then fires once (high,
    system); 2 GiB free resolves it. Plenty of space never alerts."""
    h = await harness(only(WATCHER_RULES)).start()
    probes = Probes()
    watched(h, probes)
    await h.tick()
    assert h.states() == {}
    probes.free = 900 * (1 << 20)
    await h.tick(1)
    assert h.states() == {"LowDiskSpace": "pending"}
    await h.tick(299)
    assert h.states() == {"LowDiskSpace": "pending"}
    await h.tick(1)
    assert h.states() == {"LowDiskSpace": "firing"}
    [fired] = h.sent()
    assert fired.alerts[0].labels["severity"] == "high"
    assert fired.alerts[0].labels["type"] == "system"
    probes.free = 2 * GIB
    await h.tick(15)
    assert h.states() == {}
    assert [n.kind for n in h.sent()] == [NotificationKind.FIRING, NotificationKind.RESOLVED]


async def test_unreadable_disk_is_no_data(harness: Make) -> None:
    """A probe that cannot read the disk (None) neither fires nor resolves."""
    h = await harness(only(("LowDiskSpace",))).start()
    probes = Probes()
    probes.free = None
    watched(h, probes)
    await h.tick(600)
    assert h.states() == {}


async def test_outbox_backlog_fires_after_a_minute(harness: Make) -> None:
    """AlertOutboxBacklog: the probe is asked for rows older than 5 minutes; one such row for
    a minute fires the alert, none resolves it."""
    h = await harness(only(("AlertOutboxBacklog",))).start()
    probes = Probes()
    watched(h, probes)
    probes.backlog = 1
    await h.tick()
    assert h.states() == {"AlertOutboxBacklog": "pending"}
    assert probes.asked_before[-1] == h.clock.time() - BACKLOG_AGE
    await h.tick(60)
    assert h.states() == {"AlertOutboxBacklog": "firing"}
    probes.backlog = 0
    await h.tick(15)
    assert h.states() == {}


async def test_dropped_log_records_fire_at_once_and_clear_after_a_quiet_minute(
    harness: Make,
) -> None:
    """LogRecordsDropped: the dropped total growing by 3 fires at once; a minute without
    growth resolves it (the counter itself never goes down)."""
    h = await harness(only(("LogRecordsDropped",))).start()
    probes = Probes()
    watched(h, probes)
    await h.tick()
    assert h.states() == {}
    probes.dropped = 3
    await h.tick(15)
    assert h.states() == {"LogRecordsDropped": "firing"}
    assert h.engine.active()[0].annotations["value"] == "3"
    await h.tick(30)
    assert h.states() == {"LogRecordsDropped": "firing"}
    await h.tick(45)
    assert h.states() == {}


def test_dropped_per_minute_counts_growth_over_the_last_minute() -> None:
    """Growth against the newest sample a minute old: 0, 5, then 2 more, then 0 after a
    quiet minute."""
    clock = FakeClock()
    total = [0.0]
    rate = DroppedPerMinute(lambda: total[0], clock)
    assert rate.read() == 0
    total[0] = 5
    clock.advance(10)
    assert rate.read() == 5
    clock.advance(55)
    total[0] = 7
    assert rate.read() == 7  # the baseline is the first sample, 65 s ago
    clock.advance(61)
    assert rate.read() == 0


def test_disk_free_reads_the_data_dir(tmp_path: Path) -> None:
    """The real probe gives the free bytes of a directory, and None for a missing one."""
    free = disk_free(tmp_path)()
    assert free is not None and free > 0
    assert disk_free(tmp_path / "missing")() is None


async def test_outbox_backlog_counts_old_waiting_rows(db: Database) -> None:
    """The store counts queued rows stored before the cut, not newer ones."""
    store = AlertStore(db)

    def note(at: float) -> Notification:
        return Notification(
            id=f"n{at:.0f}".ljust(32, "0"),
            channel="ops",
            kind=NotificationKind.FIRING,
            group_key='{}:{alertname="X"}',
            group_labels={"alertname": "X"},
            alerts=(),
            external_url="http://x",
            created_at=at,
        )

    await store.enqueue([note(100.0)], (), 100.0)
    await store.enqueue([note(500.0)], (), 500.0)
    assert await store.outbox_backlog(50.0) == 0
    assert await store.outbox_backlog(200.0) == 1
    assert await store.outbox_backlog(600.0) == 2


def test_export_has_dropped_records_and_names_the_rules_without_a_metric() -> None:
    """LogRecordsDropped exports over chat_log_records_dropped_total; the backlog and disk
    rules have no metric and are listed as not exported."""
    text = prometheus_rules(default_rules(), window=300)
    assert '- alert: "LogRecordsDropped"' in text
    assert "increase(chat_log_records_dropped_total[1m])" in text
    not_exported = text.split("# Not exported:")[1]
    assert "AlertOutboxBacklog: signal alert_outbox_backlog has no PromQL form" in not_exported
    assert "LowDiskSpace: signal data_dir_free_bytes has no PromQL form" in not_exported


async def test_watcher_keeps_the_inner_signals() -> None:
    """The wrapped source's signals are still there beside the watcher's."""
    inner = FakeSource()
    inner.set("error_rate", 0.5, 20)
    source = WatcherSource(inner, FakeClock(), free_bytes=lambda: 1.0)
    reading = source.read()
    assert [s.value for s in reading.series("error_rate")] == [0.5]
    assert [s.value for s in reading.series("data_dir_free_bytes")] == [1.0]
    assert list(reading.series("alert_outbox_backlog")) == []
