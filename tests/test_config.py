"""Settings from a TOML file and CHATWATCH_* variables (SPEC §2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatwatch.config import ConfigError, Settings, load_settings, parse_duration


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CHATWATCH_* variable from the outside world leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("CHATWATCH_"):
            monkeypatch.delenv(name)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chatwatch.toml"
    path.write_text(text)
    return path


def config_error(*args: object, **kwargs: object) -> str:
    """The message of the ConfigError that load_settings raises."""
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# --- defaults ------------------------------------------------------------------------


def test_defaults_match_the_spec_table() -> None:
    """With no file and no variables every SPEC §2 default is in place."""
    s = load_settings()
    actual = {
        "server.host": s.server.host,
        "server.port": s.server.port,
        "server.data_dir": s.server.data_dir,
        "database.url": s.database.url,
        "redis.url": s.redis.url,
        "auth.jwt_secret": s.auth.jwt_secret,
        "auth.admin_token": s.auth.admin_token,
        "auth.guest_login": s.auth.guest_login,
        "ai.provider": s.ai.provider,
        "ai.timeout": s.ai.timeout,
        "cache.ttl": s.cache.ttl,
        "cache.max_entries": s.cache.max_entries,
        "limits.max_message_bytes": s.limits.max_message_bytes,
        "limits.messages_per_minute": s.limits.messages_per_minute,
        "limits.connections_per_ip": s.limits.connections_per_ip,
        "metrics.history_interval": s.metrics.history_interval,
        "metrics.window": s.metrics.window,
        "logging.level": s.logging.level,
        "logging.format": s.logging.format,
        "logging.retention_days": s.logging.retention_days,
        "store.retention_days": s.store.retention_days,
        "alerts.evaluation_interval": s.alerts.evaluation_interval,
        "alerts.channels": s.alerts.channels,
    }
    expected = {
        "server.host": "127.0.0.1",
        "server.port": 8000,
        "server.data_dir": Path("./var"),
        "database.url": None,
        "redis.url": None,
        "auth.jwt_secret": None,
        "auth.admin_token": None,
        "auth.guest_login": True,
        "ai.provider": "builtin",
        "ai.timeout": 30.0,
        "cache.ttl": 3600.0,
        "cache.max_entries": 10000,
        "limits.max_message_bytes": 16384,
        "limits.messages_per_minute": 60,
        "limits.connections_per_ip": 50,
        "metrics.history_interval": 60.0,
        "metrics.window": 300.0,
        "logging.level": "INFO",
        "logging.format": "json",
        "logging.retention_days": 7.0,
        "store.retention_days": 90.0,
        "alerts.evaluation_interval": 15.0,
        "alerts.channels": [],
    }
    assert expected == actual


def test_default_database_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    """Without database.url the store is chatwatch.db inside server.data_dir."""
    s = load_settings(server={"data_dir": tmp_path})
    expected = f"sqlite+aiosqlite:///{tmp_path.resolve() / 'chatwatch.db'}"
    assert expected == s.database_url


# --- the file and the environment -----------------------------------------------------


def test_toml_file_values_are_read(tmp_path: Path) -> None:
    """Keys of several sections in the TOML file reach Settings, durations parsed."""
    path = write_toml(
        tmp_path,
        '[server]\nhost = "0.0.0.0"\nport = 9000\n'
        "[limits]\nmessages_per_minute = 5\n"
        '[ai]\ntimeout = "2m"\n'
        "[ai.prices.my-model]\ninput_per_mtok = 1.5\noutput_per_mtok = 3\n",
    )
    s = load_settings(path)
    expected = ("0.0.0.0", 9000, 5, 120.0, 1.5, 3.0)
    actual = (
        s.server.host,
        s.server.port,
        s.limits.messages_per_minute,
        s.ai.timeout,
        s.ai.prices["my-model"].input_per_mtok,
        s.ai.prices["my-model"].output_per_mtok,
    )
    assert expected == actual


def test_config_file_found_through_chatwatch_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHATWATCH_CONFIG names the file when no path is passed."""
    path = write_toml(tmp_path, "[server]\nport = 9300\n")
    monkeypatch.setenv("CHATWATCH_CONFIG", str(path))
    assert load_settings().server.port == 9300


