#!/usr/bin/env bash
# Download, into the ignored folder .whl/ at the repository's root, the wheels that
# benchmarks/bench_gpu.py --node needs on the GPU node (Python 3.12, x86-64), and print their size.
#
# The node has Python 3.12 with JAX, PyTorch, NumPy, pandas, Matplotlib, scikit-learn, PyYAML,
# requests, protobuf, click, rich, h5py, ml-dtypes... but no Keras, Optuna or MLflow, and reaches
# no package registry. This is the project's dependencies minus what the node has
# (/work/.library/device/KINDS.md), cut to what `search import/run/export` imports on the path the
# benchmark takes (SQLite storage, a local SQLite MLflow store, the optuna engine, --backend jax):
#   - mlflow-skinny instead of mlflow: the same Python package without the tracking UI (12 MB);
#     MLflow's SQLite store needs SQLAlchemy and Alembic (which Optuna needs anyway) and
#     cryptography (its model registry tables import Fernet), which needs cffi and pycparser;
#   - left out: optuna-dashboard, keras-tuner, psycopg/psycopg2 (PostgreSQL), cmaes
#     (--sampler cmaes), gunicorn/flask (the server): imported only by commands the node does not
#     run. Checked by installing exactly this list with `pip install --no-deps --target` into a
#     Python 3.12 environment that holds only the node's packages and running the benchmark there.
# Versions: those the project is tested with (the reference venv's).
#
# Usage, from the repository's root:  bash benchmarks/gpu_wheels.sh [PYTHON]
# then, in the device call (carry: [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
WHEELS=(
  keras==3.15.1 namex==0.1.0 optree==0.20.0
  optuna==5.0.0 alembic==1.20.1 mako==1.4.3 sqlalchemy==2.1.9 colorlog==6.12.0
  mlflow-skinny==3.17.2 cachetools==7.3.3 databricks-sdk==0.162.0 fastapi==0.165.0
  starlette==1.10.0 gitpython==3.2.1 gitdb==4.0.12 smmap==5.0.3 importlib-metadata==9.1.0
  opentelemetry-api==1.45.2 opentelemetry-proto==1.45.2 opentelemetry-sdk==1.45.2
  opentelemetry-semantic-conventions==0.66b2 python-dotenv==1.2.4 sqlparse==0.6.1
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
)
grep -qxF '/.whl/' .gitignore || echo '/.whl/' >> .gitignore
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
count=$(ls .whl/*.whl | wc -l)
wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null \
  | awk '$2 == "total" {s += $1} END {print s}')
echo "wheels: $count files, $((wheels / 1024 / 1024)) MiB ($wheels bytes)"
echo "working tree that travels: $((tree / 1024 / 1024)) MiB; with the wheels:" \
  "$(((wheels + tree) / 1024 / 1024)) MiB of the device call's 64 MiB"
