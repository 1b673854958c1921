"""The ``chatwatch`` command: serve, token, admin-token, loadtest, erase, rules export,
alerts test."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry

from chatwatch.config import ConfigError, Settings, load_settings, parse_duration
from chatwatch.loadtest import register as register_loadtest

__all__ = ["app", "main"]

app = typer.Typer(
    help="chatwatch: live chat with an AI consultant, with observability built in.",
    no_args_is_help=True,
    add_completion=False,
)

# A token outliving a year is a credential nobody remembers to revoke.
MAX_TOKEN_TTL = 366 * 86400.0

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (default: $CHATWATCH_CONFIG)."),
]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        settings = load_settings(config)
        for section, values in overrides.items():
            for key, value in values.items():
                if value is not None:
                    setattr(getattr(settings, section), key, value)
        return settings
    except ConfigError as err:
        typer.echo(f"chatwatch: {err}", err=True)
        raise typer.Exit(2) from None
    except ValueError as err:  # validate_assignment on a command-line override
        typer.echo(f"chatwatch: invalid option: {err}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (server.port).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Worker processes (server.workers).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the chat server."""
    settings = _settings(config, server={"host": host, "port": port, "workers": workers})
    if config is not None:
        # Workers re-read the configuration; they find the file through the environment.
        os.environ["CHATWATCH_CONFIG"] = str(config.resolve())
    from chatwatch.app import resolve_secrets
    from chatwatch.server import run_server

    _make_data_dir_private(settings)
    secrets = resolve_secrets(settings)
    if secrets.admin_token_created:
        typer.echo(
            f"chatwatch: generated admin token (shown once, kept in "
            f"{settings.server.data_dir / 'admin_token'}):\n\n    {secrets.admin_token}\n",
            err=True,
        )
    elif not settings.auth.admin_token:
        typer.echo(
            f"chatwatch: admin token is in {settings.server.data_dir / 'admin_token'}", err=True
        )
    typer.echo(
        f"chatwatch: chat at http://{settings.server.host}:{settings.server.port}/ "
        f"(AI provider: {settings.ai.provider}, store: {settings.database_url.split(':')[0]})",
        err=True,
    )
    sys.exit(run_server(settings, overrides={"host": host, "port": port, "workers": workers}))


def _make_data_dir_private(settings: Settings) -> None:
    """Private from here on (umask 077, inherited by workers), and what exists tightened."""
    from chatwatch.store.db import sqlite_path
    from chatwatch.store.permissions import private_umask, secure_data_dir

    private_umask()
    data_dir = settings.server.data_dir
    done = secure_data_dir(data_dir, sqlite_path(settings.database_url))
    if done.changed:
        typer.echo(
            f"chatwatch: made {len(done.changed)} path(s) in {data_dir} private "
            "(readable by this user only)",
            err=True,
        )
    for path, why in done.failed:
        typer.echo(f"chatwatch: warning: could not make {path} private: {why}", err=True)


def _looked_with(settings: Settings, config: Path | None) -> str:
    """Where a command looked, for messages that must say so."""
    path = config or os.environ.get("CHATWATCH_CONFIG")
    source = f"config file {path}" if path else "no config file (no --config, no CHATWATCH_CONFIG)"
    return f"chatwatch: looked with {source} and data_dir {settings.server.data_dir.resolve()}"


