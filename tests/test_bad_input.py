"""A catalogue of bad input (issue 13): CLI flags, study names, storage URLs, tracking URIs, space
files and data files. Each case is one line on stderr (``search COMMAND: error: ...``) naming the
offending thing, exit code 2, no traceback, nothing created in the working directory, and the
study already stored (an Optuna SQLite storage and an MLflow SQLite store with its artifacts,
made once by a real `search run`) byte for byte unchanged.

The catalogue (``CATALOGUE``: everything refused before Keras is imported) runs through the CLI's
entry point, ``search.cli.main``, in this process: about 0.1 s a case instead of a second or two
for a fresh interpreter. A case that gets as far as choosing a Keras backend fails (it would
have trained). A sample of it (``IN_A_PROCESS``) also runs as ``python -m search`` subprocesses.
The cases only found while loading data (``LOADING``) get past the backend's choice but must be
refused before Keras is imported (the trial module cannot be imported while they run), in this
process too, and one of them also in a subprocess; the loader's own errors are checked
in-process too (``load_dataset`` / ``load_study_data``).

The CSV loader and the space loader are fuzzed with hypothesis: whatever the input, they return
a result or raise a one-line SearchError, never anything else.

tests/test_cli_errors.py holds the first such cases; none of them is repeated here.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.data.sources import load_dataset
from search.errors import DataError, SearchError, SpaceError
from search.record import StudyRecord, load_study_data
from search.spaces import load_space, space_from_text
from search.training import models
from tests.cli_helpers import Result, run_cli, run_cli_here
from tests.data_helpers import write_csv, write_jena_csv

REPO = Path(__file__).resolve().parents[1]
STUDY = "existing"
SECRET = "hunter2"  # a password that must never be echoed
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------------------------- helpers


def assert_one_line(message: str) -> None:
    """A SearchError's message: non-empty, one line."""
    assert message.strip(), "empty message"
    assert len(message.splitlines()) == 1, repr(message)


def assert_user_error(result: Result, command: str, needles: list[str]) -> None:
    """Exit code 2, exactly one non-empty line on stderr in the CLI's format, no traceback,
    the message naming the offending thing."""
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == 2, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), shown
    assert lines[0].startswith(f"search {command}: error: "), shown
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert SECRET not in result.stdout + result.stderr, "a password was echoed"


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ fixtures


