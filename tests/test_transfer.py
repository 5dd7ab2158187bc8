"""`search studies`, `search delete`, `search export` and `search import`: studies moved between
SQLite, journal-file and PostgreSQL storages with identical trial data, merges that add only the
missing trials, conflicts refused with nothing written, pickled sampler state never unpickled,
and MLflow runs copied through the tracking interface.

Studies are made directly with Optuna (no training), except in the slow end-to-end test.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import TrialState, create_trial

from search.cli import main
from search.engines.transfer import ORIGIN_ATTR, UID_ATTR
from search.record import StudyRecord
from search.storage import open_storage, resolve_storage_url
from tests.cli_helpers import migrated_store, run_cli_here

optuna.logging.set_verbosity(optuna.logging.WARNING)

ARCH = CategoricalDistribution(["lstm", "gru", "dense"])
UNITS = IntDistribution(8, 128, log=True)
LAYERS = IntDistribution(1, 3)
LR = FloatDistribution(1e-4, 1e-1, log=True)
DROPOUT = FloatDistribution(0.0, 0.5, step=0.1)
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class _Touch:
    """Unpickling this creates a file: proof that nothing from an imported file is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _storage(url: str) -> optuna.storages.BaseStorage:
    return open_storage(resolve_storage_url(url))


def _record(**changes: Any) -> dict[str, Any]:
    record = StudyRecord(
        space="quick",
        data="jena-2020",
        target="T (degC)",
        features=["p (mbar)", "T (degC)"],
        max_rows=9000,
        engine="optuna",
        mlflow_tracking_uri="http://tracking.example:5000",
        mlflow_experiment_id="7",
        mlflow_parent_run_id="0123456789abcdef0123456789abcdef",
    )
    attrs = record.to_attrs()
    attrs.update(changes)
    return attrs


def _trial(number: int, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    """A varied trial: a conditional branch per architecture, intermediate values, attributes."""
    arch = ARCH.choices[number % 3]
    params: dict[str, Any] = {"architecture": arch, "lr": 10 ** (-1 - number % 3 - 0.25)}
    dists: dict[str, Any] = {"architecture": ARCH, "lr": LR}
    if arch == "dense":
        params["dense_layers"], dists["dense_layers"] = 1 + number % 3, LAYERS
    else:
        params[f"{arch}_units"], dists[f"{arch}_units"] = 8 * (1 + number % 4), UNITS
        params[f"{arch}_dropout"], dists[f"{arch}_dropout"] = 0.1 * (number % 5), DROPOUT
    intermediate = {step: 3.0 - 0.1 * step - 0.01 * number for step in range(1 + number % 4)}
    if number == 1:
        intermediate[7] = math.nan
    values = None
    if state == TrialState.COMPLETE:
        values = [2.5 - 0.05 * number]
    user_attrs: dict[str, Any] = {
        "mlflow_run_id": f"run{number:02d}",
        "skill": 0.1 * number,
        "references": {"naive": 2.9, "linear": [1.0, 2.0]},
        "book_config": number == 0,
    }
    if state == TrialState.FAIL:
        user_attrs["fail_reason"] = "ValueError: the window does not fit"
        params, dists = {}, {}
    return create_trial(
        state=state,
        values=values,
        params=params,
        distributions=dists,
        intermediate_values=intermediate,
        user_attrs=user_attrs,
        system_attrs={"fixed_params": {"seed": number}, "nsga2:generation": 0},
    )


def make_study(url: str, name: str = "demo", n: int = 6, **record: Any) -> optuna.Study:
    """A study as `search run` leaves one: its record, finished trials of every state (with
    CMA-ES-like pickled sampler state), one RUNNING and one WAITING trial."""
    study = optuna.create_study(storage=_storage(url), study_name=name, direction="minimize")
    for key, value in _record(**record).items():
        study.set_user_attr(key, value)
    for number in range(n):
        state = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][
            number % 4
        ]
        trial = _trial(number, state)
        if number == 1:
            trial.system_attrs["cma:optimizer:0"] = pickle.dumps({"mean": [0.5]}).hex()
            trial.system_attrs["cma:generation"] = 0
        study.add_trial(trial)
    running = create_trial(state=TrialState.RUNNING, params={"lr": 0.01}, distributions={"lr": LR})
    study.add_trial(running)
    study.enqueue_trial({"architecture": "gru"})
    return study


