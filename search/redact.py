"""One redaction rule for everything that leaves the program: terminal lines, MLflow params and
tags, study attributes, reports and error messages never carry a password."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redact", "redact_value", "without_credentials"]

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


_FULL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/@]*:[^\s@/]*@")


def without_credentials(url: str) -> str:
    """``url`` with its ``user:password@`` and password query parameters removed, for storing
    (a stored URI is used again with credentials from the environment)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    url = _FULL_USERINFO.sub(lambda m: m["head"], url)
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key.lower() not in ("password", "pass", "pwd", "token")
    ]
    return urlunsplit(parts._replace(query=urlencode(kept)))
