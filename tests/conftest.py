import os

import pytest
from hypothesis import settings

pytest_plugins = ["tests.servers"]

# In CI the property tests draw the same examples on every run (derandomize), so a failure seen
# there reproduces on a laptop with `CI=1 pytest tests/test_windows.py`; locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# Heaviest files first (from `--durations` in CI logs): with `-n 3 --dist loadfile` a worker takes
# whole files in collection order, so a long file collected last keeps one worker busy while the
# others idle. Within a file, and among the files not listed, the order is unchanged.
HEAVY_FIRST = (  # seconds a file's tests took, summed (`--durations=0`, -n 2, 2026-12-03)
    "test_resume.py",  # 124
    "test_engines.py",  # 110
    "test_faults.py",  # 98
    "test_storage_faults.py",  # 92
    "test_use.py",  # 78
    "test_distributed.py",  # 72
    "test_jobs.py",  # 70
    "test_bench_gpu.py",  # 69
    "test_folds.py",  # 68
    "test_e2e.py",  # 64
    "test_spool.py",  # 59
    "test_ui.py",  # 56
    "test_auth.py",  # 50
    "test_transfer.py",  # 49
    "test_default_search.py",  # 47
    "test_study.py",  # 47
    "test_ensemble.py",  # 38
    "test_models.py",  # 37
    "test_backend.py",  # 30
    "test_next_day.py",  # 27
    "test_bad_input.py",  # 25
    "test_dashboard.py",  # 21
    "test_budget.py",  # 19
    "test_compose.py",  # 15
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# .ci/run installs PostgreSQL, Chromium, docker-compose and PyTorch, and names them here: a test
# that skips because one of them is missing fails instead, so CI never passes by skipping what it
# installed. On a laptop (variable unset) such tests still skip with their reason.
REQUIRED_SERVICES = {
    name.strip()
    for name in os.environ.get("SEARCH_REQUIRE_SERVICES", "").split(",")
    if name.strip()
}
SERVICE_WORDS = {
    "postgresql": ("postgres", "initdb"),
    "chromium": ("chromium", "playwright"),
    "docker-compose": ("compose",),
    "torch": ("torch",),
    "jax": ("jax",),
}


def required_service(reason: str) -> str | None:
    """The required service a skip's reason names, if any."""
    text = reason.lower()
    for service in sorted(REQUIRED_SERVICES):
        if any(word in text for word in SERVICE_WORDS.get(service, (service,))):
            return service
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRED_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = str(longrepr[-1]) if isinstance(longrepr, tuple) else str(longrepr)
        service = required_service(reason)
        if service:
            report.outcome = "failed"
            report.longrepr = (
                f"SEARCH_REQUIRE_SERVICES names {service}, but this test skipped: {reason}"
            )
    return None


_CACHE_KEY = pytest.StashKey[tuple[str | None, str]]()  # (SEARCH_CACHE_DIR before, the run's)


def pytest_configure(config: pytest.Config) -> None:
    """One user cache folder per test run (``SEARCH_CACHE_DIR``), shared by the xdist workers and
    every process they start, which inherit it: the linear references a run stores stay out of
    the user's ``~/.cache/search``, and every run starts cold, as CI does, whatever earlier runs
    left there."""
    if hasattr(config, "workerinput"):
        return
    import tempfile

    folder = tempfile.mkdtemp(prefix="search-test-cache-")
    config.stash[_CACHE_KEY] = (os.environ.get("SEARCH_CACHE_DIR"), folder)
    os.environ["SEARCH_CACHE_DIR"] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    """The xdist controller stops the PostgreSQL cluster and `mlflow server` its workers shared
    (tests/servers.py): their state files lie in its basetemp, the parent of the workers'; and
    it removes the run's cache folder."""
    if hasattr(config, "workerinput"):
        return
    if _CACHE_KEY in config.stash:
        import shutil

        before, folder = config.stash[_CACHE_KEY]
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("SEARCH_CACHE_DIR", None)
        else:
            os.environ["SEARCH_CACHE_DIR"] = before
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or factory._basetemp is None:
        return
    from tests.servers import stop_shared_servers

    stop_shared_servers(factory.getbasetemp())