def _same_settings(command: str) -> str:
    return (
        f"chatwatch: run `chatwatch {command}` with the server's settings: the same --config "
        "(or CHATWATCH_CONFIG) and CHATWATCH_* variables as `chatwatch serve`, from the folder "
        "the server runs in (a relative server.data_dir is taken from the current folder)"
    )


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", help="The user id (JWT sub).")],
    admin: Annotated[bool, typer.Option("--admin", help="Mint an admin-role token.")] = False,
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 30m, 1h, 7d.")] = "1h",
    config: ConfigOption = None,
) -> None:
    """Mint a JWT signed with the server's secret and print it (never creates a secret)."""
    settings = _settings(config)
    if not user or len(user) > 64:
        typer.echo("chatwatch: --user must be 1-64 characters", err=True)
        raise typer.Exit(2)
    try:
        seconds = parse_duration(ttl)
    except ValueError as err:
        typer.echo(f"chatwatch: --ttl: {err}", err=True)
        raise typer.Exit(2) from None
    if not 0 < seconds <= MAX_TOKEN_TTL:
        typer.echo("chatwatch: --ttl must be positive and at most 366d", err=True)
        raise typer.Exit(2)
    from chatwatch.app import find_jwt_secret
    from chatwatch.auth import mint_token

    secret_file = settings.server.data_dir.resolve() / "secret"
    try:
        secret = find_jwt_secret(settings)
    except OSError as err:
        typer.echo(f"chatwatch: cannot read {secret_file}: {err.strerror or err}", err=True)
        raise typer.Exit(2) from None
    if secret is None:
        # Making one here would mint tokens the server rejects (SPEC §1: only refuse).
        typer.echo(
            "chatwatch: no JWT secret to sign with: auth.jwt_secret is not set and "
            f"{secret_file} does not exist\n{_looked_with(settings, config)}\n"
            f"{_same_settings('token')}, or start `chatwatch serve` once with these settings: "
            "it creates the secret.",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(mint_token(secret, user, "admin" if admin else "user", seconds, time.time()))


admin_token_app = typer.Typer(
    help="The static admin token kept in <data_dir>/admin_token.", no_args_is_help=True
)
app.add_typer(admin_token_app, name="admin-token")


@admin_token_app.command("rotate")
def admin_token_rotate(config: ConfigOption = None) -> None:
    """Replace the admin token and print the new one once; the old one stops working at once."""
    settings = _settings(config)
    if settings.auth.admin_token:
        where = (
            "the CHATWATCH_AUTH__ADMIN_TOKEN variable"
            if os.environ.get("CHATWATCH_AUTH__ADMIN_TOKEN")
            else f"config file {config or os.environ.get('CHATWATCH_CONFIG')}"
        )
        typer.echo(
            f"chatwatch: auth.admin_token is set in {where}: the server uses that token, not "
            "the admin_token file. Change it there and restart the server.",
            err=True,
        )
        raise typer.Exit(2)
    from chatwatch.auth import read_secret, replace_secret

    path = settings.server.data_dir.resolve() / "admin_token"
    try:
        present = bool(read_secret(path))
    except OSError as err:
        typer.echo(f"chatwatch: cannot read {path}: {err.strerror or err}", err=True)
        raise typer.Exit(2) from None
    if not present:
        # Writing one here would rotate nothing: no server uses this folder.
        typer.echo(
            f"chatwatch: no admin token to rotate: {path} does not exist\n"
            f"{_looked_with(settings, config)}\n{_same_settings('admin-token rotate')}.",
            err=True,
        )
        raise typer.Exit(2)
    try:
        token = replace_secret(path)
    except OSError as err:
        typer.echo(f"chatwatch: cannot write {path}: {err.strerror or err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"chatwatch: new admin token written to {path} (shown once); running servers "
        "refuse the old one from their next request.",
        err=True,
    )
    typer.echo(token)


register_loadtest(app)

# --- alerts (issue 9) ------------------------------------------------------------------

rules_app = typer.Typer(help="Alert rules.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alert notifications.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")


@rules_app.command("export")
def rules_export(
    format: Annotated[
        str, typer.Option("--format", help="Output format (only 'prometheus').")
    ] = "prometheus",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write the alert rules (defaults, config and stored API rules) as a Prometheus rules file."""
    if format != "prometheus":
        typer.echo(
            f"chatwatch: --format: unknown format {format!r} (expected prometheus)", err=True
        )
        raise typer.Exit(2)
    settings = _settings(config)
    from chatwatch.alerts.cli_support import all_rules
    from chatwatch.alerts.export import prometheus_rules

    rules, warning = all_rules(settings)
    if warning:
        typer.echo(f"chatwatch: {warning}", err=True)
    text = prometheus_rules(rules, window=settings.metrics.window)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"chatwatch: wrote {output}", err=True)


@alerts_app.command("test")
def alerts_test(
    channel: Annotated[
        str, typer.Option("--channel", help="The channel's name in alerts.channels.")
    ],
    config: ConfigOption = None,
) -> None:
    """Send a test notification through one configured channel now."""
    settings = _settings(config)
    names = [c.name for c in settings.alerts.channels]
    if channel not in names:
        known = ", ".join(names) or "none configured"
        typer.echo(f"chatwatch: --channel: no channel {channel!r} (configured: {known})", err=True)
        raise typer.Exit(2)
    from chatwatch.alerts.cli_support import send_test

    error = send_test(settings, channel)
    if error:
        typer.echo(f"chatwatch: test notification to {channel} failed: {error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"chatwatch: test notification sent to {channel}")


@app.command()
def erase(
    user: Annotated[str, typer.Option("--user", help="The user id to erase.")],
    config: ConfigOption = None,
) -> None:
    """Erase a user's sessions, messages and stored log records; print how many (JSON).

    Exit 1 when nothing is stored about the user (or they wrote meanwhile: run it again),
    2 for a malformed id or configuration.
    """
    settings = _settings(config)
    from chatwatch.store.retention import ErasureConflict, check_user_id

    try:
        check_user_id(user)
    except ValueError as err:
        typer.echo(f"chatwatch: --user: {err}", err=True)
        raise typer.Exit(2) from None
    sqlite_file = _sqlite_file(settings.database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        # Migrating would create an empty database here and report "no such user": wrong.
        typer.echo(
            f"chatwatch: no database at {sqlite_file}; run erase with the server's settings "
            "(--config FILE or the same CHATWATCH_* variables, from the server's folder)",
            err=True,
        )
        raise typer.Exit(2)
    try:
        erased = asyncio.run(_erase(settings, user))
    except ErasureConflict:
        typer.echo(f"chatwatch: {user} wrote while being erased; run erase again", err=True)
        raise typer.Exit(1) from None
    if erased is None:
        typer.echo(f"chatwatch: no such user: {user}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(erased))


def _sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite database URL (None for other databases or in-memory ones)."""
    prefix, sep, path = database_url.partition(":///")
    if not sep or not prefix.startswith("sqlite") or not path or path.startswith(":memory:"):
        return None
    return Path(path.split("?", 1)[0])


async def _erase(settings: Settings, user_id: str) -> dict[str, Any] | None:
    import getpass

    from chatwatch.api.audit import AuditAction, audit
    from chatwatch.clock import SystemClock
    from chatwatch.observe.logs.pipeline import LogMetrics, configure_logging
    from chatwatch.observe.logs.store import LogStore
    from chatwatch.store.db import Database
    from chatwatch.store.retention import Retention

    clock = SystemClock()
    db = Database(settings.database_url)
    # The erasure is an admin action like the API's: its audit record goes to the same store.
    logstore = LogStore(db, clock, metrics=LogMetrics(CollectorRegistry()))
    try:
        await db.migrate()
        await logstore.start()
        configure_logging(settings.logging, sink=logstore.submit, stream=io.BytesIO(), clock=clock)
        erased = await Retention(db, clock).erase_user(user_id)
        if erased is not None:
            counts = erased.as_json()
            counts.pop("user_id", None)
            audit(
                f"local-user:{getpass.getuser()}",
                AuditAction.USER_ERASED,
                erased_user_id=user_id,
                **counts,
            )
    finally:
        await logstore.close()
        await db.dispose()
    return None if erased is None else erased.as_json()


def main() -> None:
    """Entry point of the ``chatwatch`` script."""
    app()
