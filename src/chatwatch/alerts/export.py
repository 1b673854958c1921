"""The rules as a Prometheus alerting-rules file (PromQL over the SPEC §7 metric names).

Each signal maps to a PromQL expression over the metrics ``/metrics`` exports, with the
rate window of ``metrics.window``; a rule's ``min_samples`` becomes an ``and`` on the event
count behind the rate. What PromQL cannot say is left out with a comment naming the rule:
per-IP rules (IPs are never metric labels, SPEC §7) and ``resolve_threshold`` hysteresis
(Prometheus resolves at the threshold). Scalars are written as JSON strings, which YAML reads
as double-quoted strings, so no YAML library is needed and no value can break the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from chatwatch.alerts.rules import Rule, RuleKind, format_duration
from chatwatch.alerts.slo import BURN_PAIRS

__all__ = ["PromQuery", "prometheus_rules", "query_for"]


@dataclass(frozen=True, slots=True)
class PromQuery:
    """The PromQL of a signal's value, and of the events behind it (None: not a rate)."""

    value: str
    samples: str | None = None


def query_for(signal: str, window: float) -> PromQuery | None:
    """The PromQL for ``signal`` over a ``window``-second rate window (None: unknown)."""
    w = format_duration(window)
    handled = f'sum(increase(chat_messages_received_total{{type=~"message|quick_action"}}[{w}]))'
    opened = f"sum(increase(chat_connections_opened_total[{w}]))"
    attempts = f"({opened} + (sum(increase(chat_connections_failed_total[{w}])) or vector(0)))"
    lookups = f"sum(increase(chat_cache_requests_total[{w}]))"
    ai_calls = f"sum(increase(chat_ai_requests_total[{w}]))"
    mistakes = (
        "sum(increase(chat_message_errors_total"
        f'{{code=~"invalid_json|invalid_frame|message_too_large|rate_limited"}}[{w}]))'
    )
    frames = f"(sum(increase(chat_messages_received_total[{w}])) + {mistakes})"
    queries = {
        "client_error_rate": PromQuery(f"{mistakes} / {frames}", frames),
        "error_rate": PromQuery(
            f'sum(increase(chat_message_errors_total{{code=~"internal|ai_unavailable"}}[{w}]))'
            f" / {handled}",
            handled,
        ),
        "connection_success_rate": PromQuery(f"{opened} / {attempts}", attempts),
        "response_time_p95_seconds": PromQuery(
            f"histogram_quantile(0.95, sum by (le) (rate(chat_response_seconds_bucket[{w}])))",
            f"sum(increase(chat_response_seconds_count[{w}]))",
        ),
        "ai_response_time_p95_seconds": PromQuery(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(chat_ai_request_duration_seconds_bucket[{w}])))",
            f"sum(increase(chat_ai_request_duration_seconds_count[{w}]))",
        ),
        "cache_hit_rate": PromQuery(
            f'sum(increase(chat_cache_requests_total{{result="hit"}}[{w}])) / {lookups}', lookups
        ),
        "ai_cost_usd_24h": PromQuery("sum(increase(chat_ai_cost_usd_total[24h]))"),
        "ai_error_rate": PromQuery(
            f'sum(increase(chat_ai_requests_total{{outcome!="success"}}[{w}])) / {ai_calls}',
            ai_calls,
        ),
        "auth_failures_per_minute": PromQuery(
            'sum(increase(chat_security_events_total{type="auth_failed"}[1m]))'
        ),
        "active_connections": PromQuery("sum(chat_connections_active)"),
        "messages_per_second": PromQuery(f"sum(rate(chat_messages_received_total[{w}]))"),
        "event_loop_lag_seconds": PromQuery("max(chat_event_loop_lag_seconds)"),
        "memory_rss_bytes": PromQuery("max(process_resident_memory_bytes)"),
        "log_records_dropped_per_minute": PromQuery(
            "sum(increase(chat_log_records_dropped_total[1m]))"
        ),
        # alert_outbox_backlog and data_dir_free_bytes have no metric: left out, named.
        "watchdog": PromQuery("vector(1)"),
    }
    return queries.get(signal)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _expr(rule: Rule, query: PromQuery) -> str:
    expr = f"({query.value}) {rule.op.value} {rule.threshold:g}"
    if rule.min_samples and query.samples is not None:
        expr += f" and on() ({query.samples}) >= {rule.min_samples}"
    return expr


