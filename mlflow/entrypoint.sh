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
#
# Logins (optional): MLFLOW_AUTH=basic-auth runs MLflow's basic-auth app (`--app-name
# basic-auth`, from mlflow[auth]): every request but /health needs a user name and password.
#   MLFLOW_AUTH_ADMIN_USERNAME    the admin user created on the first start (default admin)
#   MLFLOW_AUTH_ADMIN_PASSWORD    its password, 12 characters or more; read by MLflow itself from
#                                 the environment, never written to a file or a command line.
#                                 Only the first start uses it: change it later through MLflow.
#   MLFLOW_AUTH_DATABASE_URI      where users and permissions are kept
#                                 (default sqlite:////mlauth/basic_auth.db, a volume)
#   MLFLOW_AUTH_DEFAULT_PERMISSION  what a user may do with others' experiments: READ (default),
#                                 EDIT, MANAGE or NO_PERMISSIONS
#   MLFLOW_AUTH_CONFIG_PATH       an auth config file of your own instead of the four above
#   MLFLOW_FLASK_SERVER_SECRET_KEY  the CSRF key of the login pages (default: random per start)
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

case "${MLFLOW_AUTH:-}" in
    "" | none | off | false) ;;
    basic-auth | basic | on | true)
        if [ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]; then
            case "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" in
                "" | *change-me*)
                    echo "mlflow-entrypoint: MLFLOW_AUTH=$MLFLOW_AUTH needs MLFLOW_AUTH_ADMIN_PASSWORD," \
                        "a long random password (not the placeholder of .env.example)" >&2
                    exit 2
                    ;;
            esac
            # The settings, not the password: MLflow reads that from the environment.
            MLFLOW_AUTH_CONFIG_PATH="$(mktemp "${TMPDIR:-/tmp}/mlflow-basic-auth.XXXXXX")"
            cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI:-sqlite:////mlauth/basic_auth.db}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
            export MLFLOW_AUTH_CONFIG_PATH
        fi
        if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
            MLFLOW_FLASK_SERVER_SECRET_KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
        fi
        export MLFLOW_FLASK_SERVER_SECRET_KEY
        set -- --app-name basic-auth "$@"
        ;;
    *)
        echo "mlflow-entrypoint: MLFLOW_AUTH=$MLFLOW_AUTH: expected basic-auth, or empty for no logins" >&2
        exit 2
        ;;
esac

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
