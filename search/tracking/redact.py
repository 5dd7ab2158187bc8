"""The redaction rule, from its own module :mod:`search.redact` (it serves the storage and the
CLI as much as tracking); importable here as before."""

from __future__ import annotations

from search.redact import redact, redact_value, without_credentials

__all__ = ["redact", "redact_value", "without_credentials"]
