"""An SLO rule exported as Prometheus rules: ``promtool check rules`` accepts it and a
``promtool test rules`` case shows both pairs firing on a 10% error burn, and only 6h/30m
once the errors stopped 10 minutes earlier (1h/5m needs its 5 m window burning too)."""

from __future__ import annotations

from pathlib import Path

import yaml

from chatwatch.alerts.export import prometheus_rules
from chatwatch.alerts.rules import build_rule
from tests.alerts.test_export import promtool

SLO = {"name": "Availability", "kind": "slo", "objective": 0.995, "type": "error"}

ANNOTATIONS = """
              summary: "Messages fail fast enough to spend the 0.995 SLO's budget early"
              objective: "0.995"
              burn_rate: "{rate}"
"""

UNIT_TESTS = (
    """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'chat_messages_received_total{type="message"}'
        values: '0+100x90'
      - series: 'chat_message_errors_total{code="internal"}'
        values: '0+10x90'
    alert_rule_test:
      - eval_time: 65m
        alertname: Availability
        exp_alerts:
          - exp_labels: {severity: critical, type: error, burn: 1h/5m}
            exp_annotations:"""
    + ANNOTATIONS.format(rate="14.4")
    + """
          - exp_labels: {severity: high, type: error, burn: 6h/30m}
            exp_annotations:"""
    + ANNOTATIONS.format(rate="6")
    + """
  - interval: 1m
    input_series:
      - series: 'chat_messages_received_total{type="message"}'
        values: '0+100x90'
      - series: 'chat_message_errors_total{code="internal"}'
        values: '0+10x55 550+0x35'
    alert_rule_test:
      - eval_time: 65m
        alertname: Availability
        exp_alerts:
          - exp_labels: {severity: high, type: error, burn: 6h/30m}
            exp_annotations:"""
    + ANNOTATIONS.format(rate="6")
)


def test_slo_rule_exports_to_promtool_checked_burn_rate_rules(tmp_path: Path) -> None:
    """Two alerts (1h/5m critical at 14.4x, 6h/30m high at 6x) pass check and unit tests."""
    text = prometheus_rules([build_rule(SLO)], window=300.0)
    parsed = yaml.safe_load(text)["groups"][0]["rules"]
    assert [(r["labels"]["burn"], r["labels"]["severity"]) for r in parsed] == [
        ("1h/5m", "critical"),
        ("6h/30m", "high"),
    ]
    assert all("increase(" in r["expr"] and "0.072" in parsed[0]["expr"] for r in parsed)
    (tmp_path / "rules.yml").write_text(text)
    (tmp_path / "tests.yml").write_text(UNIT_TESTS)
    checked = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
