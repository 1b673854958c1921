"""The API documents what it does: schemathesis over every operation of ``/api/openapi.json``.

A real server (in its own thread: schemathesis' pytest integration is synchronous) is
fuzzed twice, with the admin token and with no credentials, with every check schemathesis
has (no 5xx, status codes, content types, headers and bodies as declared, schema-valid
requests accepted, schema-invalid ones rejected, …). Without credentials every admin
operation must answer its declared 401.

The server's guest-login limit is raised (the product default is 60 a minute per IP, and
every example comes from 127.0.0.1): with it, most guest logins would test only the 429.
Nothing is excluded: erasing users and resetting the metrics window are harmless on this
throwaway server.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.threaded import ThreadServer

# Bounded for ``make test``; deterministic generation makes every run try the same cases.
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for both runs (a server per example would dominate the time)."""
    with ThreadServer(
        tmp_path_factory.mktemp("contract"),
        limits={"guest_logins_per_minute": 1_000_000},
        logging={"level": "ERROR"},
    ) as srv:
        yield srv


# ``since`` after ``until`` is a 400 by design, and a schema cannot say that one parameter
# must be before another. Alert rules and silences are checked against the running service
# as well as their shape (a known signal and channels, a silence that ends in the future, a
# free rule name): there too a schema-valid body may be refused, always with a 400 naming
# the field. Only these operations relax that one check; every other check stays on.
CONFIG = """
[[operations]]
include-path = "/api/v1/admin/chat/metrics/history"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403]

[[operations]]
include-path = "/api/v1/admin/chat/alerts"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409]

[[operations]]
include-path = "/api/v1/admin/chat/alerts/rules"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409]

[[operations]]
include-path = "/api/v1/admin/chat/alerts/rules/{name}"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409]

[[operations]]
include-path = "/api/v1/admin/chat/alerts/silences"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409]
"""


def _schemathesis(server: LiveServer, workdir: Path, *headers: str) -> tuple[int, str]:
    """Run schemathesis' own CLI over every operation with every check; exit code and report."""
    # The CLI rather than the pytest plugin: the plugin's lazy schema needs pytest < 9.2
    # (it sets ``Node._nodeid``), and the CLI runs the stateful phase too.
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--request-timeout",
        "10",
        "--no-color",
        "--output-truncate",
        "false",
    ]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=300, check=False
    )
    return done.returncode, done.stdout + done.stderr


def test_every_operation_with_admin_token(contract_server: LiveServer, tmp_path: Path) -> None:
    """With the admin token: every answer is declared, none is a 5xx, valid bodies pass."""
    code, report = _schemathesis(contract_server, tmp_path, f"Authorization: Bearer {ADMIN_TOKEN}")
    assert code == 0, report


def test_every_operation_without_credentials(contract_server: LiveServer, tmp_path: Path) -> None:
    """Without credentials: the open operations as above, every admin one a declared 401."""
    code, report = _schemathesis(contract_server, tmp_path)
    assert code == 0, report


def test_no_operation_declares_the_unused_422(contract_server: LiveServer) -> None:
    """Validation errors answer 400 with a reason, so the schema must not promise FastAPI's
    stock 422 (it listed one on every operation with parameters)."""
    schema = httpx.get(contract_server.url + "/api/openapi.json", timeout=10).json()
    declared = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "422" in operation.get("responses", {})
    }
    assert declared == set()
