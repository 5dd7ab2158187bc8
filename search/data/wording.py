"""How the data modules word times, durations, numbers and lists in reports and errors."""

from __future__ import annotations

import numpy as np

#: Duplicates / gaps / sentinel times listed in a report (counts stay exact).
MAX_LISTED = 50


def iso(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value.astype("datetime64[s]"), unit="s")).replace("T", " ")


def iso_ns(ns: int) -> str:
    return iso(np.datetime64(ns, "ns"))


def duration(ns: int) -> str:
    seconds = ns / 1e9
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}-hour"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}-minute"
    return f"{seconds:g}-second"


def plain_number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def preview(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def one_line(text: str) -> str:
    return " ".join(text.split())
