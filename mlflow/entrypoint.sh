#!/bin/sh
# Start the MLflow tracking server for `search`: PostgreSQL backend store, artifacts proxied
# through the server (workers need no access to the artifact volume), reachable from other
# containers and machines. Configured by environment variables; extra arguments are passed on
# to `mlflow server` unchanged.
#
#   MLFLOW_BACKEND_STORE_URI      required, e.g. postgresql://user:password@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  where artifacts are stored (default /mlartifacts, a volume)
#   MLFLOW_HOST / MLFLOW_PORT     interface and port to bind (default 0.0.0.0 and 5000)
#   MLFLOW_WORKERS                uvicorn worker processes (default 2)
#   MLFLOW_EXTRA_ALLOWED_HOSTS    more Host headers to accept (DNS-rebinding protection), added
#                                 to the default list: the compose service name `mlflow`,
#                                 localhost and private addresses, each with any port. Name what
#                                 workers on other machines use, e.g. "mlflow.example.org:*".
#   MLFLOW_SERVER_ALLOWED_HOSTS   the whole list instead of the default (MLflow's own variable)
set -eu

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI, e.g. postgresql://USER:PASSWORD@postgres:5432/mlflow}"
MLFLOW_ARTIFACTS_DESTINATION="${MLFLOW_ARTIFACTS_DESTINATION:-/mlartifacts}"
MLFLOW_HOST="${MLFLOW_HOST:-0.0.0.0}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-2}"

if [ -z "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]; then
    hosts="mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*,[::1],[[]::1]:*"
    hosts="$hosts,10.*,192.168.*,fc00:*,fd00:*"
    i=16
    while [ "$i" -le 31 ]; do
        hosts="$hosts,172.$i.*"
        i=$((i + 1))
    done
    MLFLOW_SERVER_ALLOWED_HOSTS="$hosts"
fi
if [ -n "${MLFLOW_EXTRA_ALLOWED_HOSTS:-}" ]; then
    MLFLOW_SERVER_ALLOWED_HOSTS="$MLFLOW_SERVER_ALLOWED_HOSTS,$MLFLOW_EXTRA_ALLOWED_HOSTS"
fi

# Scorer/GenAI job runner: unused by `search`, seven extra processes. Set to true to enable.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

exec mlflow server \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --serve-artifacts \
    --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
    --host "$MLFLOW_HOST" \
    --port "$MLFLOW_PORT" \
    --workers "$MLFLOW_WORKERS" \
    --allowed-hosts "$MLFLOW_SERVER_ALLOWED_HOSTS" \
    "$@"
