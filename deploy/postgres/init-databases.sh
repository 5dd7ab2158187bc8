#!/bin/bash
# Create the two databases of a `search` deployment: one for Optuna studies, one for MLflow.
# Run once by the official postgres image on an empty data volume (mounted into
# /docker-entrypoint-initdb.d/); safe to run again by hand (existing databases are kept):
#   POSTGRES_USER=search PGHOST=... PGPASSWORD=... bash deploy/postgres/init-databases.sh
set -eu

for database in "${OPTUNA_DB:-optuna}" "${MLFLOW_DB:-mlflow}"; do
    echo "init-databases: ensuring database '$database' exists"
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
        --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
        -v db="$database" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SQL
done
