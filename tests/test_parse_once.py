"""Parse once (issue 18): for `search run`, the CLI plans the study before Keras is imported and
run_study takes that plan as it is; each input is loaded or checked once on the way."""

from __future__ import annotations

import collections
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

import search.data.sources
import search.data.splits
import search.spaces
import search.study
import search.tracking
from search._resources import spaces_dir
from search.errors import SearchError
from tests.cli_helpers import run_cli_here
from tests.data_helpers import write_jena_csv

COUNTED = (
    (search.spaces, "load_space"),
    (search.data.sources, "validate_source"),
    (search.data.splits, "parse_split"),
    (search.study, "plan_study"),
    (search.tracking, "check_tracking_uri"),
)


@pytest.fixture
def keep_signal_handlers() -> Any:
    """The CLI installs its own SIGINT/SIGTERM handlers; the test process gets its back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_new_study_parses_each_input_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_signal_handlers: Any
) -> None:
    shutil.copy(spaces_dir() / "quick.yaml", tmp_path / "myspace.yaml")
    write_jena_csv(tmp_path / "weather.csv", n_rows=300)
    calls: collections.Counter[str] = collections.Counter()
    for module, name in COUNTED:
        real = getattr(module, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    seen: dict[str, Any] = {}

    def stop_before_the_data(record: Any, space: Any, new: bool, say: Any) -> Any:
        seen.update(record=record, space=space, new=new)
        raise SearchError("stopped by the test before loading the data")

    monkeypatch.setattr(search.study, "load_and_check", stop_before_the_data)
    result = run_cli_here(
        "run",
        "--space",
        "myspace.yaml",
        "--data",
        "weather.csv",
        "--split",
        "blocked",
        "--trials",
        "1",
        cwd=tmp_path,
    )
    assert "stopped by the test" in result.stderr, result.stderr
    assert result.returncode == 2
    assert seen["new"] is True
    assert seen["record"].split == "blocked:28"
    assert seen["space"].path == (tmp_path / "myspace.yaml").resolve()  # as the record names it
    assert dict(calls) == {name: 1 for _, name in COUNTED}
