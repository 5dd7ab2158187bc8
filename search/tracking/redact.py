"""One redaction rule for everything that leaves the program: terminal lines, MLflow params and
tags, study attributes, reports and error messages never carry a password."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redact", "redact_value"]

# scheme://user:PASSWORD@host  ->  scheme://user:***@host
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<secret>[^\s@/]*)@")
# ?password=...&  or  &pass=...  (psycopg and SQLAlchemy query forms)
_QUERY = re.compile(r"(?P<head>[?&](?:password|pass|pwd|token)=)(?P<secret>[^&\s]*)", re.I)


def redact(text: str) -> str:
    """``text`` with every password in a URL (``user:PASSWORD@``, ``?password=``) as ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:***@" if m["secret"] else m[0], text)
    return _QUERY.sub(lambda m: f"{m['head']}***", text)


def redact_value(value: Any) -> Any:
    """Redact strings, and the strings inside lists and dicts; other values unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value
