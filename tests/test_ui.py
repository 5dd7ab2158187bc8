"""What a person sees: the MLflow UI of a real `mlflow server`, in headless Chromium.

A small study is logged by `search run` to MLflow's local store, and the UI is started with the
command `search run` prints. The browser opens the link it prints, then starts again at the
experiments list, opens the study, expands its parent run to show the trial runs, shows their
metric charts, opens one trial's metric chart, and saves screenshots (into the test's tmp dir, and
into $SEARCH_SCREENSHOT_DIR when that is set). The logging to a real `mlflow server` is tested
in tests/test_distributed.py and tests/test_storage_faults.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRIALS = 2
EPOCHS = 2


def _save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if folder := os.environ.get("SEARCH_SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)
    return path


def _new_page(browser):
    """A page in a fresh browser context (nothing remembered of earlier visits)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(90_000)
    return page


def _expand_the_study(page, study: str, expect) -> None:
    """Expand the study's parent run in the runs table: its trial runs show."""
    parent_cell = page.locator(
        "[role=gridcell]", has=page.get_by_role("link", name=study, exact=True)
    ).first
    expect(parent_cell).to_be_visible()
    parent_cell.locator("button").first.click()  # the expander of the nested runs
    for number in range(TRIALS):
        expect(page.get_by_role("link", name=f"trial-{number}", exact=True)).to_be_visible()


@pytest.mark.timeout(900)
def test_the_link_search_run_prints_opens_the_study_its_trials_and_their_charts(tmp_path):
    """The last line of `search run` is the study's runs table in the MLflow UI: started with
    the command the line before prints (only its port changed), the link opens the Model
    training view's runs, no GenAI overview, with the parent run and, expanded, its trials.
    From the experiments list the same study opens too: its trials' val_mae charts side by
    side, and one trial's own page with its metric chart. One study, one UI server, one
    browser for both ways in."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (install Debian's `chromium` package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    expect = sync_api.expect
    import shlex

    from tests.cli_helpers import cli_env, run_cli
    from tests.servers import free_port, wait_for_http

    study = "ui-link"
    run = run_cli(
        *("run", "--study", study, "--trials", str(TRIALS), "--epochs", str(EPOCHS)),
        *("--max-rows", "9000"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    *_, start_line, link_line = run.stdout.strip().splitlines()
    assert start_line.startswith("start the MLflow UI: "), start_line
    assert link_line.startswith("the study's runs in the MLflow UI: http://127.0.0.1:5000/#/")
    port = free_port()
    command = shlex.split(start_line.removeprefix("start the MLflow UI: "))
    assert command[-2:] == ["--port", "5000"], command
    link = link_line.rsplit(": ", 1)[1].replace(":5000/", f":{port}/", 1)
    ui = subprocess.Popen(
        [*command[:-1], str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=120, process=ui)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = _new_page(browser)
                expect.set_options(timeout=90_000)
                page.goto(link)
                # the runs table itself, no toggle clicked: the "Model training" view's "Runs",
                # not the GenAI view's "Training runs" beside its Overview, Judges, Prompts...
                expect(page.get_by_text("matching runs")).to_be_visible()
                expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
                expect(page.get_by_text("Overview", exact=True)).to_have_count(0)
                assert "/runs" in page.url and "workflowType=machine_learning" in page.url
                assistant_close = page.get_by_role("button", name="Close", exact=True)
                if assistant_close.count():
                    assistant_close.first.click()
                _expand_the_study(page, study, expect)
                shot = _save(page, tmp_path, "mlflow-ui-runs-link.png")

                # the README's way to the val MAE and skill columns: Columns, then each metric
                page.get_by_role("button", name="Columns", exact=True).click()
                for metric in ("best_val_mae", "skill"):
                    page.get_by_placeholder("Search columns").fill(metric)
                    title = page.locator(
                        ".du-bois-light-tree-title", has_text=re.compile(f"^{metric}$")
                    )
                    node = page.locator(".du-bois-light-tree-treenode").filter(has=title)
                    node.locator(".du-bois-light-tree-checkbox").click()
                page.keyboard.press("Escape")
                for metric in ("best_val_mae", "skill"):
                    expect(page.get_by_role("columnheader", name=metric).first).to_be_visible()
                _save(page, tmp_path, "mlflow-ui-runs-link-columns.png")

                # The other way in, in a fresh context (nothing remembered of the link's
                # visit): the experiments list, the study under its own name.
                page.context.close()
                page = _new_page(browser)
                assistant_close = page.get_by_role("button", name="Close", exact=True)
                page.goto(link.split("#", 1)[0] + "#/experiments")
                page.get_by_text("Model training", exact=True).click()  # opens on GenAI
                study_link = page.get_by_role("link", name=study, exact=True).first
                expect(study_link).to_be_visible()
                study_link.click()
                expect(page.get_by_text("matching runs")).to_be_visible()
                if assistant_close.count():
                    assistant_close.first.click()
                _expand_the_study(page, study, expect)

                # The chart view: every trial's val_mae curve, side by side with the run list.
                page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
                page.get_by_role("searchbox", name="Search metric charts").fill("val_mae")
                expect(page.get_by_role("heading", name="val_mae", exact=True)).to_be_visible()
                for number in range(TRIALS):
                    label = page.get_by_text(f"trial-{number} (val_mae)", exact=True)
                    expect(label).to_be_visible()
                overview = _save(page, tmp_path, "mlflow-ui-study-runs.png")

                # One trial: its page, its metric charts.
                page.get_by_role("link", name="trial-0", exact=True).first.click()
                expect(page.get_by_role("heading", name="trial-0")).to_be_visible()
                page.get_by_role("tab", name="Model metrics").click()
                page.get_by_role("searchbox", name="Search metric charts").fill("val_mae")
                expect(page.get_by_role("heading", name="val_mae", exact=True)).to_be_visible()
                expect(page.get_by_text("trial-0 (val_mae)", exact=True)).to_be_visible()
                chart = page.locator("svg").filter(has=page.locator("text", has_text="Step"))
                expect(chart.first).to_be_visible()
                trial_shot = _save(page, tmp_path, "mlflow-ui-trial-metrics.png")
            finally:
                browser.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)
    for picture in (shot, overview, trial_shot):
        assert picture.stat().st_size > 10_000  # a real rendering, not a blank page