def test_env_beats_file_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CHATWATCH_SERVER__PORT overrides the file's port; the file's host stays."""
    path = write_toml(tmp_path, '[server]\nhost = "0.0.0.0"\nport = 9000\n')
    monkeypatch.setenv("CHATWATCH_SERVER__PORT", "9100")
    s = load_settings(path)
    assert (s.server.host, s.server.port) == ("0.0.0.0", 9100)


def test_env_alone_sets_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """CHATWATCH_<SECTION>__<KEY> variables set values without a file (bool, duration, dict)."""
    monkeypatch.setenv("CHATWATCH_AUTH__GUEST_LOGIN", "false")
    monkeypatch.setenv("CHATWATCH_CACHE__TTL", "5m")
    monkeypatch.setenv("CHATWATCH_LOGGING__LEVEL", "debug")
    monkeypatch.setenv("CHATWATCH_AI__PRICES__gpt-x__INPUT_PER_MTOK", "1")
    monkeypatch.setenv("CHATWATCH_AI__PRICES__gpt-x__OUTPUT_PER_MTOK", "2")
    s = load_settings()
    expected = (False, 300.0, "DEBUG", 1.0, 2.0)
    actual = (
        s.auth.guest_login,
        s.cache.ttl,
        s.logging.level,
        s.ai.prices["gpt-x"].input_per_mtok,
        s.ai.prices["gpt-x"].output_per_mtok,
    )
    assert expected == actual


def test_file_does_not_leak_into_the_next_load(tmp_path: Path) -> None:
    """After load_settings(file), a load without a file is back to the defaults."""
    path = write_toml(tmp_path, "[server]\nport = 9000\n")
    assert load_settings(path).server.port == 9000
    assert load_settings().server.port == 8000


def test_file_does_not_leak_after_a_failed_load(tmp_path: Path) -> None:
    """A file that failed validation is not read again by the next load without a file."""
    path = write_toml(tmp_path, '[server]\nport = "abc"\n')
    config_error(path)
    assert load_settings().server.port == 8000


# --- unknown keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\nportt = 1\n", "server.portt"),
        ("[serverx]\nport = 1\n", "serverx"),
        ("typo = 1\n", "typo"),
        ("[ai.prices.m]\ninput_per_mtok = 1\noutput_per_mtok = 1\nbogus = 2\n", "bogus"),
        (
            '[[alerts.rules]]\nname = "r"\nsignal = "error_rate"\nop = ">"\nthreshold = 1\n'
            "bogus = 1\n",
            "alerts.rules.0.bogus",
        ),
    ],
)
def test_unknown_key_in_file_fails_naming_it(tmp_path: Path, toml: str, key: str) -> None:
    """An unknown key (typo in a section, unknown section, top-level, nested) names the key."""
    message = config_error(write_toml(tmp_path, toml))
    assert key in message, message


@pytest.mark.parametrize(
    "variable",
    [
        "CHATWATCH_SERVER__PORTT",
        "CHATWATCH_SERVERX__PORT",
        "CHATWATCH_PORT",
        "CHATWATCH_SERVER__",
        "chatwatch_server__portt",
    ],
)
def test_unknown_env_variable_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A CHATWATCH_* variable that names no setting (typo, no section, lower case) is named."""
    monkeypatch.setenv(variable, "1")
    message = config_error()
    assert variable in message, message


