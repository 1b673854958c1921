"""The chatwatch command: serve, token and admin-token (SPEC §1, §2, §3)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

import chatwatch.server
from chatwatch.auth import Authenticator, load_or_create_secret
from chatwatch.cli import app
from chatwatch.clock import SystemClock
from chatwatch.config import Settings

CHATWATCH = Path(sys.executable).with_name("chatwatch")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No outside CHATWATCH_* variable applies; the data dir is this test's tmp_path; the
    process umask that `serve` tightens is restored afterwards."""
    for name in list(os.environ):
        if name.upper().startswith("CHATWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATWATCH_SERVER__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    umask = os.umask(0o022)
    os.umask(umask)
    yield tmp_path
    os.umask(umask)


@pytest.fixture
def server_secret(clean_env: Path) -> str:
    """The JWT secret a server started on this data dir has created (only `serve` makes one)."""
    return load_or_create_secret(clean_env / "secret")[0]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replaces the real server: records the settings `serve` would run with, returns 0."""
    calls: list[Settings] = []

    def fake_run_server(settings: Settings, overrides: dict[str, Any] | None = None) -> int:
        calls.append(settings)
        return 0

    monkeypatch.setattr(chatwatch.server, "run_server", fake_run_server)
    return calls


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def secret_in(data_dir: Path) -> str:
    return (data_dir / "secret").read_text().strip()


# --- help -------------------------------------------------------------------------------


def test_serve_help_lists_its_options() -> None:
    """`serve --help` exits 0 and documents --host, --port, --workers and --config."""
    result = run("serve", "--help")
    assert (
        result.exit_code,
        [opt in result.output for opt in ("--host", "--port", "--workers", "--config")],
    ) == (0, [True] * 4)


def test_token_help_lists_its_options() -> None:
    """`token --help` exits 0 and documents --user, --admin and --ttl."""
    result = run("token", "--help")
    assert (
        result.exit_code,
        [opt in result.output for opt in ("--user", "--admin", "--ttl")],
    ) == (0, [True] * 3)


@pytest.mark.parametrize("command", ["serve", "token"])
def test_installed_script_help_works(command: str) -> None:
    """The installed `chatwatch` script answers `<command> --help` with exit code 0."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHATWATCH_")}
    done = subprocess.run(
        [str(CHATWATCH), command, "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (done.returncode, "Usage" in done.stdout) == (0, True)


# --- token ------------------------------------------------------------------------------


def test_token_verifies_with_the_secret_in_the_data_dir(
    clean_env: Path, server_secret: str
) -> None:
    """`token --user alice` prints a user JWT that verifies with <data_dir>/secret."""
    result = run("token", "--user", "alice")
    token = result.stdout.strip()
    principal = Authenticator(secret_in(clean_env), "unused-admin-token-xyz", SystemClock()).verify(
        token
    )
    assert (result.exit_code, principal.user_id, principal.role) == (0, "alice", "user")


def test_token_admin_flag_gives_role_admin(clean_env: Path, server_secret: str) -> None:
    """`token --user ops --admin` prints a JWT with role admin."""
    result = run("token", "--user", "ops", "--admin")
    claims = jwt.decode(result.stdout.strip(), secret_in(clean_env), algorithms=["HS256"])
    assert (result.exit_code, claims["sub"], claims["role"]) == (0, "ops", "admin")


def test_token_ttl_sets_the_lifetime(clean_env: Path, server_secret: str) -> None:
    """`--ttl 2h` makes exp - iat exactly 7200 s; the default is 1 h."""
    two_hours = run("token", "--user", "alice", "--ttl", "2h").stdout.strip()
    default = run("token", "--user", "alice").stdout.strip()
    secret = secret_in(clean_env)
    spans = [
        (c["exp"] - c["iat"])
        for c in (jwt.decode(t, secret, algorithms=["HS256"]) for t in (two_hours, default))
    ]
    assert spans == [7200, 3600]


def test_token_uses_the_configured_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CHATWATCH_AUTH__JWT_SECRET set, the token is signed with that secret."""
    secret = "configured-secret-" + "z" * 30
    monkeypatch.setenv("CHATWATCH_AUTH__JWT_SECRET", secret)
    result = run("token", "--user", "alice")
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert (result.exit_code, claims["sub"]) == (0, "alice")


def test_tokens_keep_verifying_across_invocations(clean_env: Path, server_secret: str) -> None:
    """Two runs reuse one stored secret: both tokens verify with the file's secret."""
    first = run("token", "--user", "a").stdout.strip()
    second = run("token", "--user", "b").stdout.strip()
    secret = secret_in(clean_env)
    assert [jwt.decode(t, secret, algorithms=["HS256"])["sub"] for t in (first, second)] == [
        "a",
        "b",
    ]


@pytest.mark.parametrize("ttl", ["1x", "abc", "-5m", ""])
def test_bad_ttl_fails_with_exit_2_and_a_message(ttl: str) -> None:
    """--ttl 1x / abc / -5m / empty exits 2, names --ttl, and prints no token."""
    result = run("token", "--user", "alice", "--ttl", ttl)
    assert (result.exit_code, "--ttl" in result.stderr, result.stdout) == (2, True, "")


@pytest.mark.parametrize("ttl", ["99999999w", "367d"])
def test_ttl_beyond_a_year_fails(ttl: str) -> None:
    """--ttl 99999999w (a token for 1.9 million years) or 367d exits 2 naming --ttl."""
    result = run("token", "--user", "alice", "--ttl", ttl)
    assert (result.exit_code, "--ttl" in result.stderr, result.stdout) == (2, True, "")


def test_zero_ttl_fails() -> None:
    """--ttl 0s (already expired) exits 2 with a message about --ttl."""
    result = run("token", "--user", "alice", "--ttl", "0s")
    assert (result.exit_code, "--ttl" in result.stderr) == (2, True)


@pytest.mark.parametrize("user", ["", "u" * 65])
def test_bad_user_fails(user: str) -> None:
    """An empty or 65-char --user exits 2 naming --user, printing no token."""
    result = run("token", "--user", user)
    assert (result.exit_code, "--user" in result.stderr, result.stdout) == (2, True, "")


def test_token_without_user_fails() -> None:
    """`token` without --user is a usage error (exit 2)."""
    assert run("token").exit_code == 2


def test_token_with_bad_config_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """`token` refuses to mint under a misspelt CHATWATCH_AUTH__JWT_SECRT and names it."""
    monkeypatch.setenv("CHATWATCH_AUTH__JWT_SECRT", "x" * 32)
    result = run("token", "--user", "alice")
    assert (
        result.exit_code,
        "CHATWATCH_AUTH__JWT_SECRT" in result.stderr,
        result.stdout,
    ) == (2, True, "")


def test_token_refuses_without_a_secret_and_creates_none(clean_env: Path) -> None:
    """Issue 7: with no auth.jwt_secret and no <data_dir>/secret, `token` exits 2, says where
    it looked and how to fix it, prints no token and creates no secret (it used to make one)."""
    result = run("token", "--user", "alice")
    assert (
        result.exit_code,
        result.stdout,
        str(clean_env.resolve() / "secret") in result.stderr,
        "chatwatch serve" in result.stderr,
        "--config" in result.stderr,
        (clean_env / "secret").exists(),
    ) == (2, "", True, True, True, False)


def test_token_refuses_an_unreadable_secret(clean_env: Path) -> None:
    """A <data_dir>/secret that is a directory (unreadable as a file) is exit 2 naming it."""
    (clean_env / "secret").mkdir()
    result = run("token", "--user", "alice")
    assert (result.exit_code, result.stdout, "secret" in result.stderr) == (2, "", True)


def _env_without_chatwatch() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("CHATWATCH_")}


def test_token_from_another_folder_refuses_in_a_real_process(tmp_path: Path) -> None:
    """Issue 7: the installed script run in an empty folder with no settings exits 2 naming
    <cwd>/var/secret, and leaves the folder empty (it used to create ./var/secret there)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [str(CHATWATCH), "token", "--user", "alice"],
        cwd=elsewhere,
        env=_env_without_chatwatch(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        done.returncode,
        done.stdout,
        str(elsewhere.resolve() / "var" / "secret") in done.stderr,
        list(elsewhere.iterdir()),
    ) == (2, "", True, [])


def test_token_from_another_folder_uses_the_config_file(tmp_path: Path) -> None:
    """Run elsewhere with CHATWATCH_CONFIG naming the server's config, the installed script
    signs with the secret in that config's data_dir (the one `serve` uses)."""
    data_dir = tmp_path / "data"
    secret = load_or_create_secret(data_dir / "secret")[0]
    config = tmp_path / "chatwatch.toml"
    config.write_text(f'[server]\ndata_dir = "{data_dir}"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**_env_without_chatwatch(), "CHATWATCH_CONFIG": str(config)}
    done = subprocess.run(
        [str(CHATWATCH), "token", "--user", "alice"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    claims = jwt.decode(done.stdout.strip(), secret, algorithms=["HS256"])
    assert (done.returncode, claims["sub"], list(elsewhere.iterdir())) == (0, "alice", [])


# --- admin-token ------------------------------------------------------------------------


def test_admin_token_help_lists_rotate() -> None:
    """`admin-token --help` exits 0 and lists the rotate command."""
    result = run("admin-token", "--help")
    assert (result.exit_code, "rotate" in result.output) == (0, True)


def test_rotate_replaces_the_token_file_and_prints_the_new_token_once(clean_env: Path) -> None:
    """`admin-token rotate` writes a new token (mode 0600) to <data_dir>/admin_token and
    prints exactly it on stdout."""
    old = load_or_create_secret(clean_env / "admin_token")[0]
    result = run("admin-token", "rotate")
    path = clean_env / "admin_token"
    new = path.read_text().strip()
    assert (
        result.exit_code,
        result.stdout,
        new != old,
        len(new) >= 32,
        path.stat().st_mode & 0o777,
        [p.name for p in clean_env.iterdir()],
    ) == (0, new + "\n", True, True, 0o600, ["admin_token"])


def test_rotate_refuses_when_the_admin_token_is_in_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CHATWATCH_AUTH__ADMIN_TOKEN set, rotate exits 2 naming it, changing no file."""
    old = load_or_create_secret(clean_env / "admin_token")[0]
    monkeypatch.setenv("CHATWATCH_AUTH__ADMIN_TOKEN", "configured-admin-token-0123456789")
    result = run("admin-token", "rotate")
    assert (
        result.exit_code,
        result.stdout,
        "CHATWATCH_AUTH__ADMIN_TOKEN" in result.stderr,
        (clean_env / "admin_token").read_text().strip(),
    ) == (2, "", True, old)


def test_rotate_refuses_when_the_admin_token_is_in_the_config_file(tmp_path: Path) -> None:
    """With auth.admin_token in the config file, rotate exits 2 naming the file."""
    config = tmp_path / "chatwatch.toml"
    config.write_text('[auth]\nadmin_token = "configured-admin-token-0123456789"\n')
    result = run("admin-token", "rotate", "--config", str(config))
    assert (result.exit_code, result.stdout, str(config) in result.stderr) == (2, "", True)


def test_rotate_refuses_where_no_server_has_run(clean_env: Path) -> None:
    """With no <data_dir>/admin_token, rotate exits 2 naming the path and writes nothing."""
    result = run("admin-token", "rotate")
    assert (
        result.exit_code,
        result.stdout,
        str(clean_env.resolve() / "admin_token") in result.stderr,
        list(clean_env.iterdir()),
    ) == (2, "", True, [])


# --- serve ------------------------------------------------------------------------------


def test_serve_runs_the_server_with_env_settings(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control case: with valid settings `serve` reaches the server with CHATWATCH_* applied."""
    monkeypatch.setenv("CHATWATCH_SERVER__PORT", "9100")
    result = run("serve")
    assert (result.exit_code, [s.server.port for s in served]) == (0, [9100])


def test_serve_flags_beat_env(served: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --port 9200 --host 0.0.0.0` wins over CHATWATCH_SERVER__PORT=9100."""
    monkeypatch.setenv("CHATWATCH_SERVER__PORT", "9100")
    result = run("serve", "--port", "9200", "--host", "0.0.0.0")
    assert (
        result.exit_code,
        [(s.server.host, s.server.port) for s in served],
    ) == (0, [("0.0.0.0", 9200)])


def test_serve_prints_the_generated_admin_token_once(
    served: list[Settings], clean_env: Path
) -> None:
    """The first `serve` prints the admin token it generated; the second does not print it."""
    first = run("serve")
    token = (clean_env / "admin_token").read_text().strip()
    second = run("serve")
    assert (token in first.stderr, token in second.stderr) == (True, False)


def test_unknown_env_key_stops_serve_before_starting(
    served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHATWATCH_SERVER__PORTT=1 makes `serve` exit non-zero naming it; no server is started."""
    monkeypatch.setenv("CHATWATCH_SERVER__PORTT", "1")
    result = run("serve")
    assert (
        result.exit_code != 0,
        "CHATWATCH_SERVER__PORTT" in result.output,
        served,
    ) == (True, True, [])


def test_bad_env_value_stops_serve(served: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """CHATWATCH_SERVER__PORT=abc makes `serve` exit non-zero naming server.port."""
    monkeypatch.setenv("CHATWATCH_SERVER__PORT", "abc")
    result = run("serve")
    assert (result.exit_code != 0, "server.port" in result.output, served) == (True, True, [])


def test_bad_toml_value_stops_serve(served: list[Settings], tmp_path: Path) -> None:
    """A config file with port = "abc" makes `serve --config` exit non-zero naming server.port."""
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nport = "abc"\n')
    result = run("serve", "--config", str(config))
    assert (result.exit_code != 0, "server.port" in result.output, served) == (True, True, [])


def test_unknown_toml_key_stops_serve(served: list[Settings], tmp_path: Path) -> None:
    """A config file with [limits] max_messsage_bytes (typo) names the key and starts nothing."""
    config = tmp_path / "typo.toml"
    config.write_text("[limits]\nmax_messsage_bytes = 10\n")
    result = run("serve", "--config", str(config))
    assert (
        result.exit_code != 0,
        "limits.max_messsage_bytes" in result.output,
        served,
    ) == (True, True, [])


def test_missing_config_file_stops_serve(served: list[Settings], tmp_path: Path) -> None:
    """`serve --config missing.toml` exits non-zero naming the file."""
    missing = tmp_path / "missing.toml"
    result = run("serve", "--config", str(missing))
    assert (result.exit_code != 0, str(missing) in result.output, served) == (True, True, [])


def test_out_of_range_port_flag_stops_serve(served: list[Settings]) -> None:
    """`serve --port 70000` exits non-zero naming port, without starting."""
    result = run("serve", "--port", "70000")
    assert (result.exit_code != 0, "port" in result.output, served) == (True, True, [])


def test_real_process_exits_on_unknown_key_without_serving(clean_env: Path) -> None:
    """The installed script with CHATWATCH_SERVER__PORTT=1 exits non-zero promptly, naming it."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHATWATCH_")}
    env.update(CHATWATCH_SERVER__DATA_DIR=str(clean_env), CHATWATCH_SERVER__PORTT="1")
    done = subprocess.run(
        [str(CHATWATCH), "serve"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (done.returncode != 0, "CHATWATCH_SERVER__PORTT" in done.stderr) == (True, True)
