"""The ``chatwatch`` command: serve, token, loadtest, erase."""

from __future__ import annotations

import asyncio
import json
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
    try:
        erased = asyncio.run(_erase(settings, user))
    except ErasureConflict:
        typer.echo(f"chatwatch: {user} wrote while being erased; run erase again", err=True)
        raise typer.Exit(1) from None
    if erased is None:
        typer.echo(f"chatwatch: no such user: {user}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(erased))


async def _erase(settings: Settings, user_id: str) -> dict[str, Any] | None:
    from chatwatch.clock import SystemClock
    from chatwatch.store.db import Database
    from chatwatch.store.retention import Retention

    db = Database(settings.database_url)
    try:
        await db.migrate()
        erased = await Retention(db, SystemClock()).erase_user(user_id)
    finally:
        await db.dispose()
    return None if erased is None else erased.as_json()


def main() -> None:
    """Entry point of the ``chatwatch`` script."""
    app()