@dataclass
class Store:
    """The study already stored, and where the cases' input files are."""

    root: Path  # the storage and tracking files (and MLflow's artifacts), never to change
    pristine: Path  # a copy, to restore the store if a case changed it
    inputs: Path  # the cases' input files
    hashes: dict[str, str]
    ports: dict[str, int]

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.root / 'studies.db'}"

    @property
    def tracking(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def fill(self, arg: str) -> str:
        """An argument with its placeholders filled in."""
        values = {
            "{S}": self.storage,
            "{T}": self.tracking,
            "{store}": str(self.root),
            "{in}": str(self.inputs),
            **{f"{{port:{name}}}": str(port) for name, port in self.ports.items()},
        }
        for key, value in values.items():
            arg = arg.replace(key, value)
        return arg

    def check_unchanged(self) -> None:
        """Fail (after restoring the store for the next case) if any stored file changed."""
        now = snapshot(self.root)
        if now == self.hashes:
            return
        changed = sorted(
            name for name in set(now) | set(self.hashes) if now.get(name) != self.hashes.get(name)
        )
        shutil.rmtree(self.root)
        shutil.copytree(self.pristine, self.root)
        pytest.fail(f"stored files changed: {changed}")


def _space_text(**replace: str) -> str:
    """The shipped quick space's text with lines replaced (key: prefix of the line -> new line)."""
    lines = (REPO / "spaces" / "quick.yaml").read_text().splitlines()
    out = []
    for line in lines:
        for prefix, new in replace.items():
            if line.lstrip().startswith(prefix):
                line = new
                break
        out.append(line)
    return "\n".join(out) + "\n"


QUANTILE_CASES = {  # issue 25: quantile levels a space may not hold
    "outside": "[0.0, 0.5, 0.9]",
    "above_one": "[0.1, 0.5, 1.5]",
    "unsorted": "[0.9, 0.5, 0.1]",
    "repeated": "[0.1, 0.5, 0.5, 0.9]",
    "no_median": "[0.1, 0.9]",
}


def _write_inputs(inputs: Path) -> None:
    spaces = {
        "binary.yaml": b"\xff\xfe\x00\x81 not text \x00\x9c",
        "list.yaml": b"- name: quick\n- architecture: dense\n",
        "empty.yaml": b"",
        "transformer.yaml": _space_text(architecture="architecture: transformer").encode(),
        "string_bound.yaml": _space_text(
            **{"units:": '  units: {type: int, low: "8", high: 64, log: true}'}
        ).encode(),
        "dropout.yaml": _space_text(
            **{"dropout:": "  dropout: {type: float, low: 0.0, high: 1.5, step: 0.1}"}
        ).encode(),
        "optimiser.yaml": _space_text(
            **{"fixed:": "fixed: {epochs: 3, optimiser: adam, patience: 2, horizon_hours: 24}"}
        ).encode(),
        "timestamp.yaml": _space_text(
            **{"description:": "description: !!timestamp 2020-13-45"}
        ).encode(),
        "infinite.yaml": _space_text(
            **{
                "learning_rate:": "  learning_rate: {type: float, low: 0.001, high: .inf, "
                "step: 0.001}"
            }
        ).encode(),
        "tabs.yaml": b"name: tabs\n\tarchitecture: dense\n",
        **{
            f"quantiles_{name}.yaml": _space_text(
                **{"fixed:": f"fixed: {{epochs: 3, horizon_hours: 24, quantiles: {levels}}}"}
            ).encode()
            for name, levels in QUANTILE_CASES.items()
        },
        "steps_zero.yaml": _space_text(
            **{"fixed:": "fixed: {epochs: 3, horizon_hours: 24, target_steps: 0}"}
        ).encode(),
        "pathkey.yaml": (_space_text() + "path: /etc/passwd\n").encode(),
        "quick.yaml": (REPO / "spaces" / "quick.yaml").read_bytes(),
    }
    for name, payload in spaces.items():
        (inputs / name).write_bytes(payload)
    write_jena_csv(inputs / "good.csv", 300)
    write_jena_csv(inputs / "short.csv", 60)
    times = [f"2020-01-01 {h:02d}:{m:02d}:00" for h in range(4) for m in range(0, 60, 10)]
    write_csv(
        inputs / "nan_target.csv",
        ["date", "T (degC)", "p (mbar)"],
        [[t, "", 990 + i] for i, t in enumerate(times)],
    )
    (inputs / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (inputs / "notes.txt").write_text("these are notes, not a database\n")
    (inputs / "folder").mkdir()


class _Html(http.server.BaseHTTPRequestHandler):
    """A web server that is not MLflow: 200 and a web page for every path."""

    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = b"<html><body>hello</body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _NotFound(_Html):
    status = 404


def _banner_server(stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """A TCP server that does not speak HTTP (an SSH banner, then it hangs up)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    """Ports: a web page server, a 404 server, a non-HTTP server, and a closed port."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    missing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    for server in (web, missing):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    banner, thread = _banner_server(stop)
    try:
        yield {
            "html": web.server_address[1],
            "404": missing.server_address[1],
            "ssh": banner.getsockname()[1],
            "closed": free_port(),
        }
    finally:
        web.shutdown()
        missing.shutdown()
        stop.set()
        thread.join(timeout=5)
        banner.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, servers: dict[str, int]) -> Store:
    """One real study (one trial, one epoch) in a SQLite storage and a SQLite MLflow store."""
    base = tmp_path_factory.mktemp("bad-input")
    root, inputs = base / "store", base / "inputs"
    root.mkdir()
    inputs.mkdir()
    result = run_cli_here(
        "run",
        "--study",
        STUDY,
        "--trials",
        "1",
        "--epochs",
        "1",
        "--max-rows",
        "9000",
        "--storage",
        f"sqlite:///{root / 'studies.db'}",
        "--tracking-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        cwd=root,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (root / "studies.db").is_file() and (root / "mlflow.db").is_file()
    pristine = base / "pristine"
    shutil.copytree(root, pristine)
    _write_inputs(inputs)
    return Store(root, pristine, inputs, snapshot(root), servers)


# ------------------------------------------------------------------------ the CLI catalogue


def _existing(*extra: str) -> list[str]:
    """`search run` resuming the stored study."""
    return ["run", "--study", STUDY, "--storage", "{S}", "--tracking-uri", "{T}", *extra]


def _new(*extra: str) -> list[str]:
    """`search run` starting a new study in the stored study's storage and tracking store."""
    return ["run", "--study", "newcomer", "--storage", "{S}", "--tracking-uri", "{T}", *extra]


def case(case_id: str, args: list[str], needles: list[str], **kw: object) -> object:
    env = kw.pop("env", None)
    marks = kw.pop("marks", ())
    assert not kw, kw
    return pytest.param(args, needles, env, id=case_id, marks=marks)


CATALOGUE = [
    # --- flags the parser refuses
    case("trials-fraction", _existing("--trials", "1.5"), ["--trials", "1.5"]),
    case("trials-negative", _existing("--trials", "-3"), ["--trials", "-3"]),
    case("max-rows-zero", _existing("--max-rows", "0"), ["--max-rows", ">= 1"]),
    case("seed-not-whole", _existing("--seed", "4.2"), ["--seed", "4.2"]),
    case("timeout-nan", _existing("--timeout", "nan"), ["--timeout", "nan"]),
    case("max-failures-zero", _existing("--max-consecutive-failures", "0"), ["--max-consecutive"]),
    case("engine-unknown", _existing("--engine", "sklearn"), ["--engine", "sklearn"]),
    case("flag-without-value", ["run", "--space"], ["--space", "expected one argument"]),
    case("best-without-study", ["best"], ["STUDY"]),
    case("predict-without-data", ["predict", STUDY, "--storage", "{S}"], ["--data"]),
    case("dashboard-port-range", ["dashboard", "--storage", "{S}", "--port", "70000"], ["70000"]),
    # --- flags checked against the stored study (resuming it)
    case("sampler-unknown", _existing("--sampler", "grid-of-dreams"), ["--sampler", "grid-of"]),
    case("tuner-on-optuna-study", _existing("--tuner", "random"), ["--tuner"]),
    case("engine-contradicts-study", _existing("--engine", "keras-tuner"), ["--engine", STUDY]),
    case("space-contradicts-study", _existing("--space", "dense"), ["--space", "quick"]),
    case("space-file-named-alike", _existing("--space", "{in}/quick.yaml"), ["--space", STUDY]),
    case("data-contradicts-study", _existing("--data", "{in}/good.csv"), ["--data", "jena-2020"]),
    case("split-contradicts-study", _existing("--split", "blocked"), ["--split", "chronological"]),
    case("split-unknown", _existing("--split", "weekly"), ["weekly"]),
    case("split-zero-days", _existing("--split", "blocked:0"), ["blocked", "0"]),
    # --- cross-validated trials (--folds)
    case("folds-one", _new("--split", "blocked:14", "--folds", "1"), ["--folds", "1"]),
    case("folds-not-whole", _new("--split", "blocked:14", "--folds", "2.5"), ["--folds", "2.5"]),
    case("folds-chronological", _new("--folds", "3"), ["--folds", "blocked", "chronological"]),
    case(
        "folds-keras-tuner",
        _new("--split", "blocked:14", "--folds", "3", "--engine", "keras-tuner"),
        ["--folds", "keras-tuner"],
    ),
    case("folds-contradict-study", _existing("--folds", "3"), ["--folds", STUDY, "without"]),
    # --- study names
    case(
        "name-path-separator",
        ["run", "--study", "../escape", "--storage", "{S}", "--tracking-uri", "{T}"],
        ["../escape", "'/'"],
    ),
    case("name-backslash", ["trials", "a\\b", "--storage", "{S}"], ["study name", "\\\\"]),
    case("name-control-character", ["best", "bad\nname", "--storage", "{S}"], ["'\\n'"]),
    case("name-escape-sequence", ["trials", "x\x1b[31m", "--storage", "{S}"], ["\\x1b"]),
    case("name-129-characters", ["trials", "s" * 129, "--storage", "{S}"], ["129 characters"]),
    case("name-leading-dot", ["best", ".hidden", "--storage", "{S}"], ["starts with '.'"]),
    case("name-empty", ["trials", "", "--storage", "{S}"], ["study name", "empty"]),
    case("name-non-ascii", ["predict", "tëst", "--data", "{in}/good.csv"], ["tëst", "'ë'"]),
    case(
        "name-empty-run",
        ["run", "--study", "", "--storage", "sqlite:///{in}/no/such/folder/x.db"],
        ["study name", "empty"],
    ),
    # --- storage URLs
    case(
        "storage-scheme-with-password",
        _existing()[:4] + [f"http://admin:{SECRET}@db.example/optuna"],
        ["unknown scheme 'http'"],
    ),
    case("storage-in-memory", ["trials", STUDY, "--storage", "sqlite:///:memory:"], ["memory"]),
    case("storage-journal-host", ["trials", STUDY, "--storage", "journal://h/x.log"], ["journal:"]),
    case(
        "storage-postgres-no-database",
        ["run", "--storage", f"postgresql://u:{SECRET}@127.0.0.1:{{port:closed}}/"],
        ["no database name"],
    ),
    case(
        "storage-is-the-mlflow-store",
        ["trials", STUDY, "--storage", "sqlite:///{store}/mlflow.db"],
        ["mlflow.db", "not an Optuna"],
    ),
    case(
        "storage-new-study-in-mlflow-store",
        [
            "run",
            "--study",
            "fresh",
            "--storage",
            "sqlite:///{store}/mlflow.db",
            "--tracking-uri",
            "{T}",
        ],
        ["mlflow.db", "not an Optuna"],
    ),
    case(
        "storage-journal-on-sqlite-file",
        _existing()[:4] + ["journal:///{store}/studies.db"],
        ["studies.db", "journal"],
    ),
    case(
        "storage-text-file", ["best", STUDY, "--storage", "sqlite:///{in}/notes.txt"], ["notes.txt"]
    ),
    case("storage-folder", ["run", "--storage", "sqlite:///{store}"], ["folder"]),
    case(
        "storage-env-var", ["trials", STUDY], ["mongodb"], env={"SEARCH_STORAGE": "mongodb://x/y"}
    ),
    # --- tracking URIs
    case(
        "tracking-scheme-with-password",
        _existing()[:6] + [f"ftp://me:{SECRET}@files.example/"],
        ["unknown scheme 'ftp'"],
    ),
    case(
        "tracking-web-page-not-mlflow",
        _existing()[:6] + ["http://127.0.0.1:{port:html}"],
        ["not an MLflow tracking server"],
    ),
    case(
        "tracking-answers-404",
        _existing()[:6] + ["http://127.0.0.1:{port:404}"],
        ["404"],
    ),
    case(
        "tracking-not-http",
        _existing()[:6] + ["http://127.0.0.1:{port:ssh}"],
        ["127.0.0.1:{port:ssh}"],
    ),
    case(
        "tracking-with-password-closed",
        _existing()[:6] + [f"http://me:{SECRET}@127.0.0.1:{{port:closed}}"],
        ["unreachable", "me:***@"],
    ),
    case("tracking-port-range", _existing()[:6] + ["http://127.0.0.1:99999"], ["99999"]),
    case("tracking-scheme-typo", _existing()[:6] + ["http:/127.0.0.1:5000"], ["http:/127"]),
    case("tracking-in-memory", _existing()[:6] + ["sqlite://"], ["sqlite://"]),
    case(
        "tracking-is-the-optuna-storage",
        _existing()[:6] + ["sqlite:///{store}/studies.db"],
        ["studies.db", "not an MLflow"],
    ),
    case("tracking-text-file", _existing()[:6] + ["sqlite:///{in}/notes.txt"], ["notes.txt"]),
    case(
        "tracking-env-var",
        ["run", "--study", STUDY, "--storage", "{S}"],
        ["gopher"],
        env={"MLFLOW_TRACKING_URI": "gopher://old.example"},
    ),
    case(
        "best-evaluate-bad-tracking",
        [
            "best",
            STUDY,
            "--storage",
            "{S}",
            "--evaluate-test",
            "--tracking-uri",
            "sqlite:///{store}",
        ],
        ["folder"],
    ),
    case(
        "predict-tracking-not-mlflow",
        [
            "predict",
            STUDY,
            "--storage",
            "{S}",
            "--data",
            "{in}/good.csv",
            "--tracking-uri",
            "http://127.0.0.1:{port:html}",
        ],
        ["not an MLflow tracking server"],
    ),
    # --- space files
    case("space-binary-file", _new("--space", "{in}/binary.yaml"), ["binary.yaml", "UTF-8"]),
    case("space-not-a-mapping", _new("--space", "{in}/list.yaml"), ["list.yaml", "mapping"]),
    case("space-empty-file", _new("--space", "{in}/empty.yaml"), ["empty.yaml", "mapping"]),
    case("space-unknown-architecture", _new("--space", "{in}/transformer.yaml"), ["transformer"]),
    case("space-wrong-type", _new("--space", "{in}/string_bound.yaml"), ["params.units.low"]),
    case("space-out-of-range", _new("--space", "{in}/dropout.yaml"), ["dropout", "[0, 1)"]),
    case("space-unknown-key", _new("--space", "{in}/optimiser.yaml"), ["optimiser", "unknown key"]),
    case("space-bad-timestamp", _new("--space", "{in}/timestamp.yaml"), ["timestamp.yaml", "YAML"]),
    case("space-infinite-bound", _new("--space", "{in}/infinite.yaml"), ["learning_rate"]),
    case("space-path-key", _new("--space", "{in}/pathkey.yaml"), ["pathkey.yaml", "path: unknown"]),
    case("space-missing-file", _new("--space", "{in}/nope.yml"), ["nope.yml"]),
    case(
        "quantiles-outside",
        _new("--space", "{in}/quantiles_outside.yaml"),
        ["quantiles", "strictly between 0 and 1"],
    ),
    case(
        "quantiles-above-one",
        _new("--space", "{in}/quantiles_above_one.yaml"),
        ["quantiles", "strictly between 0 and 1"],
    ),
    case("quantiles-unsorted", _new("--space", "{in}/quantiles_unsorted.yaml"), ["sorted"]),
    case("quantiles-repeated", _new("--space", "{in}/quantiles_repeated.yaml"), ["repeated"]),
    case("quantiles-no-median", _new("--space", "{in}/quantiles_no_median.yaml"), ["0.5"]),
    case("target-steps-zero", _new("--space", "{in}/steps_zero.yaml"), ["target_steps"]),
    case("spaces-show-malformed", ["spaces", "{in}/tabs.yaml"], ["tabs.yaml", "line 2"]),
    # --- data sources (checked before Keras)
    case("data-folder", _existing("--data", "{in}/folder"), ["folder", "not a file"]),
    case("data-empty-string", _new("--data", ""), ["data source"]),
    case(
        "predict-data-missing",
        ["predict", STUDY, "--storage", "{S}", "--data", "{in}/no.csv"],
        ["no.csv"],
    ),
    case(
        "target-contradicts-study",
        _existing("--target", "p (mbar)"),
        ["--target", "T (degC)"],
    ),
    case("predict-bad-name-first", ["predict", "a b", "--data", "{in}/good.csv"], ["'a b'"]),
]

# Found while loading data, which comes before Keras is imported and before --fresh deletes
# anything (the stored study is kept when the new data is refused).
LOADING = [
    case(
        "data-all-nan-target",
        _new("--data", "{in}/nan_target.csv"),
        ["nan_target.csv", "T (degC)", "no valid value"],
    ),
    case("data-binary-csv", _new("--data", "{in}/binary.csv"), ["binary.csv"]),
    case(
        "data-shorter-than-window",
        _new("--data", "{in}/short.csv"),
        ["lookback", "too short"],
    ),
    case(
        "data-missing-column",
        _new("--data", "{in}/good.csv", "--target", "T (degF)"),
        ["T (degF)", "did you mean 'T (degC)'"],
    ),
    case(
        "folds-more-than-blocks",
        _new("--split", "blocked:14", "--folds", "5", "--max-rows", "9000"),
        ["--folds 5", "4", "non-test blocks"],
    ),
    case(
        "fresh-folds-more-than-blocks",
        _existing("--fresh", "--split", "blocked:14", "--folds", "5", "--max-rows", "9000"),
        ["--folds 5", "4", "non-test blocks"],
    ),
    case(
        "fresh-data-missing-column",
        _existing("--fresh", "--data", "{in}/good.csv", "--target", "T (degF)"),
        ["T (degF)", "did you mean 'T (degC)'"],
    ),
]
# ... and these also in a `python -m search` subprocess.
LOADING_IN_A_PROCESS = {"fresh-data-missing-column"}

# Catalogue cases also run as `python -m search` subprocesses: the in-process runs go through
# the same main(); these check the process itself (exit status, stderr, no traceback).
IN_A_PROCESS = {
    "trials-negative",
    "name-control-character",
    "storage-is-the-mlflow-store",
    "storage-journal-on-sqlite-file",
    "tracking-web-page-not-mlflow",
    "space-binary-file",
    "split-contradicts-study",
}


def test_the_catalogue_is_large_and_its_ids_distinct() -> None:
    ids = [param.id for param in CATALOGUE + LOADING]
    assert len(CATALOGUE) >= 30 and len(set(ids)) == len(ids)
    assert IN_A_PROCESS <= set(ids)
    assert LOADING_IN_A_PROCESS <= {param.id for param in LOADING}


@pytest.fixture
def keras_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, no case may get as far as choosing a Keras backend: bad input is refused
    before that (a case that gets there fails here instead of training in the test process)."""
    import search.cli

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bad input got past validation: Keras was about to be imported")

    monkeypatch.setattr(search.cli, "_prepare_runtime", refuse)


def run_main(argv: list[str], capfd: pytest.CaptureFixture[str]) -> Result:
    """`search ARGV` through the CLI's own entry point (`search.cli:main`), in this process."""
    from search.cli import main

    started = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except Exception:  # what a user would see as a traceback
        out, err = capfd.readouterr()
        return Result(-1, out, err + traceback.format_exc(), time.perf_counter() - started)
    out, err = capfd.readouterr()
    return Result(code, out, err, time.perf_counter() - started)


def _check_case(
    store: Store, cwd: Path, argv: list[str], needles: list[str], result: Result
) -> None:
    try:
        assert_user_error(result, argv[0], [store.fill(n) for n in needles])
        assert sorted(p.name for p in cwd.iterdir()) == [], "created files in the cwd"
    finally:
        store.check_unchanged()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "needles", "env"), CATALOGUE)
def test_bad_input(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    keras_refused: None,
    args: list[str],
    needles: list[str],
    env: dict[str, str] | None,
) -> None:
    argv = [store.fill(arg) for arg in args]
    for name in ("MLFLOW_TRACKING_URI", "SEARCH_STORAGE", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)  # as tests.cli_helpers.cli_env does
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    _check_case(store, tmp_path, argv, needles, run_main(argv, capfd))


def _in_a_process(store: Store, cwd: Path, args: list[str], needles: list[str], env) -> None:  # noqa: ANN001
    argv = [store.fill(arg) for arg in args]
    _check_case(store, cwd, argv, needles, run_cli(*argv, cwd=cwd, env=env, timeout=300))


@pytest.mark.parametrize(("args", "needles", "env"), [p for p in CATALOGUE if p.id in IN_A_PROCESS])
def test_bad_input_in_a_process(store: Store, tmp_path: Path, args, needles, env) -> None:  # noqa: ANN001
    _in_a_process(store, tmp_path, args, needles, env)


@pytest.mark.parametrize(("args", "needles", "env"), LOADING)
def test_bad_data_through_the_cli(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    needles: list[str],
    env: dict[str, str] | None,
) -> None:
    """In this process, with the trial module (which imports Keras) made unimportable."""
    monkeypatch.setitem(sys.modules, "search.training.trial", None)
    argv = [store.fill(arg) for arg in args]
    _check_case(store, tmp_path, argv, needles, run_cli_here(*argv, cwd=tmp_path, env=env))


@pytest.mark.parametrize(
    ("args", "needles", "env"), [p for p in LOADING if p.id in LOADING_IN_A_PROCESS]
)
def test_bad_data_in_a_process(store: Store, tmp_path: Path, args, needles, env) -> None:  # noqa: ANN001
    _in_a_process(store, tmp_path, args, needles, env)


# ------------------------------------------------------------ data files, loaded in-process


def _gz(payload: bytes) -> bytes:
    return gzip.compress(payload)


def _zip(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    return buffer.getvalue()


def _rows(n: int, target: str = "{i}", start: str = "2020-01-01 00:10:00") -> bytes:
    first = datetime.fromisoformat(start)
    lines = ["date,T (degC),p (mbar)"]
    for i in range(n):
        stamp = (first + i * timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp},{target.format(i=i)},{990 + i % 7}")
    return ("\n".join(lines) + "\n").encode()


GOOD = _rows(40)

LOADER_CASES = [
    pytest.param("f.csv", b"", {}, ["the file is empty"], id="empty"),
    pytest.param("f.csv", b"date,T (degC)\n", {}, ["0 data row"], id="header-only"),
    pytest.param("f.csv", bytes(range(256)) * 4, {}, ["f.csv"], id="binary"),
    pytest.param("f.csv", b"\x00" * 64, {}, ["f.csv"], id="nul-bytes"),
    pytest.param("f.csv", _rows(20) + b"2020-01-0", {}, ["'2020-01-0'"], id="truncated"),
    pytest.param("f.csv.gz", _gz(GOOD)[:60], {}, ["cannot be read"], id="truncated-gzip"),
    pytest.param("f.csv.xz", b"\xfd7zXZ\x00 no", {}, ["cannot be read"], id="broken-xz"),
    pytest.param("f.csv", b"BZh9 not bzip2\n1,2\n", {}, ["f.csv"], id="bzip2-magic-text"),
    pytest.param("f.csv.zip", _zip(), {}, ["cannot be read"], id="empty-zip"),
    pytest.param(
        "f.csv.zip", _zip(("a.csv", GOOD), ("b.csv", GOOD)), {}, ["Multiple"], id="zip-of-two"
    ),
    pytest.param("f.csv.tar", b"not a tar", {}, ["cannot be read"], id="broken-tar"),
    pytest.param("f.csv", _rows(30, ""), {}, ["'T (degC)'", "no valid value"], id="all-nan-target"),
    pytest.param(
        "f.csv", _rows(30, "-9999"), {}, ["'T (degC)'", "no valid value"], id="all-sentinel"
    ),
    pytest.param(
        "f.csv", GOOD, {"target": "T (degF)"}, ["T (degF)", "did you mean"], id="missing-target"
    ),
    pytest.param(
        "f.csv", GOOD, {"features": ["p (mbar)", "rh (%)"]}, ["'rh (%)'"], id="missing-feature"
    ),
    pytest.param(
        "f.csv", GOOD, {"features": ["date"]}, ["'date' is the time column"], id="time-as-feature"
    ),
    pytest.param("f.csv", GOOD, {"time_format": "%d/%m/%Y"}, ["'%d/%m/%Y'"], id="time-format"),
    pytest.param(
        "f.csv",
        b"date,T (degC)\n1700-01-01,1\n2200-01-01,2\n2200-01-02,3\n",
        {},
        ["292 years"],
        id="span-overflows",
    ),
    pytest.param(
        "f.csv",
        GOOD.replace(b"2020-01-01 00:20:00", b"2020-01-01 05:20:00"),
        {},
        ["back in time"],
        id="back-in-time",
    ),
]


@pytest.mark.parametrize(("name", "payload", "kwargs", "needles"), LOADER_CASES)
def test_bad_data_file_in_process(
    tmp_path: Path, name: str, payload: bytes, kwargs: dict, needles: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(DataError) as caught:
        load_dataset(str(path), **kwargs)
    message = str(caught.value)
    assert_one_line(message)
    for needle in [name, *needles]:
        assert needle in message, (needle, message)


def test_series_shorter_than_the_window_in_process(tmp_path: Path) -> None:
    """A study's data (its record and space) that holds no window of the space's longest
    lookback: load_study_data's series, windowed as a study checks it before any trial."""
    from search.data.geometry import WindowSpec
    from search.data.splits import window_starts

    path = write_jena_csv(tmp_path / "short.csv", 60)
    space = load_space("quick")
    record = StudyRecord(space="quick", data=str(path))
    _, prepared = load_study_data(record, space)
    hours, rate = space.widest_windows()[-1]
    spec = WindowSpec(hours, rate, space.fixed.horizon_hours, 1, prepared.steps_per_hour)
    with pytest.raises(DataError) as caught:
        window_starts(prepared, spec, "val")
    assert_one_line(str(caught.value))
    assert "too short" in str(caught.value)


def test_split_too_short_in_process(tmp_path: Path) -> None:
    path = write_jena_csv(tmp_path / "tiny.csv", 3)
    with pytest.raises(DataError) as caught:
        load_study_data(StudyRecord(data=str(path)), load_space("quick"))
    assert_one_line(str(caught.value))
    assert "too short to split" in str(caught.value)


# ---------------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)


def _load_or_one_line_error(path: Path, payload: bytes, **kwargs: object) -> None:
    path.write_bytes(payload)
    try:
        load_dataset(str(path), **kwargs)  # type: ignore[arg-type]
    except SearchError as error:
        assert_one_line(str(error))


_STAMP_FORMATS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %I:%M %p",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%dT%H:%M:%S+02:00",
    "%Y-%m-%d",
]
_NUMBERS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.3f}"),
    st.integers(-100, 100).map(str),
)
_ODD_CELLS = st.sampled_from(["", "-9999", "nan", "inf", "-inf", "NA", "x", "1e400", '"', "True"])


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """Mostly CSV: a time column on a grid and numeric columns, then mutated (rows dropped,
    duplicated, swapped, garbled, cut short; columns blanked; the file truncated)."""
    n_rows = draw(st.integers(0, 50))
    start = draw(st.datetimes(min_value=datetime(1680, 1, 1), max_value=datetime(2260, 1, 1)))
    step = draw(
        st.sampled_from(
            [timedelta(minutes=10), timedelta(hours=1), timedelta(seconds=7), timedelta(days=400)]
        )
    )
    fmt = draw(st.sampled_from(_STAMP_FORMATS))
    extra = draw(st.lists(st.sampled_from(["p (mbar)", "x", "T (degC)", ""]), max_size=3))
    header = ["date", "T (degC)", *extra]
    rows: list[list[str]] = []
    for i in range(n_rows):
        try:
            stamp = (start + i * step).strftime(fmt)
        except OverflowError:
            break
        cells = [draw(_NUMBERS) if draw(st.integers(0, 7)) else draw(_ODD_CELLS) for _ in extra]
        rows.append([stamp, draw(_NUMBERS), *cells])
    for _ in range(draw(st.integers(0, 3))):
        if not rows:
            break
        k = draw(st.integers(0, len(rows) - 1))
        change = draw(st.sampled_from(["drop", "dup", "swap", "garble", "short", "long", "blank"]))
        if change == "drop":
            rows.pop(k)
        elif change == "dup":
            rows.insert(k, list(rows[k]))
        elif change == "swap" and k > 0:
            rows[k], rows[k - 1] = rows[k - 1], rows[k]
        elif change == "garble":
            rows[k][draw(st.integers(0, len(rows[k]) - 1))] = draw(st.text(max_size=5))
        elif change == "short":
            rows[k] = rows[k][:-1]
        elif change == "long":
            rows[k] = [*rows[k], "1"]
        elif change == "blank":
            j = draw(st.integers(1, len(header) - 1))
            value = draw(_ODD_CELLS)
            for row in rows:
                if j < len(row):
                    row[j] = value
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join([",".join(header)] + [",".join(row) for row in rows]) + newline
    if draw(st.integers(0, 5)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]))
    return text.encode(encoding, errors="replace")


