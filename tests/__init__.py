"""Tests for `search`; `tests.servers` provides real PostgreSQL and MLflow server fixtures."""
