"""benchmarks/bench_gpu.py, the GPU node's prepared script, run here on CPU with JAX in tiny
settings: its node mode imports the committed laptop export, resumes the study, exports it back
and measures `--jobs`; its merge mode brings the node's trials home. What a later task with a
device runs must already work here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks/bench_gpu.py"
FIXTURE = REPO / "benchmarks/gpu/laptop-export.json"

pytestmark = pytest.mark.slow  # six `search` processes on JAX: about 3 minutes on 2 cores


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_node_mode_round_trip_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    laptop = json.loads(FIXTURE.read_text())
    laptop_trials = len(laptop["trials"])
    assert laptop_trials >= 2 and laptop["study"]["name"] == "gpu-resume"

    out = tmp_path / "out"
    # --resume-seed 1: the resumed trial's draw is fixed and small (LSTM(25) x 2 on a 24 h
    # window); unseeded, a draw such as LSTM(114) x 2 on 240 h took 52 s of the test's 128 s.
    _bench(
        "--node", "--backend", "jax", "--out", str(out), "--work", str(tmp_path / "node"),
        "--resume-trials", "1", "--resume-jobs", "1", "--resume-seed", "1", "--jobs-list", "1",
        "--jobs-trials", "1", "--epochs", "1", "--rows", "12500", "--budget", "400",
        cwd=tmp_path,
    )  # fmt: skip
    results = json.loads((out / "bench_gpu.json").read_text())

    versions = results["versions"]
    for key in ("backend", "packages", "python", "platform", "mps_running", "nvidia_smi"):
        assert key in versions, key
    assert versions["backend"] == "jax"
    assert {"keras", "jax", "optuna", "numpy"} <= set(versions["packages"])
    assert "cpu" in versions["backend_devices"].lower()

    resume = results["resume"]
    assert resume["laptop_trials"] == laptop_trials
    assert resume["run_exit"] == 0 and not resume["run_killed"]
    assert resume["node_new_trials"] == 1
    assert resume["node_trials"] == laptop_trials + 1
    assert resume["laptop_trials_kept"] and resume["duplicates"] == 0
    assert resume["trial_devices"] == {"jax/cpu": 1}  # the node's one trial, on this backend
    assert resume["runs"] == {"trials": laptop_trials + 1, "missing": [], "shared": []}

    jobs = results["jobs"]["jobs1"]
    assert jobs["exit"] == 0 and jobs["trials_finished"] == 1, jobs
    for key in ("trials_per_hour_wall", "trials_per_hour_span", "samples_per_s_span"):
        assert jobs[key] > 0, key
    assert jobs["train_samples"] > 0 and jobs["fit_samples_per_s_per_process"] > 0

    # What comes back from a device call: at most 8 files, no deep folders.
    back = {"bench_gpu.json", "bench_gpu.log", "node-export.json", "node-export.tar.gz"}
    assert {p.name for p in out.iterdir()} == back
    merged = _bench(
        "--merge", str(out / "node-export.tar.gz"), "--node-json", str(out / "bench_gpu.json"),
        "--fixture", str(FIXTURE), "--work", str(tmp_path / "laptop"), "--out", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert "rebuilt it from" in merged.stdout  # no laptop storage in this folder
    report = json.loads((tmp_path / "merge.json").read_text())
    assert report["laptop_before"] == laptop_trials
    assert report["node_new"] == 1
    assert report["laptop_after"] == laptop_trials + 1
    assert report["runs"] == {"trials": laptop_trials + 1, "missing": [], "shared": []}
    assert all(report["checks"].values()), report["checks"]
    assert report["node"]["resume"]["node_trials"] == laptop_trials + 1
