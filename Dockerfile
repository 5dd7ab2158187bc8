# A `search` worker: joins the study named on its command line and runs trials until its share
# is done. Many of them, on one or many machines, share one study through PostgreSQL and log to
# one MLflow server. See "Run a distributed study" in README.md.
#   docker build -t search-worker .
#   docker run --rm -e SEARCH_STORAGE=postgresql://... -e MLFLOW_TRACKING_URI=http://... \
#       search-worker --study jena --trials 10
# GPU image: --build-arg EXTRA_PACKAGES="tensorflow[and-cuda]" (the compose `gpu` profile does).
FROM python:3.11-slim

ARG EXTRA_PACKAGES=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
# set -f: EXTRA_PACKAGES such as tensorflow[and-cuda] are package names, not file globs.
RUN set -f \
    && pip install ".[tensorflow]" ${EXTRA_PACKAGES} \
    && useradd --create-home --uid 1000 search \
    && mkdir -p /work \
    && chown search:search /work \
    && rm -rf /src

USER search
WORKDIR /work

ENTRYPOINT ["search", "run"]