def trial_data(url: str, name: str = "demo") -> list[dict[str, Any]]:
    """The finished trials' data, as compared between copies (in trial order)."""
    storage = _storage(url)
    study_id = storage.get_study_id_from_name(name)
    rows = []
    for t in storage.get_all_trials(study_id):
        if t.state.name not in FINISHED:
            continue
        rows.append(
            {
                "state": t.state.name,
                "values": t.values,
                "params": t.params,
                "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                "intermediate": json.dumps(sorted(t.intermediate_values.items())),
                "user_attrs": {k: v for k, v in t.user_attrs.items() if k != ORIGIN_ATTR},
                "system_attrs": {
                    k: v for k, v in t.system_attrs.items() if not k.startswith("cma:")
                },
                "start": t.datetime_start,
                "complete": t.datetime_complete,
            }
        )
    return rows


def study_attrs(url: str, name: str = "demo") -> dict[str, Any]:
    storage = _storage(url)
    return storage.get_study_user_attrs(storage.get_study_id_from_name(name))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`search ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def pg_url(postgres_server) -> str:
    return postgres_server.create_database(f"transfer_{uuid.uuid4().hex[:8]}")


# --------------------------------------------------------------------------- round trips


def test_round_trip_sqlite_journal_postgresql_sqlite(tmp_path: Path, pg_url: str, capsys) -> None:
    source = f"sqlite:///{tmp_path}/a.db"
    make_study(source)
    original = trial_data(source)
    assert len(original) == 6
    hops = [source, f"journal:///{tmp_path}/b.log", pg_url, f"sqlite:///{tmp_path}/d.db"]
    for step, (here, there) in enumerate(zip(hops, hops[1:], strict=False)):
        file = tmp_path / f"hop{step}.json"
        code, out, err = cli(capsys, "export", "demo", "--storage", here, "--to", str(file))
        assert code == 0, err
        assert "6 trials (4 COMPLETE, 1 FAIL, 1 PRUNED)" in out, out
        code, out, err = cli(capsys, "import", str(file), "--storage", there)
        assert code == 0, err
        assert "new study 'demo'" in out and "6 trials added" in out, out
        assert trial_data(there) == original, there
        attrs = study_attrs(there)
        assert attrs.pop(UID_ATTR)
        assert attrs == _record(), there
    # every copy remembers where each trial came from: the first study's trial numbers
    final = _storage(hops[-1])
    trials = final.get_all_trials(final.get_study_id_from_name("demo"))
    first_uid = json.loads((tmp_path / "hop0.json").read_text())["study"]["uid"]
    assert [t.user_attrs[ORIGIN_ATTR] for t in trials] == [f"{first_uid}#{n}" for n in range(6)]


def test_export_file_format(tmp_path: Path, capsys) -> None:
    url = f"journal:///{tmp_path}/a.log"
    make_study(url)
    file = tmp_path / "demo.json"
    code, out, err = cli(capsys, "export", "demo", "--storage", url, "--to", str(file))
    assert code == 0, err
    assert "6 trials (4 COMPLETE, 1 FAIL, 1 PRUNED)" in out, out
    assert "2 RUNNING/WAITING trials left out" in out
    assert "2 attributes left out" in out  # cma:optimizer:0 and cma:generation
    assert "parent run 0123456789abcdef0123456789abcdef" in out
    payload = json.loads(file.read_text())
    assert payload["format"] == "search-study/1"
    assert payload["study"]["name"] == "demo"
    assert payload["study"]["directions"] == ["MINIMIZE"]
    assert (
        payload["study"]["user_attrs"]["mlflow_parent_run_id"] == _record()["mlflow_parent_run_id"]
    )
    assert [t["number"] for t in payload["trials"]] == list(range(6))
    first = payload["trials"][0]
    assert first["distributions"]["architecture"]["name"] == "CategoricalDistribution"
    assert first["datetime_start"].endswith("+00:00")
    text = file.read_text()
    assert "cma:" not in text
    assert pickle.dumps({"mean": [0.5]}).hex() not in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo.json")]  # no temp


# --------------------------------------------------------------------------- merges


def _add_trial(url: str, number: int) -> None:
    study = optuna.load_study(study_name="demo", storage=_storage(url))
    study.add_trial(_trial(number))


def test_merge_adds_only_missing_trials_both_ways(tmp_path: Path, capsys) -> None:
    a, b = f"sqlite:///{tmp_path}/a.db", f"journal:///{tmp_path}/b.log"
    make_study(a)
    f1, f2, f3 = (tmp_path / f"f{i}.json" for i in (1, 2, 3))
    assert cli(capsys, "export", "demo", "--storage", a, "--to", str(f1))[0] == 0
    assert cli(capsys, "import", str(f1), "--storage", b)[0] == 0
    # the copy goes on (a GPU node) and so does the original
    _add_trial(b, 40)
    _add_trial(b, 41)
    _add_trial(a, 50)
    assert cli(capsys, "export", "demo", "--storage", b, "--to", str(f2))[0] == 0
    code, out, err = cli(capsys, "import", str(f2), "--storage", a)
    assert code == 0, err
    assert "2 trials added, 6 already there" in out, out
    assert len(trial_data(a)) == 9
    # importing the same file again changes nothing
    code, out, _ = cli(capsys, "import", str(f2), "--storage", a)
    assert code == 0 and "nothing to add, all 8 trials already there" in out, out
    assert cli(capsys, "import", str(f1), "--storage", b)[0] == 0
    assert len(trial_data(b)) == 8
    # and back: the copy gets the original's new trial, and only that one
    assert cli(capsys, "export", "demo", "--storage", a, "--to", str(f3))[0] == 0
    code, out, err = cli(capsys, "import", str(f3), "--storage", b)
    assert code == 0, err
    assert "1 trial added, 8 already there" in out, out

    def key(row: dict[str, Any]) -> str:
        return json.dumps(row, sort_keys=True, default=str)

    assert sorted(map(key, trial_data(a))) == sorted(map(key, trial_data(b)))
    # the copy keeps its own identity: its trial 41 is still known as the copy's
    b_uid = study_attrs(b)[UID_ATTR]
    a_store = _storage(a)
    origins = {
        t.user_attrs.get(ORIGIN_ATTR)
        for t in a_store.get_all_trials(a_store.get_study_id_from_name("demo"))
    }
    assert {f"{b_uid}#6", f"{b_uid}#7"} <= origins


def test_rename_on_import_and_conflicts_are_refused_with_nothing_written(
    tmp_path: Path, capsys
) -> None:
    a, b = f"sqlite:///{tmp_path}/a.db", f"journal:///{tmp_path}/b.log"
    make_study(a)
    file = tmp_path / "demo.json"
    assert cli(capsys, "export", "demo", "--storage", a, "--to", str(file))[0] == 0
    code, out, err = cli(capsys, "import", str(file), "--storage", b, "--study", "copy-1")
    assert code == 0 and "new study 'copy-1'" in out, err
    payload = json.loads(file.read_text())

    # a trial changed in the file, plus a new one: refused, and the new one is not added
    tampered = json.loads(json.dumps(payload))
    tampered["trials"][0]["values"] = [0.001]
    extra = json.loads(json.dumps(tampered["trials"][1]))
    extra["origin"] = "someone-else#1"
    tampered["trials"].append(extra)
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    before = trial_data(a)
    code, out, err = cli(capsys, "import", str(bad), "--storage", a)
    assert_one_line_error(code, err, "conflict", "trial 0", "values", "nothing imported")
    assert out == ""
    assert trial_data(a) == before

    # another space under the same study name: refused
    other = json.loads(json.dumps(payload))
    other["study"]["user_attrs"]["space"] = "lstm"
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(other))
    code, _, err = cli(capsys, "import", str(other_file), "--storage", b, "--study", "copy-1")
    assert_one_line_error(code, err, "space", "--study NEW")
    assert len(trial_data(b, "copy-1")) == 6

    # a maximizing study of the same name: refused
    other = json.loads(json.dumps(payload))
    other["study"]["directions"] = ["MAXIMIZE"]
    other_file.write_text(json.dumps(other))
    code, _, err = cli(capsys, "import", str(other_file), "--storage", a)
    assert_one_line_error(code, err, "maximize")


def test_pickled_sampler_state_is_dropped_and_never_unpickled(tmp_path: Path, capsys) -> None:
    a, b = f"journal:///{tmp_path}/a.log", f"journal:///{tmp_path}/b.log"
    make_study(a)
    file = tmp_path / "demo.json"
    assert cli(capsys, "export", "demo", "--storage", a, "--to", str(file))[0] == 0
    payload = json.loads(file.read_text())
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_Touch(marker)).hex()
    payload["trials"][0]["system_attrs"].update({"cma:optimizer:0": evil, "cma:generation": 3})
    payload["trials"][1]["system_attrs"]["sampler_blob"] = evil
    payload["study"]["system_attrs"]["cma:restart_1:optimizer:0"] = evil
    file.write_text(json.dumps(payload))
    code, out, err = cli(capsys, "import", str(file), "--storage", b)
    assert code == 0, err
    assert "4 attributes left out" in out, out
    assert not marker.exists()
    storage = _storage(b)
    study_id = storage.get_study_id_from_name("demo")
    for trial in storage.get_all_trials(study_id):
        assert not [k for k in trial.system_attrs if k.startswith("cma:")]
        assert "sampler_blob" not in trial.system_attrs
        assert trial.system_attrs.get("nsga2:generation") == 0  # plain JSON state is kept
    assert storage.get_study_system_attrs(study_id) == {}
    # a study that really ran CMA-ES exports and imports without its pickles
    c = f"journal:///{tmp_path}/c.log"
    cma = optuna.create_study(
        storage=_storage(c), study_name="cma", sampler=optuna.samplers.CmaEsSampler(seed=1)
    )
    cma.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_float("y", -1, 1), 8)
    assert any(k.startswith("cma:optimizer") for t in cma.trials for k in t.system_attrs)
    file = tmp_path / "cma.json"
    code, out, err = cli(capsys, "export", "cma", "--storage", c, "--to", str(file))
    assert code == 0 and "attributes left out" in out, err
    assert cli(capsys, "import", str(file), "--storage", b)[0] == 0
    copy = optuna.load_study(study_name="cma", storage=_storage(b))
    assert [t.params for t in copy.trials] == [t.params for t in cma.trials]
    assert not [k for t in copy.trials for k in t.system_attrs if k.startswith("cma:")]
    # the copy can go on sampling with CMA-ES (it starts its own optimizer)
    resumed = optuna.load_study(
        study_name="cma", storage=_storage(b), sampler=optuna.samplers.CmaEsSampler(seed=2)
    )
    resumed.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_float("y", -1, 1), 2)
    assert len(resumed.trials) == 10


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("not json {", ["not a study export", "not JSON"]),
        ("[1, 2]", ["not a study export"]),
        ('{"format": "mlflow-export/3"}', ["format", "search-study/1"]),
        ('{"format": "search-study/1"}', ["damaged"]),
        (
            '{"format": "search-study/1", "study": {"name": "x", "directions": ["MINIMIZE"]},'
            ' "trials": [{"origin": "o#0", "state": "COMPLETE", "values": [1.0],'
            ' "params": {"x": 5.0}, "distributions": {"x": {"name": "FloatDistribution",'
            ' "attributes": {"low": 0.0, "high": 1.0, "log": false, "step": null}}},'
            ' "datetime_start": "2024-01-01T00:00:00+00:00",'
            ' "datetime_complete": "2024-01-01T00:00:01+00:00"}]}',
            ["trial 0 is malformed", "isn't contained"],
        ),
        (
            '{"format": "search-study/1", "study": {"name": "x", "directions": ["MINIMIZE"]},'
            ' "trials": [{"origin": "o#0", "state": "DONE"}]}',
            ["trial 0 is malformed", "unknown state 'DONE'"],
        ),
        (
            '{"format": "search-study/1", "study": {"name": "bad name!", "directions": '
            '["MINIMIZE"]}, "trials": []}',
            ["invalid study name"],
        ),
    ],
)
def test_a_malformed_file_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys, content: str, needles: list[str]
) -> None:
    file = tmp_path / "in.json"
    file.write_text(content)
    code, out, err = cli(capsys, "import", str(file), "--storage", f"sqlite:///{tmp_path}/t.db")
    assert_one_line_error(code, err, "search import: error:", *needles)
    assert out == ""
    assert not (tmp_path / "t.db").exists()


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    url = f"journal:///{tmp_path}/a.log"
    missing = f"sqlite:///{tmp_path}/none.db"
    for args, needles in [
        (["studies", "--storage", missing], ["does not exist"]),
        (["export", "demo", "--storage", missing, "--to", str(tmp_path / "x.json")], ["exist"]),
        (["export", "demo", "--storage", url, "--to", str(tmp_path / "no/x.json")], ["folder"]),
        (["import", str(tmp_path / "nope.json")], ["does not exist"]),
        (["delete", "demo", "--storage", missing, "--yes"], ["does not exist"]),
    ]:
        code, _, err = cli(capsys, *args)
        assert_one_line_error(code, err, *needles)
    make_study(url)
    code, _, err = cli(capsys, "export", "nope", "--storage", url, "--to", str(tmp_path / "x"))
    assert_one_line_error(code, err, "no study named 'nope'", "demo")
    assert not (tmp_path / "x").exists()
    code, _, err = cli(capsys, "delete", "nope", "--storage", url, "--yes")
    assert_one_line_error(code, err, "no study named 'nope'")
    # through the real command line too: argparse and main() format it
    result = run_cli_here("import", "missing.json", "--storage", url, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("search import: error:")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------- studies, delete


def test_studies_lists_every_study(tmp_path: Path, pg_url: str, capsys) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    _storage(url)  # an empty storage
    code, out, err = cli(capsys, "studies", "--storage", url)
    assert code == 0 and out.startswith("no studies in sqlite:///"), err
    make_study(url, "demo")
    make_study(url, "other", n=2)
    optuna.create_study(storage=_storage(url), study_name="bare")
    code, out, err = cli(capsys, "studies", "--storage", url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["study", "trials", "complete", "best", "last", "activity", "engine"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["bare"] == ["bare", "0", "0", "-", "-", "-"]
    assert rows["demo"][1:4] == ["8", "4", f"{2.5 - 0.05 * 5:.4f}"]
    assert rows["demo"][-1] == "optuna"
    assert rows["other"][1:4] == ["4", "2", f"{2.5 - 0.05:.4f}"]
    make_study(pg_url, "on-postgres", n=1)
    code, out, err = cli(capsys, "studies", "--storage", pg_url)
    assert code == 0 and "on-postgres" in out and "***" not in out, err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_delete_asks_first(tmp_path: Path, capsys, monkeypatch) -> None:
    url = f"journal:///{tmp_path}/a.log"
    make_study(url)
    make_study(url, "keep", n=1)
    code, _, err = cli(capsys, "delete", "demo", "--storage", url)  # stdin is not a terminal
    assert_one_line_error(code, err, "--yes")
    for answer in ("n\n", "\n", "maybe\n", ""):
        monkeypatch.setattr("sys.stdin", _Terminal(answer))
        code, out, _ = cli(capsys, "delete", "demo", "--storage", url)
        assert code == 1 and "not deleted" in out
        assert f"delete study demo (8 trials) from journal://{tmp_path}/a.log? [y/N]" in out
    assert len(trial_data(url)) == 6
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    code, out, err = cli(capsys, "delete", "demo", "--storage", url)
    assert code == 0, err
    assert "deleted study 'demo' (8 trials)" in out and "MLflow runs are kept" in out
    names = [s.study_name for s in _storage(url).get_all_studies()]
    assert names == ["keep"]
    code, out, err = cli(capsys, "delete", "keep", "--storage", url, "--yes")
    assert code == 0 and "deleted study 'keep' (3 trials)" in out, err
    assert _storage(url).get_all_studies() == []


def _running(url: str, name: str, attrs: dict[str, Any]) -> None:
    """Add a RUNNING trial whose worker is ``attrs``."""
    study = optuna.load_study(study_name=name, storage=_storage(url))
    trial = create_trial(state=TrialState.RUNNING, params={"lr": 0.01}, distributions={"lr": LR})
    trial.user_attrs.update(attrs)
    study.add_trial(trial)


def test_delete_refuses_a_study_a_live_worker_is_running(tmp_path: Path, capsys) -> None:
    """A RUNNING trial whose worker is alive (or on another host: not provably gone) stops
    `search delete` with one line naming the trial and its host; --force deletes and says what
    that worker will see. A trial of a provably dead worker does not hold the delete back."""
    import socket
    import subprocess

    from search.workers import worker_attrs

    url = f"sqlite:///{tmp_path}/a.db"
    make_study(url, n=2)  # trial 2 RUNNING without a worker, 3 WAITING
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        host = socket.gethostname()
        _running(url, "demo", {**worker_attrs(), "search.pid": dead.pid})
        _running(url, "demo", {"search.host": host, "search.pid": live.pid})  # trial 5
        _running(url, "demo", {"search.host": "gpu-node-7", "search.pid": 4242})  # trial 6
        for args in ((), ("--yes",)):
            code, _, err = cli(capsys, "delete", "demo", "--storage", url, *args)
            assert_one_line_error(code, err, "not deleting study 'demo'", "trial 5 is RUNNING")
            assert f"on {host} (pid {live.pid})" in err and "and 1 more trial" in err, err
            assert "--force" in err, err
        assert [s.study_name for s in _storage(url).get_all_studies()] == ["demo"]
        code, out, err = cli(capsys, "delete", "demo", "--storage", url, "--yes", "--force")
        assert code == 0, err
        assert "deleted study 'demo' (7 trials)" in out, out
        assert f"note: trial 5 was RUNNING on {host} (pid {live.pid}): that worker stops" in out
        assert "was deleted from its storage while this worker ran it" in out
        assert "note: trial 6 was RUNNING on gpu-node-7 (pid 4242)" in out
        assert "trial 4" not in out  # its worker is gone
        assert _storage(url).get_all_studies() == []
    finally:
        live.kill()
        live.wait()


def test_delete_removes_the_studys_local_state_and_reports_unsent_logs(
    tmp_path: Path, capsys
) -> None:
    """Epoch checkpoints, keras-tuner state and the tracking spool of the deleted study go with
    it (another study's stay); the spool's operations never sent are counted in the answer."""
    from search.engines.keras_tuner import tuner_dir
    from search.study import spool_root
    from search.tracking.spool import Spool
    from search.workers import checkpoint_root

    url = f"sqlite:///{tmp_path}/a.db"
    make_study(url, engine="keras-tuner")
    make_study(url, "keep", n=1, engine="keras-tuner")
    folders = {}
    for name in ("demo", "keep"):
        checkpoints = checkpoint_root(url, name) / "trial-3"
        checkpoints.mkdir(parents=True)
        (checkpoints / "state.json").write_text("{}")
        tuner = tuner_dir(url, name)
        tuner.mkdir(parents=True)
        (tuner / "oracle.json").write_text("{}")
        spool = Spool(spool_root(url, name))
        entry = spool.new_entry("0123456789abcdef")
        (entry.folder / "ops.jsonl").write_text(
            "".join(json.dumps({"op": "log_metrics", "step": i}) + "\n" for i in range(5))
        )
        entry.mark_sent(2)  # 3 operations never sent
        folders[name] = (checkpoint_root(url, name), tuner, spool.root)
    code, out, err = cli(capsys, "delete", "demo", "--storage", url, "--yes")
    assert code == 0, err
    assert "3 tracking operations never sent from its spool discarded" in out, out
    for folder in folders["demo"]:
        assert not folder.exists(), folder
    for folder in folders["keep"]:
        assert folder.exists() and any(folder.iterdir()), folder
    code, out, err = cli(capsys, "delete", "keep", "--storage", url, "--yes")
    assert code == 0 and "3 tracking operations never sent" in out, err
    for folder in folders["keep"]:  # no empty a.db.checkpoints (...) left behind
        assert not folder.parent.exists(), folder.parent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db"]


@pytest.mark.slow
def test_delete_under_a_running_worker_is_refused_then_forced(tmp_path: Path) -> None:
    """A real worker training trial 0: `search delete --yes` refuses with one line naming the
    trial and this host; `--force` deletes it (checkpoints of the running trial included) and the
    worker stops with the one line it was told it would print, exit 2, no traceback."""
    import socket
    import subprocess

    from tests.cli_helpers import Lines, cli_env, search_command

    storage = f"sqlite:///{tmp_path / 's.db'}"
    worker = subprocess.Popen(
        search_command(
            "run", "--study", "busy", "--trials", "2", "--epochs", "30", "--max-rows", "9000",
            "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
        ),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    lines = Lines(worker)
    try:
        lines.wait_for("trial 0 epoch 1/", timeout=300)
        refused = run_cli_here("delete", "busy", "--storage", storage, "--yes", cwd=tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert "not deleting study 'busy': trial 0 is RUNNING" in line, line
        assert f"on {socket.gethostname()} (pid {worker.pid})" in line and "--force" in line
        assert worker.poll() is None  # untouched: still training
        forced = run_cli_here(
            "delete", "busy", "--storage", storage, "--yes", "--force", cwd=tmp_path
        )
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "deleted study 'busy' (1 trial)" in forced.stdout, forced.stdout
        told = "study 'busy' was deleted from its storage while this worker ran it"
        assert f"note: trial 0 was RUNNING on {socket.gethostname()}" in forced.stdout
        assert told in forced.stdout, forced.stdout
        output = lines.rest(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    stderr = lines.stderr()
    assert worker.returncode == 2, output + stderr
    assert "Traceback" not in output + stderr, stderr
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert errors == [
        f"search run: error: {told} (search delete --force); nothing more is recorded"
    ]


# --------------------------------------------------------------------------- MLflow runs


def _log_runs(tracking: str) -> tuple[str, list[str]]:
    """A parent run and three trial runs as `search run` logs them."""
    from search.tracking.mlflow import MlflowTracker

    tracker = MlflowTracker(tracking, "demo")
    tracker.open()
    parent = tracker.create_parent_run({"space": "quick", "seed": 42}, {"search.space": "quick"})
    tracker.log_text(parent, "report", "data_report.txt")
    runs = []
    for number in range(3):
        run = tracker.create_trial_run(number, {})
        tracker.log_params(run, {"units": 8 * (number + 1)})
        for epoch in range(3):
            tracker.log_metrics(run, {"val_mae": 1.0 - 0.1 * epoch - number}, step=epoch)
        tracker.log_text(run, f"trial {number}", "model/model.txt")
        tracker.end_trial_run(run, "COMPLETE")
        runs.append(run)
    tracker.set_tags(parent, {"search.best_run_id": runs[2]})
    tracker.finish_parent_run()
    return parent, runs


def test_runs_travel_with_the_study(tmp_path: Path, capsys, monkeypatch) -> None:
    from mlflow import MlflowClient

    # file stores: MLflow's own sqlite store takes ~15 s to create on a loaded machine
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    old_store, new_store = str(tmp_path / "mlruns-a"), str(tmp_path / "mlruns-b")
    parent, runs = _log_runs(old_store)
    a, b = f"journal:///{tmp_path}/a.log", f"journal:///{tmp_path}/b.log"
    study = optuna.create_study(storage=_storage(a), study_name="demo")
    for key, value in _record(
        mlflow_tracking_uri=old_store, mlflow_parent_run_id=parent, mlflow_experiment_id="x"
    ).items():
        study.set_user_attr(key, value)
    for number, run in enumerate(runs):
        trial = _trial(number, TrialState.COMPLETE)
        trial.set_user_attr("mlflow_run_id", run)
        study.add_trial(trial)
    file = tmp_path / "demo.json"
    code, out, err = cli(capsys, "export", "demo", "--storage", a, "--to", str(file), "--with-runs")
    assert code == 0, err
    assert "4 runs" in out and (tmp_path / "demo.json.runs").is_dir(), out
    code, out, err = cli(capsys, "import", str(file), "--storage", b, "--tracking-uri", new_store)
    assert code == 0, err
    assert "4 runs copied" in out, out
    record = StudyRecord.from_attrs(study_attrs(b))
    assert record.mlflow_tracking_uri == new_store
    assert record.mlflow_parent_run_id not in (None, parent)
    client = MlflowClient(new_store)
    new_parent = client.get_run(record.mlflow_parent_run_id)
    assert new_parent.data.params == {"space": "quick", "seed": "42"}
    assert [a.path for a in client.list_artifacts(new_parent.info.run_id)] == ["data_report.txt"]
    old = MlflowClient(old_store)
    storage = _storage(b)
    trials = storage.get_all_trials(storage.get_study_id_from_name("demo"))
    mapping = {}
    for trial, old_run in zip(trials, runs, strict=True):
        new_run = trial.user_attrs["mlflow_run_id"]
        assert new_run != old_run
        mapping[old_run] = new_run
        copy, original = client.get_run(new_run), old.get_run(old_run)
        assert copy.data.tags["mlflow.parentRunId"] == new_parent.info.run_id
        assert copy.data.tags["search.copied_from"] == old_run
        assert copy.data.params == original.data.params
        assert copy.info.status == "FINISHED" and copy.info.run_name == original.info.run_name
        history = [(m.step, m.value) for m in client.get_metric_history(new_run, "val_mae")]
        assert history == [(m.step, m.value) for m in old.get_metric_history(old_run, "val_mae")]
        text = Path(client.download_artifacts(new_run, "model/model.txt", str(tmp_path)))
        assert text.read_text() == f"trial {runs.index(old_run)}"
    assert new_parent.data.tags["search.best_run_id"] == mapping[runs[2]]
    # the trial data is the same but for the run ids; exporting back merges without conflict
    strip = [{**r, "user_attrs": {**r["user_attrs"], "mlflow_run_id": "-"}} for r in trial_data(b)]
    assert strip == [
        {**r, "user_attrs": {**r["user_attrs"], "mlflow_run_id": "-"}} for r in trial_data(a)
    ]
    back = tmp_path / "back.json"
    assert cli(capsys, "export", "demo", "--storage", b, "--to", str(back))[0] == 0
    code, out, err = cli(capsys, "import", str(back), "--storage", a)
    assert code == 0 and "nothing to add" in out, err
    # --tracking-uri with a file that carries no runs: refused, nothing written
    code, _, err = cli(capsys, "import", str(back), "--storage", a, "--tracking-uri", new_store)
    assert_one_line_error(code, err, "carries no MLflow runs")


# --------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_a_real_study_moves_to_a_journal_file(tmp_path: Path) -> None:
    migrated_store(tmp_path / "mlflow.db")  # the default store, migrated in advance
    run = run_cli_here(
        "run", "--study", "tiny", "--trials", "2", "--epochs", "1", "--max-rows", "9000",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    exported = run_cli_here("export", "tiny", "--to", "tiny.json", "--with-runs", cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    journal = f"journal:///{tmp_path}/moved.log"
    imported = run_cli_here(
        "import", "tiny.json", "--storage", journal, "--tracking-uri", str(tmp_path / "mlruns2"),
        cwd=tmp_path, env={"MLFLOW_ALLOW_FILE_STORE": "true"},
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "2 trials added" in imported.stdout and "3 runs copied" in imported.stdout
    before = run_cli_here("trials", "tiny", cwd=tmp_path)
    after = run_cli_here("trials", "tiny", "--storage", journal, cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert after.stdout == before.stdout
    assert len(after.stdout.splitlines()) == 3
    listing = run_cli_here("studies", "--storage", journal, cwd=tmp_path)
    assert listing.stdout.splitlines()[1].split()[:3] == ["tiny", "2", "2"], listing.stdout


def test_sync_backfills_a_finished_trial_that_has_no_run(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """A finished trial whose run is nowhere (its spool lost with its worker's disk) gets a run
    rebuilt from its Optuna record by `search sync`, tagged search.backfilled; a trial with its
    run gets none; running sync again adds nothing."""
    from mlflow import MlflowClient

    from search.tracking.base import SPOOL_PREFIX

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # fast to create (see above)
    tracking = str(tmp_path / "mlruns")
    parent, runs = _log_runs(tracking)  # trials 0..2 logged
    url = f"sqlite:///{tmp_path}/a.db"
    study = optuna.create_study(storage=_storage(url), study_name="demo")
    for key, value in _record(mlflow_tracking_uri=tracking, mlflow_parent_run_id=parent).items():
        study.set_user_attr(key, value)
    for number in range(3):
        trial = _trial(number)
        trial.user_attrs["mlflow_run_id"] = runs[number]
        study.add_trial(trial)
    lost = _trial(3)  # COMPLETE; its run was only ever in a spool that is gone
    lost.user_attrs["mlflow_run_id"] = SPOOL_PREFIX + "0123456789abcdef"
    lost.user_attrs["param_count"] = 1234
    study.add_trial(lost)
    failed = _trial(7, TrialState.FAIL)  # trial 4: FAIL, no run id at all
    failed.user_attrs.pop("mlflow_run_id")
    study.add_trial(failed)

    code, out, err = cli(capsys, "sync", "demo", "--storage", url)
    assert code == 0, err
    assert "trials 3, 4 given a run from their study record" in out, out
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("demo")
    found = client.search_runs(
        [experiment.experiment_id], "tags.`search.backfilled` = 'study-record'"
    )
    by_number = {int(r.data.tags["search.trial_number"]): r for r in found}
    assert sorted(by_number) == [3, 4]
    run = by_number[3]
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["search.state"] == "COMPLETE" and run.info.status == "FINISHED"
    assert run.data.metrics["best_val_mae"] == pytest.approx(2.5 - 0.05 * 3)
    assert run.data.metrics["param_count"] == 1234
    assert run.data.params == {k: str(v) for k, v in lost.params.items()}
    assert run.data.tags["search.spool_key"] == "0123456789abcdef"  # a late spool completes it
    dead = by_number[4]
    assert dead.data.tags["search.state"] == "FAIL" and dead.info.status == "FAILED"
    assert dead.data.tags["search.fail_reason"] == "ValueError: the window does not fit"

    code, out, err = cli(capsys, "sync", "demo", "--storage", url)
    assert code == 0 and "given a run" not in out, out
    total = client.search_runs([experiment.experiment_id])
    assert len(total) == 1 + 3 + 2  # the parent, the three logged runs, the two backfilled
