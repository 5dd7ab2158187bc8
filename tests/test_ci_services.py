"""SEARCH_REQUIRE_SERVICES (set by .ci/run): a test that skips for a service CI installed fails
instead; without the variable it still skips with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SKIPPING = """
import pytest

def test_needs_a_browser():
    pytest.skip("/usr/bin/chromium not found (install Debian's `chromium` package)")

@pytest.mark.skipif(True, reason="the gp extra (PyTorch)")
def test_needs_torch():
    pass

def test_skips_for_something_else():
    pytest.skip("no /dev/full on this system")
"""


def _run(tmp_path: Path, required: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "SEARCH_REQUIRE_SERVICES"}
    if required is not None:
        env["SEARCH_REQUIRE_SERVICES"] = required
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfs",
            "--confcutdir",
            str(tmp_path),
            "-p",
            "tests.conftest",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_skip_for_a_required_service_fails(tmp_path: Path) -> None:
    result = _run(tmp_path, "postgresql,chromium,docker-compose,torch")
    assert result.returncode == 1, result.stdout
    # a skip in the call fails the test; a skipif mark (at setup) makes it an error
    assert "1 failed, 1 skipped, 1 error" in result.stdout, result.stdout
    assert "SEARCH_REQUIRE_SERVICES names chromium, but this test skipped" in result.stdout
    assert "SEARCH_REQUIRE_SERVICES names torch, but this test skipped" in result.stdout


def test_without_the_variable_such_tests_skip_with_their_reason(tmp_path: Path) -> None:
    result = _run(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "3 skipped" in result.stdout and "chromium not found" in result.stdout
