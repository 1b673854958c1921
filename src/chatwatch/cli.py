"""The ``chatwatch`` command: serve, token, loadtest, rules export, alerts test."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from chatwatch.config import ConfigError, Settings, load_settings, parse_duration
from chatwatch.loadtest import register as register_loadtest

__all__ = ["app", "main"]

app = typer.Typer(
    help="chatwatch: live chat with an AI consultant, with observability built in.",
    no_args_is_help=True,
    add_completion=False,
)

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

    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
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


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", help="The user id (JWT sub).")],
    admin: Annotated[bool, typer.Option("--admin", help="Mint an admin-role token.")] = False,
    ttl: Annotated[str, typer.Option(help="Lifetime, e.g. 30m, 1h, 7d.")] = "1h",
    config: ConfigOption = None,
) -> None:
    """Mint a JWT signed with the configured secret and print it."""
    settings = _settings(config)
    if not user or len(user) > 64:
        typer.echo("chatwatch: --user must be 1-64 characters", err=True)
        raise typer.Exit(2)
    try:
        seconds = parse_duration(ttl)
    except ValueError as err:
        typer.echo(f"chatwatch: --ttl: {err}", err=True)
        raise typer.Exit(2) from None
    if seconds <= 0:
        typer.echo("chatwatch: --ttl must be positive", err=True)
        raise typer.Exit(2)
    from chatwatch.app import resolve_secrets
    from chatwatch.auth import Authenticator
    from chatwatch.clock import SystemClock

    secrets = resolve_secrets(settings)
    auth = Authenticator(secrets.jwt_secret, secrets.admin_token, SystemClock())
    typer.echo(auth.mint(user, "admin" if admin else "user", ttl=seconds))


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


def main() -> None:
    """Entry point of the ``chatwatch`` script."""
    app()