_LOAD_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "target": st.sampled_from(["x", "T (degC)", "p (mbar)", "date", "nope"]),
        "features": st.lists(
            st.sampled_from(["x", "T (degC)", "p (mbar)", "date", ""]),
            min_size=1,
            max_size=3,
            unique=True,
        ),
        "time_format": st.sampled_from(["%Y", "%Q", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]),
        "max_gap_steps": st.integers(0, 5),
    },
)


@FUZZ
@given(payload=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".csv.gz", ".csv.zip"]))
def test_fuzz_csv_loader_with_random_bytes(fuzz_dir: Path, payload: bytes, suffix: str) -> None:
    _load_or_one_line_error(fuzz_dir / f"bytes{suffix}", payload)


@settings(FUZZ, max_examples=100)  # about 60 ms an example: pandas reads every one
@given(payload=csv_files(), options=_LOAD_OPTIONS)
def test_fuzz_csv_loader_with_csv_like_text(fuzz_dir: Path, payload: bytes, options: dict) -> None:
    _load_or_one_line_error(fuzz_dir / "text.csv", payload, **options)


def _space_or_one_line_error(text: str) -> None:
    try:
        space_from_text(text)
    except SearchError as error:
        assert isinstance(error, SpaceError), type(error)
        assert_one_line(str(error))


