"""On a GPU node, for real: the resume round trip (README path (b)) and `--jobs` on an accelerator.

Three steps, two machines. Every figure is printed as it is measured and written to a JSON.

1. HERE, before (the laptop; CPU, TensorFlow or `--backend jax`): a few finished trials of
   `--space lstm` into benchmarks/results/gpu/laptop/, exported (`search export`) to the committed
   fixture benchmarks/gpu/laptop-export.json, which travels with the working tree:

       python benchmarks/bench_gpu.py --prepare [--backend jax] [--trials 3 --epochs 1]

2. THERE, on the GPU node, in one device call of at most 10 minutes (the node has JAX but no
   TensorFlow, Keras, Optuna or MLflow: `bash benchmarks/gpu_wheels.sh` here first downloads
   them into the ignored folder .whl/, which the call carries: the device tool's `run` with
   carry [".whl"] and timeout_s 600; the script itself ends in about 8.5 minutes at worst):

       python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
           --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
       PYTHONUNBUFFERED=1 python3 benchmarks/bench_gpu.py --node --out $OUT

   stage 0  the device, driver, CUDA, backend and package versions, and whether NVIDIA MPS runs
            (nvidia-smi, jax.devices() in a child process, importlib.metadata);
   stage 1  `search import` the fixture, `search run --study gpu-resume --backend jax --jobs 2`
            (the study resumed on the node, logging to a local MLflow store), `search export` it
            to $OUT/node-export.json; the trials counted at each step;
   stage 2  the same small study (the book's LSTM(16), only the learning rate varies, so every
            trial costs the same) with `--jobs 1` and `--jobs 4`, each in a fresh storage:
            trials per hour (the whole command, and the trials' own span from Optuna's
            timestamps) and training samples per second (train windows x epochs, over the span,
            and per process over `model.fit` time), and the ratio of the two in the same run. If
            MPS is already running, these runs are with MPS and say so; the script never changes
            the GPU's settings. Each stage is bounded (`--budget` seconds, default 150: `search
            run --timeout` stops new trials at 60% of it, the command is killed at 100%).
   Results and versions: $OUT/bench_gpu.json; the node's export: $OUT/node-export.json.

3. HERE, after (the files come back under the device call's files_at folder):

       python benchmarks/bench_gpu.py --merge FILES_AT/node-export.json [--node-json
           FILES_AT/bench_gpu.json]

   `search import`s the node's export into the laptop storage of step 1 (rebuilt from the
   fixture if this machine no longer has it), and checks the round trip: every trial the node
   exported is in the laptop storage once (no trial lost, none duplicated), the laptop's own
   trials are still there, and importing again adds nothing. Writes
   benchmarks/results/gpu/merge.json (and folds --node-json's figures into it).

On CPU (what tests/test_bench_gpu.py runs, tiny): `--node --backend jax --resume-trials 1
--resume-jobs 1 --resume-seed 1 --jobs-list 1 --jobs-trials 1 --epochs 1 --rows 12500` (the seed
fixes the resumed trial's draw to a small one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
sys.path.insert(0, str(REPO))

from search.cli.export import runs_folder  # noqa: E402
from tests.cli_helpers import cli_env, search_command  # noqa: E402

STUDY = "gpu-resume"
JOBS_STUDY = "gpu-jobs"
FIXTURE = REPO / "benchmarks/gpu/laptop-export.json"
RESULTS = REPO / "benchmarks/results/gpu"
PREPARE_ROWS = 12500  # the lstm space's longest lookback (240 h at rate 3) needs about 10,000

# The book's LSTM(16) (120 h lookback, rate 6, batch 256): the model the README's plain
# `keras.fit` figures were measured with. Only the learning rate varies, so every trial costs the
# same and --jobs 1 and --jobs 4 run the same work.
JOBS_SPACE = """\
name: bench-gpu-lstm16
description: "Benchmark space: the book's LSTM(16); only the learning rate varies, so every trial costs the same"
architecture: lstm
params:
  units: 16
  layers: 1
  lookback_hours: 120
  sampling_rate: 6
  learning_rate: {type: float, low: 1.0e-3, high: 2.0e-3, log: true}
  batch_size: 256
