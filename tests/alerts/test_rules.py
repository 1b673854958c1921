"""Rules: the one validator for config and API rules, the defaults and how config changes
them, durations, and silence matchers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatwatch.alerts.defaults import DEFAULT_RULES, compile_rules
from chatwatch.alerts.rules import Op, RuleError, RuleSource, build_rule, format_duration
from chatwatch.alerts.silences import parse_matchers
from chatwatch.config import AlertsSettings, ConfigError, load_settings, parse_duration

SPEC_DEFAULTS = {
    "HighErrorRate": ("error_rate", ">", 0.05),
    "LowConnectionSuccessRate": ("connection_success_rate", "<", 0.95),
    "SlowResponses": ("response_time_p95_seconds", ">", 2.0),
    "LowCacheHitRate": ("cache_hit_rate", "<", 0.70),
    "HighAICost": ("ai_cost_usd_24h", ">", 100.0),
    "AuthFailureBurst": ("auth_failures_per_minute", ">", 10.0),
    "AuthFailureBurstByIP": ("auth_failures_per_minute", ">", 10.0),
}


def test_default_rules_are_spec_s() -> None:
    """The seven default rules of SPEC §6, on, with their signals and thresholds; both
    auth-failure rules with ``for: 0s``, the per-IP one split by client_ip as a security alert."""
    rules = {r.name: r for r in compile_rules(AlertsSettings())}
    got = {n: (r.signal, r.op.value, r.threshold) for n, r in rules.items() if n in SPEC_DEFAULTS}
    assert got == SPEC_DEFAULTS
    assert all(rules[n].enabled and rules[n].source is RuleSource.DEFAULT for n in SPEC_DEFAULTS)
    by_ip = rules["AuthFailureBurstByIP"]
    assert (by_ip.by, by_ip.for_s, by_ip.type.value) == (("client_ip",), 0.0, "security")
    assert rules["AuthFailureBurst"].for_s == 0.0
    assert rules["Watchdog"].enabled is False


def test_config_changes_only_the_fields_it_sets() -> None:
    """Naming a default rule in config changes the given fields and keeps the rest."""
    settings = AlertsSettings(
        rules=[
            {"name": "HighErrorRate", "threshold": 0.1, "for": "5m"},
            {"name": "SlowResponses", "enabled": False},
        ]
    )
    rules = {r.name: r for r in compile_rules(settings)}
    high = rules["HighErrorRate"]
    assert (high.threshold, high.for_s, high.signal, high.severity.value, high.source) == (
        0.1,
        300.0,
        "error_rate",
        "high",
        RuleSource.CONFIG,
    )
    assert rules["SlowResponses"].enabled is False


def test_default_rules_off_leaves_only_config_rules() -> None:
    """``default_rules = false``: none of the defaults, config rules still there."""
    settings = AlertsSettings(
        default_rules=False,
        rules=[{"name": "Mine", "signal": "active_connections", "op": ">", "threshold": 5}],
    )
    assert [r.name for r in compile_rules(settings)] == ["Mine"]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[[alerts.rules]]\nname = "New"\nop = ">"\nthreshold = 1\n', "alerts.rules.0.signal"),
        (
            '[[alerts.rules]]\nname = "New"\nsignal = "nope"\nop = ">"\nthreshold = 1\n',
            "alerts.rules.0.signal",
        ),
        (
            '[[alerts.rules]]\nname = "New"\nsignal = "error_rate"\nop = ">"\nthreshold = -1\n',
            "alerts.rules.0.threshold",
        ),
        (
            '[[alerts.rules]]\nname = "HighErrorRate"\nchannels = ["pager"]\n',
            "alerts.rules.0.channels",
        ),
        (
            '[[alerts.rules]]\nname = "HighErrorRate"\nresolve_threshold = 0.9\n',
            "alerts.rules.0.resolve_threshold",
        ),
        (
            '[[alerts.rules]]\nname = "A"\nsignal = "error_rate"\nop = ">"\nthreshold = 1\n' * 2,
            "alerts.rules.1.name",
        ),
        ('[alerts]\ngroup_wait = "soon"\n', "alerts.group_wait"),
        ('[alerts]\nescalate_to = ["nowhere"]\n', "alerts.escalate_to"),
        (
            '[[alerts.channels]]\nname = "x"\nkind = "webhook"\nurl = "ftp://x"\n',
            "alerts.channels.0",
        ),
    ],
)
def test_bad_alert_config_fails_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, key: str
) -> None:
    """A bad alert rule or channel in the config file stops start-up naming its key."""
    monkeypatch.delenv("CHATWATCH_CONFIG", raising=False)
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert key in str(err.value), str(err.value)


def test_rule_conditions_and_hysteresis() -> None:
    """``fires``/``clears`` for both directions, with and without a resolve threshold."""
    up = build_rule(
        {"name": "U", "signal": "error_rate", "op": ">", "threshold": 0.5, "resolve_threshold": 0.3}
    )
    down = build_rule({"name": "D", "signal": "cache_hit_rate", "op": "<=", "threshold": 0.7})
    assert (up.fires(0.51), up.fires(0.5), up.clears(0.31), up.clears(0.3)) == (
        True,
        False,
        False,
        True,
    )
    assert (down.fires(0.7), down.clears(0.7), down.clears(0.71)) == (True, False, True)
    assert Op("<").above is False


def test_spec_round_trips() -> None:
    """A rule's ``spec()`` builds the same rule again (what the store keeps)."""
    rule = build_rule(
        {
            "name": "R",
            "signal": "auth_failures_per_minute",
            "op": ">=",
            "threshold": 3,
            "for": "90s",
            "by": ["client_ip"],
            "labels": {"team": "sec"},
            "cooldown": "2h",
            "escalate_after": "10m",
            "min_samples": 4,
        }
    )
    assert build_rule(rule.spec()) == rule
    assert rule.spec()["for"] == "1m30s"


