"""The default rules of SPEC §6 (fixed names) and how the configuration changes them.

A ``[[alerts.rules]]`` entry whose name is a default rule's changes only the fields it
sets (``enabled = false`` turns the rule off); any other entry is a rule of its own and
must set ``signal``, ``op`` and ``threshold``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatwatch.alerts.rules import Rule, RuleError, RuleSource, build_rule

if TYPE_CHECKING:
    from chatwatch.config import AlertsSettings

__all__ = ["DEFAULT_RULES", "compile_rules"]

# ``min_samples`` keeps a handful of events in a quiet window from deciding a rate.
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "HighErrorRate": {
        "signal": "error_rate",
        "op": ">",
        "threshold": 0.05,
        "for": "1m",
        "severity": "high",
        "type": "error",
        "summary": "More than 5% of messages fail",
        "min_samples": 10,
    },
    "LowConnectionSuccessRate": {
        "signal": "connection_success_rate",
        "op": "<",
        "threshold": 0.95,
        "for": "2m",
        "severity": "medium",
        "type": "connection",
        "summary": "Fewer than 95% of connection attempts succeed",
        "min_samples": 10,
    },
    "SlowResponses": {
        "signal": "response_time_p95_seconds",
        "op": ">",
        "threshold": 2.0,
        "for": "5m",
        "severity": "medium",
        "type": "performance",
        "summary": "P95 response time is above 2 s",
        "min_samples": 10,
    },
    "LowCacheHitRate": {
        "signal": "cache_hit_rate",
        "op": "<",
        "threshold": 0.70,
        "for": "10m",
        "severity": "low",
        "type": "performance",
        "summary": "AI cache hit rate is below 70%",
        "min_samples": 20,
    },
    "HighAICost": {
        "signal": "ai_cost_usd_24h",
        "op": ">",
        "threshold": 100.0,
        "for": "0s",
        "severity": "high",
        "type": "ai",
        "summary": "AI spend over the last 24 h is above $100",
        "cooldown": "6h",
    },
    "HighAIErrorRate": {
        "signal": "ai_error_rate",
        "op": ">",
        "threshold": 0.20,
        "for": "1m",
        "severity": "high",
        "type": "ai",
        "summary": "More than 20% of AI calls fail",
        "min_samples": 5,
    },
    # Off by default: one user running up cost (user_id is an alert label, never a metric's).
    "HighAICostPerUser": {
        "signal": "ai_cost_usd_24h",
        "by": ["user_id"],
        "op": ">",
        "threshold": 20.0,
        "for": "0s",
        "severity": "medium",
        "type": "ai",
        "summary": "One user's AI spend over the last 24 h is above $20",
        "cooldown": "6h",
        "enabled": False,
    },
    "AuthFailureBurst": {
        "signal": "auth_failures_per_minute",
        "op": ">",
        "threshold": 10.0,
        "for": "0s",
        "severity": "high",
        "type": "security",
        "summary": "More than 10 authentication failures a minute",
    },
    "AuthFailureBurstByIP": {
        "signal": "auth_failures_per_minute",
        "by": ["client_ip"],
        "op": ">",
        "threshold": 10.0,
        "for": "0s",
        "severity": "high",
        "type": "security",
        "summary": "More than 10 authentication failures a minute from one address",
    },
    # The watcher is watched: alerting, logging and the disk they write to.
    "AlertOutboxBacklog": {
        "signal": "alert_outbox_backlog",
        "op": ">",
        "threshold": 0.0,
        "for": "1m",
        "severity": "high",
        "type": "system",
        "summary": "Alert notifications have waited more than 5 minutes to be delivered",
    },
    "LogRecordsDropped": {
        "signal": "log_records_dropped_per_minute",
        "op": ">",
        "threshold": 0.0,
        "for": "0s",
        "severity": "medium",
        "type": "system",
        "summary": "Log records were dropped before reaching the log store",
        "cooldown": "1h",
    },
    "LowDiskSpace": {
        "signal": "data_dir_free_bytes",
        "op": "<",
        "threshold": float(1 << 30),
        "for": "5m",
        "severity": "high",
        "type": "system",
        "summary": "Less than 1 GiB free in server.data_dir",
    },
    # The dead-man's switch: always firing once enabled, re-notified every cooldown, so a
    # receiver that stops hearing it knows alerting itself is down.
    "Watchdog": {
        "signal": "watchdog",
        "op": ">",
        "threshold": 0.0,
        "for": "0s",
        "severity": "low",
        "type": "system",
        "summary": "Alerting works: this alert always fires",
        "enabled": False,
    },
}


def compile_rules(settings: AlertsSettings) -> list[Rule]:
    """The rules in force from the defaults and ``alerts.rules``; ValueError naming the key."""
    channel_names = {c.name for c in settings.channels}
    defaults = DEFAULT_RULES if settings.default_rules else {}
    rules: dict[str, Rule] = {}
    for name, spec in defaults.items():
        rules[name] = build_rule({"name": name, **spec}, source=RuleSource.DEFAULT)
    for index, entry in enumerate(settings.rules):
        given = entry.model_dump(by_alias=True, exclude_unset=True)
        base = defaults.get(entry.name, {})
        try:
            rule = build_rule(
                {**base, **given, "name": entry.name},
                source=RuleSource.CONFIG,
                channels=channel_names,
            )
        except RuleError as err:
            raise ValueError(f"alerts.rules.{index}.{err.field}: {err.message}") from None
        rules[entry.name] = rule
    return list(rules.values())