fixed: {epochs: 2, optimizer: rmsprop, loss: mse, patience: 2, horizon_hours: 24, target_steps: 1}
book:
  source: "Deep Learning with Python 2nd ed. 10.2.5: LSTM(16) -> Dense(1)"
  params: {learning_rate: 0.001}
"""

# What stage 0 records: the project's own packages and what they run on.
PACKAGES = (
    "keras", "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin",
    "jax-cuda12-pjrt", "torch", "tensorflow", "optuna", "mlflow", "mlflow-skinny", "sqlalchemy",
    "numpy", "pandas", "optree", "ml-dtypes",
)  # fmt: skip


# --------------------------------------------------------------------------- helpers


def say(line: str) -> None:
    print(line, flush=True)


def _env(backend: str | None) -> dict[str, str]:
    """The CLI's environment: no user MLflow/storage settings; this checkout first on the path
    (the node has no install of `search`), ahead of what PYTHONPATH already holds (its wheels)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    extra = {"PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    if backend:
        extra["KERAS_BACKEND"] = backend
    return cli_env(extra)


class StageFailed(RuntimeError):
    pass


def cli(
    args: list[str], cwd: Path, budget: float, backend: str | None = None, log: Path | None = None
) -> dict[str, Any]:
    """Run `python -m search ARGS` in ``cwd`` for at most ``budget`` seconds (its process group
    killed then, --jobs workers too). Returns seconds, exit code, output, and whether it was
    killed."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        search_command(*args),
        cwd=cwd,
        env=_env(backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=budget)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        killed = True
    seconds = time.perf_counter() - started
    if log is not None:
        with log.open("a") as handle:
            handle.write(f"$ search {' '.join(args)}\n{output}\n[exit {proc.returncode}, ")
            handle.write(f"{seconds:.1f} s{', killed at the budget' if killed else ''}]\n\n")
    return {"seconds": seconds, "returncode": proc.returncode, "output": output, "killed": killed}


def _tail(output: str, lines: int = 15) -> str:
    return "\n".join(output.splitlines()[-lines:])


def _line(output: str, start: str) -> str:
    """The first line of ``output`` that starts with ``start`` (else its first line)."""
    lines = output.strip().splitlines() or [""]
    return next((line for line in lines if line.startswith(start)), lines[0])


def checked(result: dict[str, Any], what: str) -> dict[str, Any]:
    if result["killed"] or result["returncode"] != 0:
        why = "killed at its budget" if result["killed"] else f"exit {result['returncode']}"
        raise StageFailed(f"{what}: {why}\n{_tail(result['output'])}")
    return result


def sqlite(folder: Path, name: str) -> str:
    return f"sqlite:///{folder / name}"


def exported(storage: str, study: str, cwd: Path, budget: float = 120) -> dict[str, Any]:
    """The study as `search export` writes it (the trials' origins, states, attributes)."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "study.json"
        checked(
            cli(["export", study, "--to", str(target), "--storage", storage], cwd, budget),
            f"search export {study}",
        )
        return json.loads(target.read_text())


def origins(payload: dict[str, Any]) -> list[str]:
    return [str(t["origin"]) for t in payload["trials"]]


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _versions(package: str) -> str | None:
    try:
        return metadata.version(package)
    except Exception:
        return None


# --------------------------------------------------------------------------- stage 0


def stage_versions(backend: str) -> dict[str, Any]:
    """Device, driver, CUDA, backend and package versions; read without touching the GPU in this
    process (JAX would take 75% of its memory): nvidia-smi, and the backend in a child."""
    from search.cli.jobs import gpu_present, mps_running

    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "backend": backend,
        "packages": {p: v for p in PACKAGES if (v := _versions(p)) is not None},
        "gpu_present": gpu_present(),
        "mps_running": mps_running(),
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "name,driver_version,memory.total,compute_mode"
        try:
            line = subprocess.run(
                [smi, f"--query-gpu={query}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            first = line.splitlines()[0] if line else ""  # one line per GPU: the first is used
            values = [v.strip() for v in first.split(",")]
            info["nvidia_smi"] = dict(zip(query.split(","), values, strict=False))
            info["gpus"] = len(line.splitlines())
            banner = subprocess.run([smi], capture_output=True, text=True, timeout=60).stdout
            found = re.search(r"CUDA Version:\s*([\d.]+)", banner)
            info["cuda_driver_api"] = found.group(1) if found else None
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = {"error": str(exc)}
    else:
        info["nvidia_smi"] = None
    probe = {
        "jax": "import jax; d = jax.devices(); print(repr([(x.platform, x.device_kind) for x in d]))",
        "torch": "import torch; print(repr(torch.cuda.get_device_name(0) "
        "if torch.cuda.is_available() else 'cpu'))",
        "tensorflow": "import tensorflow as tf; print(repr(tf.config.list_physical_devices()))",
    }[backend]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        child = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
        )
        info["backend_devices"] = child.stdout.strip() or child.stderr.strip()[-300:]
    except subprocess.SubprocessError as exc:
        info["backend_devices"] = f"error: {exc}"
    smi_line = info["nvidia_smi"] or {}
    say(
        f"0  device: {smi_line.get('name', 'no nvidia-smi')}, driver "
        f"{smi_line.get('driver_version', '-')}, CUDA {info.get('cuda_driver_api') or '-'}; "
        f"{backend} devices {info['backend_devices']}; MPS "
        f"{'running' if info['mps_running'] else 'not running'}; {info['cpus']} CPUs"
    )
    shown = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    say(f"0  python {info['python']}; {shown}")
    return info


# --------------------------------------------------------------------------- stage 1


def stage_resume(args: argparse.Namespace, work: Path, out: Path, log: Path) -> dict[str, Any]:
    """README path (b) on this node: import the laptop's export with its runs into a local
    MLflow store, resume the study on --backend, export it back with its runs."""
    folder = work / "node"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    storage, tracking = sqlite(folder, "studies.db"), sqlite(folder, "mlflow.db")
    fixture = json.loads(Path(args.fixture).read_text())
    laptop = origins(fixture)
    result: dict[str, Any] = {"fixture": str(args.fixture), "laptop_trials": len(laptop)}
    say(f"1  the laptop's export {args.fixture}: {len(laptop)} finished trials of {STUDY!r}")

    imported = checked(
        cli(
            ["import", str(args.fixture), "--storage", storage, "--tracking-uri", tracking],
            folder,
            args.budget,
            log=log,
        ),
        "search import",
    )
    result["import_s"] = imported["seconds"]
    say(f"1  {_line(imported['output'], 'imported')} ({imported['seconds']:.1f} s)")

    run_args = [
        "run", "--study", STUDY, "--backend", args.backend,
        "--trials", str(args.resume_trials), "--epochs", str(args.epochs),
        "--jobs", str(args.resume_jobs), "--timeout", f"{0.6 * args.budget:.0f}",
        "--storage", storage, "--tracking-uri", tracking,
    ]  # fmt: skip
    if args.resume_seed is not None:  # else each worker samples on its own random stream
        run_args += ["--seed", str(args.resume_seed)]
    ran = cli(run_args, folder, args.budget, args.backend, log=log)
    if ran["returncode"] != 0:
        result["run_output_tail"] = _tail(ran["output"])
    result.update(
        {
            "command": "search " + " ".join(run_args).replace(str(work), "WORK"),
            "run_s": ran["seconds"],
            "run_exit": ran["returncode"],
            "run_killed": ran["killed"],
        }
    )
    say(
        f"1  search run --backend {args.backend} --jobs {args.resume_jobs} --trials "
        f"{args.resume_trials}: {ran['seconds']:.1f} s, exit {ran['returncode']}"
        + (" (killed at its budget)" if ran["killed"] else "")
        + (f"\n{result['run_output_tail']}" if ran["returncode"] != 0 else "")
    )

    back = work / "back" / "node-export.json"
    shutil.rmtree(back.parent, ignore_errors=True)
    back.parent.mkdir(parents=True)
    sent = checked(
        cli(
            ["export", STUDY, "--to", str(back), "--storage", storage, "--with-runs"],
            folder,
            args.budget,
            log=log,
        ),
        "search export",
    )
    # What comes back from the node: at most 8 files, 2 folders down, so the file and its runs
    # folder travel as one archive (and the file alone, to read).
    archive = out / "node-export.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(back, arcname=back.name)
        tar.add(runs_folder(back), arcname=runs_folder(back).name)
    shutil.copyfile(back, out / "node-export.json")
    payload = json.loads(back.read_text())
    node = origins(payload)
    new = [o for o in node if o not in set(laptop)]
    states: dict[str, int] = {}
    for trial in payload["trials"]:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    new_runs = [
        str(t["user_attrs"].get("mlflow_run_id")) for t in payload["trials"] if t["origin"] in new
    ]
    devices = _run_devices(folder / "mlflow.db", new_runs)
    runs = _runs_check(payload, folder / "mlflow.db")
    result.update(
        {
            "export_s": sent["seconds"],
            "node_export": str(archive),
            "node_export_bytes": archive.stat().st_size,
            "node_trials": len(node),
            "node_new_trials": len(new),
            "node_states": states,
            "laptop_trials_kept": all(o in set(node) for o in laptop),
            "duplicates": len(node) - len(set(node)),
            "trial_devices": devices,
            "runs": runs,
        }
    )
    say(
        f"1  search export --with-runs: {len(node)} trials ({len(laptop)} from the laptop, "
        f"{len(new)} run here; {states}) in {sent['seconds']:.1f} s, {archive.name} "
        f"{archive.stat().st_size / 1024:.0f} KiB; every laptop trial kept: "
        f"{result['laptop_trials_kept']}; each trial has its run here: "
        f"{not runs['missing'] and not runs['shared']}; the node's trials ran on {devices}"
    )
    return result


def _runs_check(payload: dict[str, Any], mlflow_db: Path) -> dict[str, Any]:
    """Whether every trial of ``payload`` has its own run in the MLflow store ``mlflow_db``
    (read with the standard library's sqlite3)."""
    import sqlite3

    ids = [str(t["user_attrs"].get("mlflow_run_id") or "") for t in payload["trials"]]
    with sqlite3.connect(mlflow_db) as db:
        stored = {row[0] for row in db.execute("SELECT run_uuid FROM runs")}
    return {
        "trials": len(ids),
        "missing": [i for i in ids if i not in stored],
        "shared": sorted({i for i in ids if ids.count(i) > 1}),
    }


def _run_devices(mlflow_db: Path, run_ids: list[str] | None = None) -> dict[str, int]:
    """``search.backend/search.device`` of the trial runs in an MLflow store (only ``run_ids``,
    if given), counted; read with the standard library: nothing here touches the GPU."""
    import sqlite3

    if not mlflow_db.exists():
        return {}
    with sqlite3.connect(mlflow_db) as db:
        rows = db.execute(
            "SELECT b.run_uuid, b.value, d.value FROM tags b JOIN tags d "
            "ON b.run_uuid = d.run_uuid WHERE b.key = 'search.backend' AND d.key = 'search.device'"
        ).fetchall()
    counted: dict[str, int] = {}
    for run_id, backend, device in rows:
        if run_ids is None or run_id in run_ids:
            key = f"{backend}/{device}"
            counted[key] = counted.get(key, 0) + 1
    return counted


# --------------------------------------------------------------------------- stage 2


def _figures(payload: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Trials/hour and samples/s of one `search run` from its study's export."""
    done = [t for t in payload["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    starts = [s for t in done if (s := _when(t.get("datetime_start"))) is not None]
    ends = [e for t in done if (e := _when(t.get("datetime_complete"))) is not None]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    samples = sum(
        int(t["user_attrs"].get("train_windows", 0)) * int(t["user_attrs"].get("epochs_run", 0))
        for t in done
    )
    fit = sum(float(t["user_attrs"].get("train_seconds", 0.0)) for t in done)
    n = len(done)
    return {
        "trials_finished": n,
        "trials_failed": sum(1 for t in payload["trials"] if t["state"] == "FAIL"),
        "wall_s": seconds,
        "span_s": span,
        "trials_per_hour_wall": n * 3600 / seconds if n else 0.0,
        "trials_per_hour_span": n * 3600 / span if n and span > 0 else float("nan"),
        "train_samples": samples,
        "samples_per_s_span": samples / span if samples and span > 0 else float("nan"),
        "fit_seconds": fit,
        "fit_samples_per_s_per_process": samples / fit if fit > 0 else float("nan"),
    }


def stage_jobs(args: argparse.Namespace, work: Path, log: Path) -> dict[str, Any]:
    space = work / "bench-gpu-lstm16.yaml"
    space.write_text(JOBS_SPACE)
    results: dict[str, Any] = {"space": JOBS_SPACE, "trials": args.jobs_trials}
    from search.cli.jobs import mps_running

    mps = mps_running()
    results["mps_running"] = mps
    label = " with MPS (it was already running)" if mps else " (MPS not running)"
    for jobs in args.jobs_list:
        folder = work / f"jobs{jobs}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        storage = sqlite(folder, "studies.db")
        run_args = [
            "run", "--space", str(space), "--study", JOBS_STUDY, "--backend", args.backend,
            "--trials", str(args.jobs_trials), "--epochs", str(args.epochs),
            "--jobs", str(jobs), "--timeout", f"{0.6 * args.budget:.0f}", "--seed", "0",
            "--storage", storage, "--tracking-uri", sqlite(folder, "mlflow.db"),
        ]  # fmt: skip
        if args.rows:
            run_args += ["--max-rows", str(args.rows)]
        ran = cli(run_args, folder, args.budget, args.backend, log=log)
        entry: dict[str, Any] = {
            "command": "search " + " ".join(run_args).replace(str(work), "WORK"),
            "exit": ran["returncode"],
            "killed": ran["killed"],
            "mps": mps,
        }
        if ran["returncode"] != 0:
            entry["run_output_tail"] = _tail(ran["output"])
        try:
            entry.update(_figures(exported(storage, JOBS_STUDY, folder), ran["seconds"]))
            entry["trial_devices"] = _run_devices(folder / "mlflow.db")
        except StageFailed as exc:  # e.g. killed before the study existed
            entry["error"] = str(exc)
        results[f"jobs{jobs}"] = entry
        if "error" in entry:
            say(f"2  --jobs {jobs}: no figures ({entry['error'].splitlines()[0]})")
            say(entry.get("run_output_tail", ""))
            continue
        say(
            f"2  --jobs {jobs}{label}: {entry['trials_finished']} trials in {ran['seconds']:.1f} s"
            f" = {entry['trials_per_hour_wall']:.0f} trials/hour (wall), "
            f"{entry['trials_per_hour_span']:.0f} over the trials' span "
            f"({entry['span_s']:.1f} s); {entry['samples_per_s_span']:.0f} train samples/s "
            f"together, {entry['fit_samples_per_s_per_process']:.0f} per process in model.fit"
            + (" [killed at its budget]" if ran["killed"] else "")
        )
    base = results.get(f"jobs{args.jobs_list[0]}", {})
    for jobs in args.jobs_list[1:]:
        entry = results.get(f"jobs{jobs}", {})
        ratios = {}
        for key in (
            "trials_per_hour_wall",
            "trials_per_hour_span",
            "samples_per_s_span",
            "fit_samples_per_s_per_process",  # 1.0x: each process trains as fast as one alone
        ):
            if base.get(key) and entry.get(key):
                ratios[key] = entry[key] / base[key]
        results[f"jobs{jobs}_vs_jobs{args.jobs_list[0]}"] = ratios
        if ratios:
            say(
                f"2  --jobs {jobs} against --jobs {args.jobs_list[0]}{label}: "
                + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
            )
    return results


# --------------------------------------------------------------------------- modes


def node(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="bench_gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    log = out / "bench_gpu.log"
    log.write_text("")
    started = time.perf_counter()
    results: dict[str, Any] = {"mode": "node", "settings": _settings(args)}

    def write() -> None:
        results["total_s"] = time.perf_counter() - started
        (out / "bench_gpu.json").write_text(json.dumps(results, indent=2, default=str))

    failed = False
    try:
        results["versions"] = stage_versions(args.backend)
    except Exception:
        results["versions"] = {"error": traceback.format_exc()}
        say(f"versions: FAILED: {results['versions']['error']}")
    write()
    for key, stage in (
        ("resume", lambda: stage_resume(args, work, out, log)),
        ("jobs", lambda: stage_jobs(args, work, log)),
    ):
        if key not in args.stages:
            continue
        t0 = time.perf_counter()
        try:
            results[key] = stage()
        except Exception as exc:  # a device call is scarce: the next stage still runs
            failed = True
            detail = str(exc) if isinstance(exc, StageFailed) else traceback.format_exc()
            results[key] = {"error": detail}
            say(f"{key}: FAILED: {detail}")
        results[key]["stage_s"] = time.perf_counter() - t0
        write()
    write()
    say(f"total {results['total_s']:.0f} s; results in {out / 'bench_gpu.json'}")
    return 1 if failed else 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _laptop(args: argparse.Namespace) -> Path:
    return RESULTS / "laptop" if args.work is None else Path(args.work).resolve() / "laptop"


def prepare(args: argparse.Namespace) -> int:
    folder = _laptop(args)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run_args = [
        "run", "--space", "lstm", "--study", STUDY, "--trials", str(args.trials),
        "--epochs", str(args.epochs), "--max-rows", str(args.rows or PREPARE_ROWS),
        "--storage", sqlite(folder, "studies.db"), "--tracking-uri", sqlite(folder, "mlflow.db"),
    ]  # fmt: skip
    if args.backend:
        run_args += ["--backend", args.backend]
    ran = checked(cli(run_args, folder, 3600, args.backend), "search run")
    say(f"prepare: {args.trials} trials of --space lstm in {ran['seconds']:.1f} s")
    fixture = Path(args.fixture)
    fixture.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(runs_folder(fixture), ignore_errors=True)
    sent = checked(
        cli(
            ["export", STUDY, "--to", str(fixture), "--with-runs"]
            + ["--storage", sqlite(folder, "studies.db")],
            folder,
            300,
        ),
        "search export",
    )
    say(f"prepare: {_line(sent['output'], 'exported')} ({sent['seconds']:.1f} s)")
    say(f"prepare: {_line(sent['output'], 'MLflow')}")
    return 0


def merge(args: argparse.Namespace) -> int:
    """Import the node's export (with its runs) into the laptop's storage and MLflow store, and
    check the round trip."""
    folder = _laptop(args)
    storage, tracking = sqlite(folder, "studies.db"), sqlite(folder, "mlflow.db")
    results: dict[str, Any] = {"mode": "merge", "node_export": str(args.merge)}
    if not (folder / "studies.db").exists():
        folder.mkdir(parents=True, exist_ok=True)
        rebuilt = ["import", str(args.fixture), "--storage", storage, "--tracking-uri", tracking]
        checked(cli(rebuilt, folder, 300), "search import (the fixture)")
        results["laptop_rebuilt_from"] = str(args.fixture)
        say(f"merge: no laptop storage here; rebuilt it from {args.fixture} (with its runs)")
    unpacked = Path(tempfile.mkdtemp(prefix="bench_gpu-merge-"))
    back = Path(args.merge)
    if back.name.endswith(".tar.gz"):
        with tarfile.open(back) as tar:
            tar.extractall(unpacked, filter="data")
        back = unpacked / "node-export.json"
    before = origins(exported(storage, STUDY, folder))
    node = origins(json.loads(back.read_text()))
    command = ["import", str(back), "--storage", storage, "--tracking-uri", tracking]
    first = checked(cli(command, folder, 300), "search import")
    payload = exported(storage, STUDY, folder)
    after = origins(payload)
    again = checked(cli(command, folder, 300), "search import (again)")
    final = origins(exported(storage, STUDY, folder))
    runs = _runs_check(payload, folder / "mlflow.db")
    new = [o for o in node if o not in set(before)]
    checks = {
        "no_trial_lost": set(node) <= set(after) and set(before) <= set(after),
        "none_duplicated": len(after) == len(set(after)),
        "added_exactly_the_new": len(after) == len(before) + len(new),
        "each_trial_its_own_run": not runs["missing"] and not runs["shared"],
        "second_import_adds_nothing": final == after,
    }
    results.update(
        {
            "laptop_before": len(before),
            "node_export_trials": len(node),
            "node_new": len(new),
            "laptop_after": len(after),
            "runs": runs,
            "import_output": first["output"].strip(),
            "import_again_output": again["output"].strip(),
            "import_s": first["seconds"],
            "checks": checks,
        }
    )
    say(f"merge: {_line(first['output'], 'imported')} ({first['seconds']:.1f} s)")
    say(
        f"merge: laptop {len(before)} trials before, node export {len(node)} ({len(new)} new), "
        f"laptop {len(after)} after; again: {_line(again['output'], 'imported')}"
    )
    say("merge: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    if args.node_json:
        results["node"] = json.loads(Path(args.node_json).read_text())
    out = Path(args.out).resolve() if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "merge.json").write_text(json.dumps(results, indent=2, default=str))
    shutil.rmtree(unpacked, ignore_errors=True)
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", action="store_true", help="here: make and export the study")
    mode.add_argument("--node", action="store_true", help="on the GPU node: stages 0-2")
    mode.add_argument("--merge", metavar="NODE_EXPORT", help="here: import the node's export")
    parser.add_argument("--out", help="folder for bench_gpu.json (node) or merge.json (merge)")
    parser.add_argument("--work", help="scratch folder (default: a new temporary one / results)")
    parser.add_argument("--fixture", default=str(FIXTURE), help="the laptop's export")
    parser.add_argument("--node-json", help="--merge: the node's bench_gpu.json to fold in")
    parser.add_argument("--backend", help="Keras backend (node default: jax)")
    parser.add_argument("--trials", type=int, default=3, help="--prepare: trials (default 3)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (prepare 1, node 2)")
    parser.add_argument("--rows", type=int, help="--max-rows (prepare 12500; node: all rows)")
    parser.add_argument("--resume-trials", type=int, default=4, help="stage 1 trials (default 4)")
    parser.add_argument("--resume-jobs", type=int, default=2, help="stage 1 --jobs (default 2)")
    parser.add_argument(
        "--resume-seed",
        type=int,
        help="stage 1 --seed: the resumed trials' draws, fixed (default: unseeded, as a user)",
    )
    parser.add_argument("--jobs-trials", type=int, default=8, help="stage 2 trials (default 8)")
    parser.add_argument(
        "--jobs-list",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 4],
        help="stage 2 --jobs values, the first the reference (default 1,4)",
    )
    parser.add_argument("--budget", type=float, default=150.0, help="seconds per stage step")
    parser.add_argument("--stages", default="resume,jobs", help="node stages (resume,jobs)")
    args = parser.parse_args(argv)
    if args.node:
        args.backend = args.backend or "jax"
        args.epochs = args.epochs or 2
        args.stages = args.stages.split(",")
        args.out = args.out or str(RESULTS / "node")
        return node(args)
    args.epochs = args.epochs or 1
    if args.prepare:
        return prepare(args)
    return merge(args)


if __name__ == "__main__":
    raise SystemExit(main())