@given(st.integers(min_value=0, max_value=366 * 86_400_000))
def test_format_duration_parses_back(ms: int) -> None:
    """Every millisecond duration up to the cap formats to a string that parses back."""
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


RULE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "signal",
                "op",
                "threshold",
                "for",
                "severity",
                "type",
                "labels",
                "cooldown",
                "channels",
                "by",
                "resolve_threshold",
                "min_samples",
                "escalate_after",
                "enabled",
                "x",
            ]
        ),
        RULE_VALUES,
    )
)
def test_any_rule_body_is_a_rule_or_a_named_error(body: dict[str, Any]) -> None:
    """Whatever the body, the validator returns a rule or raises RuleError naming a field."""
    try:
        build_rule(body, channels={"ops"})
    except RuleError as err:
        assert err.field and str(err).startswith(err.field)


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("(a+)+", False),
        ("(a*)*b", False),
        ("((ab)+c)+", False),
        ("(a|b+){2,}", False),
        ("(ab)+", True),
        ("[a+]+", True),
        (r"\(a+\)+", True),
        ("10\\.0\\..*", True),
        ("a{1,3}", True),
    ],
)
def test_regex_matchers_refuse_nested_quantifiers(pattern: str, ok: bool) -> None:
    """Quantified groups holding a quantifier (catastrophic backtracking) are refused."""
    raw = [{"name": "client_ip", "value": pattern, "is_regex": True}]
    if ok:
        assert parse_matchers(raw)[0].is_regex
    else:
        with pytest.raises(RuleError, match="nested quantifiers"):
            parse_matchers(raw)


def test_matchers_are_anchored_and_missing_labels_are_empty() -> None:
    """A regex matcher must match the whole value; an absent label reads as ''."""
    [m] = parse_matchers([{"name": "client_ip", "value": "10\\.0\\..*", "is_regex": True}])
    assert (m.matches({"client_ip": "10.0.0.1"}), m.matches({"client_ip": "110.0.0.1"})) == (
        True,
        False,
    )
    [empty] = parse_matchers([{"name": "team", "value": ""}])
    assert empty.matches({}) and not empty.matches({"team": "x"})


# Issue 9's defaults, on by default: AI errors and the watcher watched.
ISSUE9_DEFAULTS = {
    "HighAIErrorRate": ("ai_error_rate", ">", 0.20),
    "AlertOutboxBacklog": ("alert_outbox_backlog", ">", 0.0),
    "LogRecordsDropped": ("log_records_dropped_per_minute", ">", 0.0),
    "LowDiskSpace": ("data_dir_free_bytes", "<", float(1 << 30)),
}


def test_every_default_name_is_fixed() -> None:
    """The default rule names are those of SPEC §6, issue 9's, and the Watchdog."""
    assert set(DEFAULT_RULES) == set(SPEC_DEFAULTS) | set(ISSUE9_DEFAULTS) | {
        "Watchdog",
        "HighAICostPerUser",
    }


def test_issue9_defaults_are_on_and_changeable() -> None:
    """HighAIErrorRate (and the watcher's rules) are on by default with their thresholds;
    ``alerts.rules`` turns one off or changes its ``for`` like any default."""
    rules = {r.name: r for r in compile_rules(AlertsSettings())}
    got = {n: (r.signal, r.op.value, r.threshold) for n, r in rules.items() if n in ISSUE9_DEFAULTS}
    assert got == ISSUE9_DEFAULTS
    assert all(rules[n].enabled for n in ISSUE9_DEFAULTS)
    ai = rules["HighAIErrorRate"]
    assert (ai.min_samples, ai.for_s, ai.type.value, ai.severity.value) == (5, 60.0, "ai", "high")
    changed = {
        r.name: r
        for r in compile_rules(
            AlertsSettings.model_validate(
                {"rules": [{"name": n, "enabled": False} for n in ISSUE9_DEFAULTS]}
            )
        )
    }
    assert not any(changed[n].enabled for n in ISSUE9_DEFAULTS)