def _slo_rules(rule: Rule) -> list[str]:
    """One Prometheus alert per burn-rate pair: both windows' error ratios over the rate."""
    budget = 1.0 - (rule.objective or 0.0)
    out: list[str] = []
    for pair in BURN_PAIRS:
        limit = f"{pair.factor * budget:.6g}"
        ratios = [f"({_error_ratio(span)}) > {limit}" for span in (pair.long_s, pair.short_s)]
        out += [
            f"      - alert: {_q(rule.name)}",
            f"        expr: {_q(' and '.join(ratios))}",
            f"        for: {format_duration(rule.for_s)}",
            "        labels:",
            f"          severity: {_q(pair.severity.value)}",
            f"          type: {_q(rule.type.value)}",
            f"          burn: {_q(pair.label)}",
        ]
        out += [f"          {k}: {_q(v)}" for k, v in sorted(rule.labels.items())]
        out += [
            "        annotations:",
            f"          summary: {_q(rule.summary)}",
            f"          objective: {_q(f'{rule.objective:g}')}",
            f"          burn_rate: {_q(f'{pair.factor:g}')}",
        ]
    return out


def _error_ratio(span: float) -> str:
    query = query_for("error_rate", span)
    assert query is not None  # error_rate always has a PromQL form
    return query.value


def prometheus_rules(rules: Iterable[Rule], *, window: float, group: str = "chatwatch") -> str:
    """A Prometheus rules file (YAML) for the enabled ``rules``."""
    lines = [
        "# chatwatch alert rules for Prometheus (chatwatch rules export --format prometheus).",
        "# Check with: promtool check rules <this file>",
        "groups:",
        f"  - name: {_q(group)}",
        "    rules:",
    ]
    skipped: list[str] = []
    count = 0
    for rule in rules:
        query = query_for(rule.signal, window)
        if not rule.enabled:
            skipped.append(f"{rule.name}: disabled")
            continue
        if rule.kind is RuleKind.SLO:
            slo_lines = _slo_rules(rule)
            count += len(BURN_PAIRS)
            lines += slo_lines
            continue
        if rule.by:
            skipped.append(f"{rule.name}: split by {', '.join(rule.by)}, which no metric carries")
            continue
        if query is None:
            skipped.append(f"{rule.name}: signal {rule.signal} has no PromQL form")
            continue
        count += 1
        lines += [
            f"      - alert: {_q(rule.name)}",
            f"        expr: {_q(_expr(rule, query))}",
            f"        for: {format_duration(rule.for_s)}",
            "        labels:",
            f"          severity: {_q(rule.severity.value)}",
            f"          type: {_q(rule.type.value)}",
        ]
        lines += [f"          {k}: {_q(v)}" for k, v in sorted(rule.labels.items())]
        summary = rule.summary or f"{rule.signal} {rule.op.value} {rule.threshold:g}"
        lines += [
            "        annotations:",
            f"          summary: {_q(summary)}",
            f"          value: {_q('{{ $value }}')}",
        ]
        if rule.resolve_threshold is not None:
            lines.append(
                f"        # resolve_threshold {rule.resolve_threshold:g} is not expressible: "
                "Prometheus resolves at the threshold"
            )
    if count == 0:
        lines[-1] = "    rules: []"
    if skipped:
        lines.append("# Not exported:")
        lines += [f"#   {s}" for s in skipped]
    return "\n".join(lines) + "\n"