def test_unknown_key_under_env_dict_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown field below ai.prices.<model> given through env is named."""
    monkeypatch.setenv("CHATWATCH_AI__PRICES__gpt__INPUT_PER_MTOK", "1")
    monkeypatch.setenv("CHATWATCH_AI__PRICES__gpt__OUTPUT_PER_MTOK", "1")
    monkeypatch.setenv("CHATWATCH_AI__PRICES__gpt__BOGUS", "1")
    message = config_error()
    assert "ai.prices.gpt.bogus" in message, message


# --- bad values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[server]\nport = "abc"\n', "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ('[ai]\nprovider = "gpt"\n', "ai.provider"),
        ('[ai]\ntimeout = "5x"\n', "ai.timeout"),
        ('[logging]\nlevel = "LOUD"\n', "logging.level"),
        ('[database]\nurl = "mysql://db"\n', "database.url"),
        ('[redis]\nurl = "http://r"\n', "redis.url"),
        ("[cache]\nttl = -5\n", "cache.ttl"),
        ("[limits]\nmax_message_bytes = 0\n", "limits.max_message_bytes"),
        ('[metrics]\nwindow = "0s"\n', "metrics.window"),
        ("[store]\nretention_days = 0\n", "store.retention_days"),
        ("[store]\nretention_days = inf\n", "store.retention_days"),
        ('[store]\npurge_interval = "5x"\n', "store.purge_interval"),
        (
            '[[alerts.rules]]\nname = "r"\nsignal = "error_rate"\nop = "=="\nthreshold = 1\n',
            "alerts.rules.0.op",
        ),
        (
            '[[alerts.rules]]\nname = "r"\nsignal = "error_rate"\nop = ">"\nthreshold = 1\n'
            'for = "5x"\n',
            "alerts.rules.0.for",
        ),
    ],
)
def test_bad_value_in_file_fails_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    """A wrongly typed, out-of-range or malformed value in the file names its key."""
    message = config_error(write_toml(tmp_path, toml))
    assert key in message, message


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("CHATWATCH_SERVER__PORT", "abc", "server.port"),
        ("CHATWATCH_AUTH__GUEST_LOGIN", "maybe", "auth.guest_login"),
        ("CHATWATCH_AI__TIMEOUT", "5x", "ai.timeout"),
        ("CHATWATCH_LIMITS__CONNECTIONS_PER_IP", "0", "limits.connections_per_ip"),
    ],
)
def test_bad_value_in_env_fails_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    """A bad value given through a CHATWATCH_* variable names its key."""
    monkeypatch.setenv(variable, value)
    message = config_error()
    assert key in message, message


def test_openai_provider_without_base_url_names_it(tmp_path: Path) -> None:
    """ai.provider = openai with no base_url fails naming ai.base_url."""
    message = config_error(write_toml(tmp_path, '[ai]\nprovider = "openai"\n'))
    assert "ai.base_url" in message, message


def test_bad_secret_is_named_but_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A too-short auth.admin_token is named, and its value never appears in the message."""
    monkeypatch.setenv("CHATWATCH_AUTH__ADMIN_TOKEN", "sekrit-123")
    message = config_error()
    assert ("auth.admin_token" in message, "sekrit-123" in message) == (True, False), message


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    """A --config path that does not exist fails naming the path."""
    missing = tmp_path / "nope.toml"
    message = config_error(missing)
    assert str(missing) in message, message


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML ('[server' unclosed) fails naming the file, not a traceback."""
    path = write_toml(tmp_path, "[server\nport = 9000\n")
    message = config_error(path)
    assert str(path) in message, message


def test_settings_forbid_unknown_sections_in_code() -> None:
    """Settings(...) built in code also refuses an unknown section (no silent ignore)."""
    with pytest.raises(ValueError, match="bogus"):
        Settings(bogus={"x": 1})  # type: ignore[call-arg]


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("100ms", 0.1),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("0s", 0.0),
        ("10", 10.0),
        (" 5m ", 300.0),
        (3, 3.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts_prometheus_style(text: str | float, seconds: float) -> None:
    """Prometheus-style durations and plain numbers parse to seconds."""
    assert seconds == pytest.approx(parse_duration(text))


@pytest.mark.parametrize(
    "bad", ["", "1x", "m", "5 m", "1h 30m", "-5s", "5M", "1e3", "abc", -1, -0.5, True]
)
def test_parse_duration_rejects_malformed(bad: str | float) -> None:
    """Empty, unknown unit, spaces, negative, upper-case unit, exponent and bool are refused."""
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_parse_duration_rejects_nan_and_infinity(bad: float) -> None:
    """NaN and ±infinity are not durations."""
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_infinite_ai_timeout_in_file_is_refused(tmp_path: Path) -> None:
    """ai.timeout = inf (a TOML float) would let a stalled provider hang a socket: it is named."""
    message = config_error(write_toml(tmp_path, "[ai]\ntimeout = inf\n"))
    assert "ai.timeout" in message, message


def test_store_retention_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """store.retention_days and store.purge_interval (a duration) come from file and env."""
    path = write_toml(tmp_path, '[store]\nretention_days = 30\npurge_interval = "15m"\n')
    s = load_settings(path)
    assert (s.store.retention_days, s.store.purge_interval) == (30.0, 900.0)
    monkeypatch.setenv("CHATWATCH_STORE__RETENTION_DAYS", "7")
    assert load_settings(path).store.retention_days == 7.0


# --- AI values that cannot work (issue 7) ---------------------------------------------


def test_ai_resilience_defaults() -> None:
    """Retry once, open after 5 failures for 30 s, no fallback, no budget, warn at 80 %."""
    ai = load_settings().ai
    assert (
        ai.retry_attempts,
        ai.circuit_failures,
        ai.circuit_cooloff,
        ai.fallback,
        ai.daily_budget_usd,
        ai.budget_warning_ratio,
    ) == (1, 5, 30.0, "none", None, 0.8)


def test_ai_resilience_values_are_read(tmp_path: Path) -> None:
    """The new [ai] keys come from the file; circuit_cooloff takes a duration."""
    path = write_toml(
        tmp_path,
        '[ai]\nretry_attempts = 0\ncircuit_failures = 3\ncircuit_cooloff = "1m"\n'
        'fallback = "builtin"\ndaily_budget_usd = 2.5\nbudget_warning_ratio = 0.5\n',
    )
    ai = load_settings(path).ai
    assert (
        ai.retry_attempts,
        ai.circuit_failures,
        ai.circuit_cooloff,
        ai.fallback,
        ai.daily_budget_usd,
        ai.budget_warning_ratio,
    ) == (0, 3, 60.0, "builtin", 2.5, 0.5)


@pytest.mark.parametrize(
    "key",
    ["sk-abc\u2026", "sk-abc\u201cquoted\u201d", "sk-abc\n", "sk-abc\t1", "sk-abc\u00e9"],
    ids=["ellipsis", "curly quotes", "newline", "tab", "accent"],
)
def test_api_key_that_cannot_be_a_header_is_named_not_echoed(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """The README's ``sk-…`` made the first message get an ack and then nothing (httpx
    could not encode the header); now start-up fails naming ai.api_key, without the key."""
    monkeypatch.setenv("CHATWATCH_AI__API_KEY", key)
    message = config_error()
    assert ("ai.api_key" in message, "sk-abc" in message) == (True, False), message


def test_api_key_with_ellipsis_in_file_is_named(tmp_path: Path) -> None:
    """``api_key = "sk-…"`` copied from the README stops start-up naming the key."""
    path = write_toml(
        tmp_path,
        '[ai]\nprovider = "openai"\nbase_url = "http://127.0.0.1:9000/v1"\napi_key = "sk-…"\n',
    )
    message = config_error(path)
    assert ("ai.api_key" in message, "U+2026" in message) == (True, True), message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://ai.example/v1",
        "localhost:9000/v1",
        "127.0.0.1:9000/v1",
        "http://",
        "http://host:99999/v1",
        "http://host /v1",
        "https://host/v1\n",
        "",
    ],
)
def test_base_url_that_is_not_http_is_named(url: str) -> None:
    """A base URL without http(s) scheme and host, with a bad port or spaces is refused,
    whatever the provider."""
    assert "ai.base_url" in config_error(ai={"base_url": url})
    openai = {"provider": "openai", "base_url": url}
    assert "ai.base_url" in config_error(ai=openai)


@pytest.mark.parametrize("model", ["", " ", "\t\n"])
def test_empty_model_is_named(model: str) -> None:
    """An empty or whitespace model name (sent as-is upstream) is refused naming ai.model."""
    assert "ai.model" in config_error(
        ai={"provider": "openai", "base_url": "http://h/v1", "model": model}
    )


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[ai]\nretry_attempts = -1\n", "ai.retry_attempts"),
        ("[ai]\nretry_attempts = 10\n", "ai.retry_attempts"),
        ("[ai]\ncircuit_failures = -1\n", "ai.circuit_failures"),
        ('[ai]\ncircuit_cooloff = "5x"\n', "ai.circuit_cooloff"),
        ("[ai]\ncircuit_cooloff = 0\n", "ai.circuit_cooloff"),
        ('[ai]\nfallback = "gpt"\n', "ai.fallback"),
        ("[ai]\ndaily_budget_usd = -1\n", "ai.daily_budget_usd"),
        ("[ai]\ndaily_budget_usd = inf\n", "ai.daily_budget_usd"),
        ("[ai]\nbudget_warning_ratio = 1.5\n", "ai.budget_warning_ratio"),
        ("[ai]\nbudget_warning_ratio = 0\n", "ai.budget_warning_ratio"),
    ],
)
def test_bad_resilience_value_is_named(tmp_path: Path, toml: str, key: str) -> None:
    """Out-of-range or malformed retry, circuit, fallback and budget values name their key."""
    message = config_error(write_toml(tmp_path, toml))
    assert key in message, message
