"""Settings: one object built from a TOML file and ``CHATWATCH_<SECTION>__<KEY>`` variables.

Precedence, highest first: keyword arguments (tests), environment, TOML file, defaults.
Unknown keys anywhere are errors, so a typo stops start-up instead of being ignored.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AIPrice",
    "AISettings",
    "AlertChannelSettings",
    "AlertRuleSettings",
    "AlertsSettings",
    "AuthSettings",
    "CacheSettings",
    "ConfigError",
    "DatabaseSettings",
    "LimitsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "load_settings",
    "parse_duration",
]

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class ConfigError(Exception):
    """The configuration is unusable; the message names the offending key."""


def parse_duration(value: str | float | int) -> float:
    """Parse a Prometheus-style duration (``30s``, ``5m``, ``1h30m``) or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30s' or a number of seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be finite")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration like '30s', '5m' or '1h'")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_:")


def _port_of(parts: SplitResult) -> int | None:
    """The URL's port; a ValueError naming it when the port or the host is malformed."""
    # These URLs end up in Content-Security-Policy headers: no ';', quotes or spaces.
    if not set((parts.hostname or "").lower()) <= _HOST_CHARS:
        raise ValueError(f"{parts.netloc!r} has a bad host name")
    try:
        return parts.port
    except ValueError:
        raise ValueError(f"{parts.netloc!r} has a bad port") from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path("./var")
    workers: int = Field(1, ge=1, le=64)
    shutdown_grace: float = Field(10.0, ge=0, description="seconds in-flight replies may finish")
    forwarded_allow_ips: list[str] = Field(
        default_factory=list, description="proxies whose X-Forwarded-For is trusted ('*': any)"
    )
    public_url: str | None = Field(
        None, description="where people reach the service (default http://<host>:<port>)"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins besides public_url that may open /ws/chat and embed /",
    )
    api_docs: bool = Field(True, description="serve /api/docs and /api/openapi.json")

    # HTTP limits (issue 8), enforced by server.GuardedHttpProtocol before the app sees a
    # request: the request line and headers together over max_header_bytes, or more than
    # max_headers header lines → 431; headers not complete header_timeout seconds after the
    # connection opened or the request's first byte → 408 and closed (a silent connection
    # is just closed); a keep-alive connection idle for keepalive_timeout → closed; more
    # than http_connections_per_ip connections open from one peer address → 429 and closed
    # (0: no cap; peers listed in forwarded_allow_ips are proxies, so not capped here —
    # the app's per-IP limits see their clients' addresses).
    max_header_bytes: int = Field(16384, ge=1024, le=1_048_576)
    max_headers: int = Field(100, ge=1, le=10_000)
    header_timeout: float = Field(10.0, gt=0, description="seconds for a request's headers")
    keepalive_timeout: float = Field(5.0, gt=0, description="idle keep-alive close, seconds")
    http_connections_per_ip: int = Field(200, ge=0, description="open HTTP connections per IP")

    @field_validator("header_timeout", "keepalive_timeout", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://chat.example.com")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not contain a user name or password")
        _port_of(parts)
        return v.strip().rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        checked = []
        for item in v:
            text = item.strip()
            if text == "*":
                # A wildcard would let any site open chats as its visitors (SPEC §2).
                raise ValueError("'*' is not allowed: list each origin, e.g. https://example.com")
            parts = urlsplit(text)
            if (
                parts.scheme.lower() not in ("http", "https")
                or not parts.hostname
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
                or parts.username is not None
                or parts.password is not None
            ):
                raise ValueError(
                    f"{item!r} is not an origin: use scheme://host[:port], "
                    "e.g. https://www.example.com"
                )
            _port_of(parts)
            checked.append(text.rstrip("/"))
        return checked

    @property
    def external_url(self) -> str:
        """``public_url``, else ``http://<host>:<port>`` (brackets around an IPv6 host)."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class DatabaseSettings(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v


class RedisSettings(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v


class AuthSettings(_Section):
    jwt_secret: str | None = Field(None, min_length=16)
    admin_token: str | None = Field(None, min_length=16)
    guest_login: bool = True
    token_ttl: float = Field(86400.0, gt=0, description="lifetime of guest tokens, seconds")

    @field_validator("token_ttl", mode="before")
    @classmethod
    def _ttl(cls, v: Any) -> float:
        return parse_duration(v)


class AIPrice(_Section):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class AISettings(_Section):
    """The AI consultant: which provider answers, and how the chat copes when it fails.

    Values that cannot work (an API key that is not printable ASCII, a base URL that is
    not http(s), an empty model name) stop start-up naming the key.

    Resilience: a failure before the first byte (429, 5xx, connection refused) is tried
    again ``retry_attempts`` times, honouring ``Retry-After`` up to a few seconds, all
    within ``timeout``; after ``circuit_failures`` failed calls in a row the provider is
    not called for ``circuit_cooloff``, then one probe call decides; with
    ``fallback = "builtin"`` the built-in consultant answers (model ``builtin``) while
    the provider fails, the circuit is open or the budget is spent; ``daily_budget_usd``
    stops AI calls for the rest of the UTC day once replies have cost that much.
    """

    provider: Literal["builtin", "openai"] = "builtin"
    base_url: str | None = Field(None, description="http(s) URL of the OpenAI-compatible API")
    api_key: str | None = Field(None, description="bearer token; printable ASCII only")
    model: str | None = None
    timeout: float = Field(
        30.0, gt=0, description="seconds for the whole AI call, retries and their waits included"
    )
    first_byte_timeout: float | None = Field(None, gt=0)
    max_context_messages: int = Field(20, ge=1, le=500)
    system_prompt: str = (
        "You are the AI consultant of a small consultancy. Answer briefly and helpfully; "
        "offer a human hand-off when unsure."
    )
    prices: dict[str, AIPrice] = Field(default_factory=dict)
    retry_attempts: int = Field(
        1, ge=0, le=3, description="retries of a 429/5xx/refused call before its first byte"
    )
    circuit_failures: int = Field(
        5, ge=0, description="failed calls in a row that open the circuit (0: no breaker)"
    )
    circuit_cooloff: float = Field(
        30.0, gt=0, description="seconds an open circuit refuses calls before one probe"
    )
    fallback: Literal["none", "builtin"] = Field(
        "none", description="who answers while the provider cannot: nobody, or the built-in"
    )
    daily_budget_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="USD per UTC day for AI calls (unset: none)"
    )
    budget_warning_ratio: float = Field(
        0.8, gt=0, le=1, description="share of daily_budget_usd that raises the budget warning"
    )

    @field_validator("timeout", "first_byte_timeout", "circuit_cooloff", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("api_key")
    @classmethod
    def _header_safe(cls, v: str | None) -> str | None:
        # It travels in an HTTP header: anything else fails on the first message instead.
        if v is None:
            return v
        for i, ch in enumerate(v):
            if not " " <= ch <= "~":
                raise ValueError(
                    f"must be printable ASCII, found U+{ord(ch):04X} at position {i + 1} "
                    "(a pasted '…', a curly quote or a line break?)"
                )
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if any(ch.isspace() or not ch.isprintable() for ch in v):
            raise ValueError("must not contain spaces or control characters")
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as err:
            raise ValueError(f"is not a valid URL: {err}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v

    @field_validator("model")
    @classmethod
    def _model_named(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty or whitespace (leave it out for the default)")
        return v

    @model_validator(mode="after")
    def _openai_needs_url(self) -> AISettings:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("ai.base_url is required when ai.provider = 'openai'")
        return self

    @property
    def model_name(self) -> str:
        """The model that replies are attributed to."""
        if self.model:
            return self.model
        return "chatwatch-consultant" if self.provider == "builtin" else "gpt-4o-mini"


class CacheSettings(_Section):
    enabled: bool = True
    ttl: float = Field(3600.0, ge=0)
    max_entries: int = Field(10000, ge=0)

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, v: Any) -> float:
        return parse_duration(v)


class LimitsSettings(_Section):
    max_message_bytes: int = Field(16384, ge=1, le=1_048_576)
    messages_per_minute: int = Field(
        60, ge=1, description="per user: all their sockets on all nodes together"
    )
    messages_per_minute_per_ip: int = Field(600, ge=1, description="all users of one client IP")
    connections_per_ip: int = Field(50, ge=1)
    guest_logins_per_minute: int = Field(60, ge=1, description="per client IP; over it: 429")
    ai_requests_per_minute: int = Field(
        60, ge=1, description="AI calls per user (cache hits are not AI calls)"
    )
    ai_requests_per_minute_per_ip: int = Field(600, ge=1, description="AI calls per client IP")
    max_frame_bytes: int | None = Field(
        None, ge=1024, description="WebSocket frames above this close the socket (1009)"
    )

    @property
    def frame_limit(self) -> int:
        """Protocol-level frame cap: generous over the content limit so that
        moderately oversized messages get a ``message_too_large`` frame, not a close."""
        return self.max_frame_bytes or max(1_048_576 + 4096, self.max_message_bytes * 4)


class MetricsSettings(_Section):
    history_interval: float = Field(60.0, gt=0)
    history_retention: float = Field(7 * 86400.0, gt=0)
    window: float = Field(300.0, gt=0)
    token: str | None = None
    # Handled messages the window must hold before health judges the error rate.
    health_min_messages: int = Field(20, ge=1)

    @field_validator("history_interval", "history_retention", "window", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return parse_duration(v)


class StoreSettings(_Section):
    retention_days: float = Field(
        90.0,
        gt=0,
        allow_inf_nan=False,
        description="sessions and messages older than this are deleted",
    )
    purge_interval: float = Field(3600.0, gt=0, description="seconds between retention purges")

    @field_validator("purge_interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> float:
        return parse_duration(v)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["json", "console"] = "json"
    retention_days: float = Field(7.0, gt=0)
    log_content: bool = False
    store: bool = True
    queue_size: int = Field(10000, ge=1)
    batch_size: int = Field(500, ge=1)
    slow_response_seconds: float = Field(5.0, gt=0)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


Severity = Literal["low", "medium", "high", "critical"]
AlertType = Literal["error", "performance", "security", "connection", "ai", "system"]
# What a channel may take: every alert type, and hand-offs to a person (alerts.handoff).
ChannelType = Literal["error", "performance", "security", "connection", "ai", "system", "handoff"]


class AlertRuleSettings(_Section):
    """One ``[[alerts.rules]]`` entry; naming a default rule changes only the fields set."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    signal: str | None = None
    op: Literal[">", ">=", "<", "<="] | None = None
    threshold: float | None = None
    for_: str = Field("0s", alias="for")
    severity: Severity = "medium"
    type: AlertType = "system"
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    cooldown: str = "15m"
    channels: list[str] | None = None
    enabled: bool = True
    by: list[str] = Field(default_factory=list, description="signal labels to split alerts by")
    resolve_threshold: float | None = Field(
        None, description="the value that resolves a firing alert (hysteresis)"
    )
    min_samples: int = Field(0, ge=0, description="fewer events behind a rate: no data")
    escalate_after: str | None = None
    escalate_to: list[str] | None = None
    kind: Literal["threshold", "slo"] | None = Field(
        None, description="slo: a multi-window burn-rate rule (objective, window)"
    )
    objective: float | None = Field(None, description="slo: the good fraction, 0..1 exclusive")
    window: str | None = Field(None, description="slo: the objective's period, e.g. 28d")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("for_", "cooldown", "escalate_after")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class AlertChannelSettings(_Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["webhook", "slack", "teams", "email"]
    url: str | None = None
    secret: str | None = None
    severities: list[Severity] | None = None
    types: list[ChannelType] | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    use_tls: bool = Field(False, description="implicit TLS (SMTPS, usually port 465)")
    tls_verify: bool = Field(True, description="check the SMTP server's certificate")
    username: str | None = None
    password: str | None = None
    from_addr: str | None = Field(None, alias="from")
    to: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _needs_target(self) -> AlertChannelSettings:
        if self.kind in ("webhook", "slack", "teams"):
            if not self.url:
                raise ValueError(f"channel {self.name!r} of kind {self.kind} needs a url")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"channel {self.name!r}: url must be http:// or https://")
        if self.kind == "email" and not (self.smtp_host and self.from_addr and self.to):
            raise ValueError(f"email channel {self.name!r} needs smtp_host, from and to")
        return self


class AlertsSettings(_Section):
    enabled: bool = True
    evaluation_interval: float = Field(15.0, gt=0)
    group_wait: float = Field(
        5.0, ge=0, description="alerts of one rule firing within it: one notification"
    )
    default_rules: bool = True
    rules: list[AlertRuleSettings] = Field(default_factory=list)
    channels: list[AlertChannelSettings] = Field(default_factory=list)
    escalate_after: float | None = Field(
        None, description="critical alerts not acknowledged within it go to escalate_to"
    )
    escalate_to: list[str] = Field(default_factory=list)
    delivery_attempts: int = Field(
        10, ge=1, le=100, description="attempts before a notification fails"
    )
    retry_initial: float = Field(1.0, gt=0, description="first retry delay; doubles each attempt")
    retry_max: float = Field(300.0, gt=0, description="longest delay between attempts")
    delivery_timeout: float = Field(10.0, gt=0, description="one delivery attempt")
    history_retention: float = Field(90 * 86400.0, gt=0, description="resolved alerts kept")
    outbox_retention: float = Field(
        30 * 86400.0, gt=0, description="sent and failed notifications kept"
    )

    @field_validator(
        "evaluation_interval",
        "group_wait",
        "escalate_after",
        "retry_initial",
        "retry_max",
        "delivery_timeout",
        "history_retention",
        "outbox_retention",
        mode="before",
    )
    @classmethod
    def _interval(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @model_validator(mode="after")
    def _consistent(self) -> AlertsSettings:
        channels = [c.name for c in self.channels]
        for index, name in enumerate(channels):
            if name in channels[:index]:
                raise ValueError(f"alerts.channels.{index}.name: {name!r} is used twice")
        names = [r.name for r in self.rules]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"alerts.rules.{index}.name: {name!r} is used twice")
        for target in self.escalate_to:
            if target not in channels:
                raise ValueError(f"alerts.escalate_to: unknown channel {target!r}")
        from chatwatch.alerts.defaults import compile_rules  # the rules import this module

        compile_rules(self)
        return self


class Settings(BaseSettings):
    """All of chatwatch's configuration, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix="CHATWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ai: AISettings = Field(default_factory=AISettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _CONFIG_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        """The configured database URL, or SQLite under the data directory."""
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.server.data_dir.resolve() / 'chatwatch.db'}"


# pydantic-settings reads the TOML path from the class, so it is passed through this slot.
_CONFIG_FILE: dict[str, Path | None] = {"path": None}

_ENV_KEY = re.compile(r"^CHATWATCH_([A-Z0-9_]+)$")


def _unknown_env_keys(env: dict[str, str]) -> list[str]:
    """Env variables with our prefix that name no setting (pydantic-settings ignores them)."""
    unknown = []
    sections = Settings.model_fields
    for name in env:
        m = _ENV_KEY.match(name.upper())
        if not m or name.upper() == "CHATWATCH_CONFIG":
            continue
        parts = m.group(1).lower().split("__")
        section = sections.get(parts[0])
        if section is None or len(parts) < 2:
            unknown.append(name)
            continue
        model = section.annotation
        fields = getattr(model, "model_fields", {})
        aliases = {f.alias for f in fields.values() if f.alias}
        if parts[1] not in fields and parts[1] not in aliases:
            unknown.append(name)
    return unknown


def _describe(err: ValidationError, config_file: Path | None) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  {loc}: {e['msg']}")
    where = f" (file {config_file}, then CHATWATCH_* variables)" if config_file else ""
    return "invalid configuration" + where + ":\n" + "\n".join(lines)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build Settings from the TOML file (argument or ``CHATWATCH_CONFIG``) and the environment.

    Raises ConfigError naming every bad or unknown key.
    """
    path_text = config_file if config_file is not None else os.environ.get("CHATWATCH_CONFIG")
    path = Path(path_text) if path_text else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    unknown = _unknown_env_keys(dict(os.environ))
    if unknown:
        raise ConfigError(
            "unknown configuration variable(s): "
            + ", ".join(sorted(unknown))
            + " (expected CHATWATCH_<SECTION>__<KEY>, e.g. CHATWATCH_SERVER__PORT)"
        )
    _CONFIG_FILE["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(_describe(err, path)) from None
    except ValueError as err:  # TOML syntax errors surface as ValueError subclasses
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    finally:
        _CONFIG_FILE["path"] = None
