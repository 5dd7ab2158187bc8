"""`search dashboard`: optuna-dashboard over a study storage.

Fast: a missing storage or a busy port is one line and exit code 2; the dashboard serves a journal
storage (our `journal:` URLs, opened through `open_storage`); the address line hides passwords.
Slow: a real `search dashboard` process, a study in SQLite, headless Chromium finds the study by
name, opens it and sees every trial's intermediate values; Ctrl-C (SIGINT) stops it with code 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.cli_helpers import cli_env, run_cli, search_command
from tests.servers import free_port, wait_for_http
from tests.test_ui import CHROMIUM, CHROMIUM_ARGS

STUDY = "dash-study"
OTHER_STUDY = "other-study"
TRIALS = 3
STEPS = 3


def _make_study(storage: object, name: str = STUDY) -> None:
    """A small minimising study whose trials report an intermediate value at every step."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage)
    for number in range(TRIALS):
        trial = study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        for step in range(STEPS):
            trial.report(x * x + (number + 1) / (step + 1), step)
        study.tell(trial, x * x)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("search dashboard: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------------------ fast


def test_a_missing_storage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("dashboard", "--storage", "sqlite:///missing.db", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result.stderr)
    assert "missing.db" in line and "does not exist" in line, line
    assert result.stdout == ""
    assert not (tmp_path / "missing.db").exists()  # browsing never creates a database


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _make_study(f"sqlite:///{tmp_path / 'studies.db'}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "dashboard", "--storage", "sqlite:///studies.db", "--port", str(port), cwd=tmp_path
        )
    assert result.returncode == 2, result.stderr
    assert "in use" in _one_error_line(result.stderr)


def test_it_serves_a_journal_storage(tmp_path: Path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.engines.dashboard import describe, start

    log = tmp_path / "studies.log"
    _make_study(JournalStorage(JournalFileBackend(str(log))))
    dashboard = start(f"journal:///{log}", port=0)
    thread = threading.Thread(target=dashboard.serve_forever, daemon=True)
    thread.start()
    try:
        assert describe(dashboard) == (
            f"optuna-dashboard for journal:///{str(log).lstrip('/')}: "
            f"http://127.0.0.1:{dashboard.port}/  (Ctrl-C to stop)"
        )
        with urllib.request.urlopen(f"{dashboard.url}api/studies", timeout=10) as response:
            studies = json.load(response)["study_summaries"]
        assert [s["study_name"] for s in studies] == [STUDY]
    finally:
        dashboard.shutdown()
        dashboard.close()
        thread.join(timeout=10)


def test_the_address_line_hides_a_password() -> None:
    from search.engines.dashboard import describe

    line = describe(
        SimpleNamespace(
            storage_url="postgresql://optuna:s3cret@db:5432/optuna", url="http://127.0.0.1:8080/"
        )
    )
    assert "s3cret" not in line
    assert line.endswith(": http://127.0.0.1:8080/  (Ctrl-C to stop)")


# ------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_dashboard_shows_the_study_and_its_intermediate_values(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (install Debian's `chromium` package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    expect = sync_api.expect

    database = tmp_path / "studies.db"
    _make_study(f"sqlite:///{database}", OTHER_STUDY)
    _make_study(f"sqlite:///{database}", STUDY)
    port = free_port()
    server = subprocess.Popen(
        search_command("dashboard", "--storage", f"sqlite:///{database}", "--port", str(port)),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and a child would inherit that: Ctrl-C is
        # what this test sends, so the server gets Python's usual handler whoever starts pytest.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        address = f"http://127.0.0.1:{port}/"
        wait_for_http(f"{address}api/studies", timeout=30, process=server)

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(20_000)
                expect.set_options(timeout=20_000)

                # The studies list: both studies, this one opened by its name.
                page.goto(address)
                expect(page.get_by_text(OTHER_STUDY)).to_be_visible()
                study_card = page.get_by_text(STUDY).first
                expect(study_card).to_be_visible()
                studies = tmp_path / "optuna-dashboard-studies.png"
                page.screenshot(path=str(studies))
                study_card.click()

                # The study's page: its name, and the intermediate values of every trial,
                # one line per trial with a point per reported step.
                expect(page.get_by_text(f"{STUDY} (id=", exact=False)).to_be_visible()
                expect(page.get_by_role("heading", name="Intermediate values")).to_be_visible()
                plot = page.locator("#graph-intermediate-values")
                expect(plot.locator(".xtitle")).to_have_text("Step")
                for number in range(TRIALS):
                    expect(plot.locator(".legendtext", has_text=f"trial #{number}")).to_have_count(
                        1
                    )
                expect(plot.locator(".scatterlayer .trace")).to_have_count(TRIALS)
                expect(plot.locator(".scatterlayer .trace .points path")).to_have_count(
                    TRIALS * STEPS
                )
                screenshot = tmp_path / "optuna-dashboard-study.png"
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
        for shot in (studies, screenshot):
            assert shot.stat().st_size > 10_000  # a real rendering, not a blank page
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        try:
            stdout, stderr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            stdout, stderr = server.communicate()

    assert server.returncode == 0, stderr
    assert stderr == ""  # no traceback, no per-request log lines
    assert stdout == (f"optuna-dashboard for sqlite:///{database}: {address}  (Ctrl-C to stop)\n")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_dashboard_names_the_objective_with_its_unit(tmp_path: Path) -> None:
    """The study as `search run` opens it: its objective is "val MAE (degC)", not "Objective 0"."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (install Debian's `chromium` package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    expect = sync_api.expect
    from search.engines.base import SearchOptions
    from search.engines.optuna import OptunaEngine
    from search.study import objective_name

    database = tmp_path / "studies.db"
    engine = OptunaEngine(f"sqlite:///{database}")
    engine.configure(SearchOptions())
    engine.open(STUDY, seed=1)
    engine.name_objective(objective_name("degC"))
    for number in range(TRIALS):
        trial = engine.study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        for step in range(STEPS):
            trial.report(2.0 + x * x + (number + 1) / (step + 1), step)
        engine.study.tell(trial, 2.0 + x * x)
    port = free_port()
    server = subprocess.Popen(
        search_command("dashboard", "--storage", f"sqlite:///{database}", "--port", str(port)),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        address = f"http://127.0.0.1:{port}/"
        wait_for_http(f"{address}api/studies", timeout=30, process=server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(20_000)
                expect.set_options(timeout=20_000)
                page.goto(address)
                page.get_by_text(STUDY).first.click()
                expect(page.get_by_text(f"{STUDY} (id=", exact=False)).to_be_visible()
                # the optimization history's y axis names it
                history_axis = page.locator(".ytitle").filter(has_text="val MAE (degC)")
                expect(history_axis.first).to_be_visible()
                expect(page.get_by_text("Objective 0")).to_have_count(0)
                screenshot = tmp_path / "optuna-dashboard-objective.png"
                page.screenshot(path=str(screenshot), full_page=True)
                if folder := os.environ.get("SEARCH_SCREENSHOT_DIR"):
                    Path(folder).mkdir(parents=True, exist_ok=True)
                    shutil.copy(screenshot, Path(folder) / screenshot.name)
            finally:
                browser.close()
        assert screenshot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=15)
