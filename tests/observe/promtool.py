"""promtool for tests: found on PATH, or installed from Debian's prometheus package."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def find_or_install_promtool() -> str:
    """promtool; installs Debian's prometheus if missing, else skips (fails under CI=true)."""
    found = shutil.which("promtool")
    if found:
        return found
    install = (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus"
    )
    result = subprocess.run(
        ["bash", "-c", install], capture_output=True, text=True, timeout=600, check=False
    )
    found = shutil.which("promtool")
    if found:
        return found
    reason = f"promtool missing and installing prometheus failed: {result.stderr[-500:]}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)