_YAML_PIECES = [
    *":-[]{}&*!|>'\"%@`#,? \t\nabc019.e",
    "!!int ",
    "!!float ",
    "!!timestamp ",
    "!!binary ",
    "&a ",
    "*a",
    "---",
    "...",
    "type: ",
    "low: ",
    "\u2028",
    "\x85",
    "\n  ",
    "name: x\n",
    "params:\n  ",
    "2020-13-45",
    ".inf",
]


@FUZZ
@given(text=st.lists(st.sampled_from(_YAML_PIECES), max_size=40).map("".join))
def test_fuzz_space_loader_with_yaml_like_text(text: str) -> None:
    _space_or_one_line_error(text)


_ARCHITECTURES = list(models.ARCHITECTURES)
_PARAM_NAMES = [
    *("units", "layers", "dropout", "recurrent_dropout", "head_dropout", "filters"),
    *("kernel_size", "pool_size", "conv_layers", "reverse", "lookback_hours", "sampling_rate"),
    *("learning_rate", "batch_size", "target_scaling", "calendar_features", "nope"),
]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 300),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["standard", "residual", "none", "x", "", "1e-3", "dense"]),
)
_BOUNDS = st.one_of(
    st.integers(-5, 400),
    st.floats(-1, 500, allow_nan=False),
    st.sampled_from([0, 1, 6, 24, 120, 1e-3, float("nan"), float("inf"), "8", None, True]),
)
_DISTRIBUTIONS = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["int", "float"]), "low": _BOUNDS, "high": _BOUNDS},
        optional={"step": _BOUNDS, "log": st.one_of(st.booleans(), _SCALARS)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("categorical"),
            "choices": st.lists(_SCALARS | st.lists(_SCALARS), max_size=4),
        }
    ),
    st.fixed_dictionaries({"type": _SCALARS}, optional={"low": _BOUNDS}),
)
_VALUES = st.one_of(
    _SCALARS,
    _BOUNDS,
    _DISTRIBUTIONS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(_PARAM_NAMES), _SCALARS | _DISTRIBUTIONS, max_size=4),
)
_SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "spaces").glob("*.yaml"))]


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def space_documents(draw: st.DrawFn) -> dict:
    """A shipped space with one to three places set, deleted or added: every level of the
    schema (names, architectures, distributions and their bounds, fixed settings, the book)."""
    import copy

    document = copy.deepcopy(draw(st.sampled_from(_SHIPPED)))
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p in _paths(document) if p]
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent = document
        for key in place[:-1]:
            parent = parent[key]
        change = draw(st.sampled_from(["set", "delete", "add"]))
        if change == "delete":
            del parent[place[-1]]
        elif change == "set":
            parent[place[-1]] = draw(_VALUES)
        elif isinstance(parent, dict):
            key = draw(st.sampled_from([*_PARAM_NAMES, "type", "step", "choices", "architecture"]))
            parent[key] = draw(_VALUES)
    if draw(st.integers(0, 9)) == 0:
        document["architecture"] = draw(st.sampled_from([*_ARCHITECTURES, "transformer"]))
    return document


@FUZZ
@given(document=space_documents(), flow=st.booleans())
def test_fuzz_space_loader_with_schema_shaped_documents(document: dict, flow: bool) -> None:
    _space_or_one_line_error(yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True))


def test_shipped_spaces_still_load() -> None:
    """The fuzzed documents start from these; each loads as it is."""
    for path in sorted((REPO / "spaces").glob("*.yaml")):
        assert load_space(str(path)).name == path.stem


def test_space_file_loader_refuses_bytes_that_are_not_text(tmp_path: Path) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(np.arange(256, dtype=np.uint8).tobytes())
    with pytest.raises(SpaceError) as caught:
        load_space(str(path))
    assert_one_line(str(caught.value))
    assert "bytes.yaml" in str(caught.value)


def test_search_errors_are_one_line_by_construction() -> None:
    error = SearchError("first\nsecond\r\nthird\u2028fourth\x85fifth")
    assert str(error) == "first second third fourth fifth"
    assert str(SpaceError("plain  text")) == "plain  text"
