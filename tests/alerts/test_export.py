"""``chatwatch rules export --format prometheus``: a rules file promtool accepts, with
``promtool test rules`` unit tests for the error-rate and auth-failure rules; and
``chatwatch alerts test --channel`` against a real receiver."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from chatwatch.alerts.defaults import compile_rules
from chatwatch.alerts.export import prometheus_rules
from chatwatch.alerts.signals_port import SIGNALS
from chatwatch.alerts.store import AlertStore
from chatwatch.cli import app
from chatwatch.config import AlertsSettings
from chatwatch.store.db import Database
from tests.alerts.receiver import run_receiver
from tests.observe.promtool import find_or_install_promtool

CHATWATCH = Path(sys.executable).with_name("chatwatch")

UNIT_TESTS = """
rule_files:
  - rules.yml
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'chat_message_errors_total{code="internal"}'
        values: '0+0x20 0+3x60'
      - series: 'chat_message_errors_total{code="rate_limited"}'
        values: '0+50x80'
      - series: 'chat_messages_received_total{type="message"}'
        values: '0+10x80'
    alert_rule_test:
      - eval_time: 4m
        alertname: HighErrorRate
        exp_alerts: []
      - eval_time: 15m
        alertname: HighErrorRate
        exp_alerts:
          - exp_labels: {severity: high, type: error}
            exp_annotations: {summary: "More than 5% of messages fail", value: "0.3"}
  - interval: 1m
    input_series:
      - series: 'chat_message_errors_total{code="internal"}'
        values: '0+1x20'
      - series: 'chat_messages_received_total{type="message"}'
        values: '0+1x20'
    alert_rule_test:
      - eval_time: 15m
        alertname: HighErrorRate
        exp_alerts: []
  - interval: 5s
    input_series:
      - series: 'chat_security_events_total{type="auth_failed"}'
        values: '0+0x24 0+1x24 24+0x24'
    alert_rule_test:
      - eval_time: 1m
        alertname: AuthFailureBurst
        exp_alerts: []
      - eval_time: 3m30s
        alertname: AuthFailureBurst
        exp_alerts:
          - exp_labels: {severity: high, type: security}
            exp_annotations: {summary: "More than 10 authentication failures a minute", value: "12"}
      - eval_time: 6m
        alertname: AuthFailureBurst
        exp_alerts: []
  - interval: 5s
    input_series:
      - series: 'chat_security_events_total{type="auth_failed"}'
        values: '0+0x24 0+2x5 10+0x24'
    alert_rule_test:
      - eval_time: 2m30s
        alertname: AuthFailureBurst
        exp_alerts: []
"""


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_or_install_promtool(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No outside CHATWATCH_* variable applies; the data dir is this test's tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith("CHATWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATWATCH_SERVER__DATA_DIR", str(tmp_path))
    return tmp_path


def export(*args: str) -> Any:
    return CliRunner().invoke(app, ["rules", "export", *args])


def test_default_rules_pass_promtool_check_and_unit_tests(tmp_path: Path) -> None:
    """The exported defaults pass ``promtool check rules``; unit tests show HighErrorRate
    fires on 30% service errors (not on client rate-limit errors, min_samples holding it
    back on a trickle) and AuthFailureBurst on 12 failures a minute, not on 10 at once."""
    result = export()
    assert result.exit_code == 0, result.output
    (tmp_path / "rules.yml").write_text(result.output)
    (tmp_path / "tests.yml").write_text(UNIT_TESTS)
    checked = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_signal_exports_to_valid_promql(tmp_path: Path) -> None:
    """A rule per signal (labels, min_samples, hysteresis included) gives a file promtool
    accepts; the per-IP rule is named in a comment instead (IPs are not metric labels)."""
    rules = [
        {
            "name": f"R_{name}",
            "signal": name,
            "op": "<",
            "threshold": 1,
            "min_samples": 5,
            "labels": {"team": 'a "quoted" team'},
            "resolve_threshold": 2,
        }
        for name in SIGNALS
    ]
    settings = AlertsSettings(rules=rules)
    text = prometheus_rules(compile_rules(settings), window=300)
    path = tmp_path / "rules.yml"
    path.write_text(text)
    checked = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    parsed = yaml.safe_load(text)
    names = {r["alert"] for r in parsed["groups"][0]["rules"]}
    # The watcher's outbox and disk signals have no metric: named in a comment instead.
    no_metric = {"alert_outbox_backlog", "data_dir_free_bytes"}
    assert {f"R_{s}" for s in SIGNALS if s not in no_metric} <= names
    assert all(f"R_{s}: signal {s} has no PromQL form" in text for s in no_metric)
    assert "AuthFailureBurstByIP: split by client_ip" in text
    assert parsed["groups"][0]["rules"][-1]["labels"]["team"] == 'a "quoted" team'


def test_export_follows_the_config(tmp_path: Path) -> None:
    """A default turned off in config is not exported; a changed threshold is."""
    config = tmp_path / "chatwatch.toml"
    config.write_text(
        '[[alerts.rules]]\nname = "HighErrorRate"\nthreshold = 0.2\n\n'
        '[[alerts.rules]]\nname = "SlowResponses"\nenabled = false\n'
    )
    out = tmp_path / "out.yml"
    result = export("--config", str(config), "--output", str(out))
    assert result.exit_code == 0, result.output
    rules = {r["alert"]: r for r in yaml.safe_load(out.read_text())["groups"][0]["rules"]}
    assert "SlowResponses" not in rules and ") > 0.2 and on()" in rules["HighErrorRate"]["expr"]


def test_export_includes_rules_stored_through_the_api(tmp_path: Path) -> None:
    """Rules created through the API (stored in the database) are exported too."""

    async def store_rule() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'chatwatch.db'}")
        await db.migrate()
        spec = {"name": "ApiRule", "signal": "active_connections", "op": ">", "threshold": 500}
        await AlertStore(db).insert_rule(spec, 1.0)
        await db.dispose()

    asyncio.run(store_rule())
    result = export()
    assert result.exit_code == 0, result.output
    assert "ApiRule" in {r["alert"] for r in yaml.safe_load(result.output)["groups"][0]["rules"]}


def test_export_refuses_an_unknown_format() -> None:
    """Only the prometheus format exists: anything else exits 2 naming the option."""
    result = export("--format", "nagios")
    assert result.exit_code == 2 and "--format" in result.output


async def test_alerts_test_sends_through_the_channel(tmp_path: Path) -> None:
    """``chatwatch alerts test --channel hook`` posts a test notification to the receiver;
    an unknown channel exits 2 listing the configured ones."""
    async with run_receiver() as rx:
        config = tmp_path / "chatwatch.toml"
        config.write_text(
            f'[[alerts.channels]]\nname = "hook"\nkind = "webhook"\nurl = "{rx.url}"\n'
        )
        env = {**os.environ, "CHATWATCH_SERVER__DATA_DIR": str(tmp_path)}
        ok = await asyncio.create_subprocess_exec(
            CHATWATCH,
            "alerts",
            "test",
            "--channel",
            "hook",
            "--config",
            str(config),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await ok.communicate()
        bad = await asyncio.create_subprocess_exec(
            CHATWATCH,
            "alerts",
            "test",
            "--channel",
            "nope",
            "--config",
            str(config),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, bad_err = await bad.communicate()
    assert ok.returncode == 0, err.decode()
    [req] = rx.requests
    body = req.json()
    assert body["groupLabels"] == {"alertname": "ChatwatchTest"} and body["version"] == "4"
    assert bad.returncode == 2 and b"hook" in bad_err
