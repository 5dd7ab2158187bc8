"""The Jena weather sources: the 2020 record shipped with the package, and the classic
2009-2016 file downloaded on request, cached and verified (see search.data.sources)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.data.wording import one_line, preview
from search.errors import DataError

JENA_FEATURES: list[str] = [
    "p (mbar)",
    "T (degC)",
    "Tpot (K)",
    "Tdew (degC)",
    "rh (%)",
    "VPmax (mbar)",
    "VPact (mbar)",
    "VPdef (mbar)",
    "sh (g/kg)",
    "H2OC (mmol/mol)",
    "rho (g/m**3)",
    "wv (m/s)",
    "max. wv (m/s)",
    "wd (deg)",
]
JENA_TARGET = "T (degC)"
SOURCES = ("jena-2020", "jena-2009-2016")

#: The missing-value code of the Jena station files.
SENTINEL = -9999.0

JENA_2020_FILE = "jena_weather_2020.csv.gz"
JENA_2009_URL = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/jena_climate_2009_2016.csv.zip"
)
JENA_2009_FILE = "jena_climate_2009_2016.csv"
JENA_2009_ROWS = 420_551
JENA_2009_HEADER = ["Date Time", *JENA_FEATURES]

#: Told of a download's progress: ``progress(url, bytes_done, bytes_total, finished)`` after
#: each chunk (``bytes_total`` 0 when the server does not say), and once more with ``finished``.
DownloadProgress = Callable[[str, int, int, bool], None]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The user cache folder: cache_dir, else SEARCH_CACHE_DIR, XDG_CACHE_HOME/search, ~/.cache/search."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("SEARCH_CACHE_DIR"):
        return Path(os.environ["SEARCH_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "search"
    return Path.home() / ".cache" / "search"


def jena_2009_2016_path(cache_dir: str | Path | None = None) -> Path:
    """Where the unzipped jena_climate_2009_2016.csv lives (or must be placed by hand)."""
    return cache_root(cache_dir) / JENA_2009_FILE


def fetch_jena(
    cache_dir: str | Path | None,
    download: bool,
    url: str | None = None,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
    *,
    rows: int = JENA_2009_ROWS,
    progress: DownloadProgress | None = None,
) -> tuple[Path, str]:
    """Path and sha256 of the verified jena_climate_2009_2016.csv, downloading and unzipping it
    if needed (``rows``: the data rows its structure check expects; ``progress``: told of the
    download's bytes)."""
    url = url or os.environ.get("SEARCH_JENA_URL") or JENA_2009_URL
    expected = (expected_sha256 or os.environ.get("SEARCH_JENA_SHA256") or "").strip().lower()
    target = jena_2009_2016_path(cache_dir)
    manual = (
        f"download {JENA_2009_URL} elsewhere, unzip it and place {JENA_2009_FILE} at {target} "
        "(or set SEARCH_CACHE_DIR to a folder holding it)"
    )
    if target.is_file():
        return target, _verify_jena_csv(target, expected, rows=rows)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder {target.parent} ({exc}); {manual}"
        ) from None
    local_zip = target.with_name(JENA_2009_FILE + ".zip")
    if local_zip.is_file():
        return target, _install_jena_archive(local_zip, target, expected, rows)
    if not download:
        raise DataError(f"jena-2009-2016 is not in the cache and downloading is off; {manual}")
    fd, part_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=target.parent)
    part = Path(part_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                request = urllib.request.Request(url, headers={"User-Agent": "search-data/0.1"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    _copy_with_progress(response, out, url, progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(
                f"cannot download jena-2009-2016 from {url} ({one_line(str(reason))}); "
                f"without network: {manual}"
            ) from None
        return target, _install_jena_archive(part, target, expected, rows)
    finally:
        part.unlink(missing_ok=True)


def _copy_with_progress(
    response: Any, out: Any, url: str, progress: DownloadProgress | None
) -> None:
    """Copy a download to ``out``, telling ``progress`` the bytes done (of the total, 0 when
    unknown) after each chunk, and once more, finished, at the end."""
    total = int(response.headers.get("Content-Length") or 0)
    done = 0
    while chunk := response.read(1 << 20):
        out.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(url, done, total, False)
    if progress is not None:
        progress(url, done, total, True)


def _install_jena_archive(archive: Path, target: Path, expected: str, rows: int) -> str:
    """Unzip (or take as is, if it is a plain CSV) ``archive`` into ``target``, verified."""
    fd, tmp_name = tempfile.mkstemp(prefix=".unzip-", suffix=".csv", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    members = [
                        m
                        for m in zf.namelist()
                        if m.lower().endswith(".csv") and not m.startswith("__MACOSX")
                    ]
                    if not members:
                        raise DataError(
                            f"the archive {archive} holds no CSV file (expected {JENA_2009_FILE})"
                        )
                    named = [m for m in members if Path(m).name == JENA_2009_FILE]
                    with zf.open((named or members)[0]) as src:
                        shutil.copyfileobj(src, out, length=1 << 20)
            else:
                with open(archive, "rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        digest = _verify_jena_csv(tmp, expected, shown_as=target, rows=rows)
        os.replace(tmp, target)
        _sidecar(target).write_text(f"{digest}  {JENA_2009_FILE}\n")
        return digest
    except zipfile.BadZipFile as exc:
        raise DataError(f"the archive {archive} is not a valid zip file ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _sidecar(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".sha256")


def _verify_jena_csv(
    path: Path, expected: str, shown_as: Path | None = None, rows: int = JENA_2009_ROWS
) -> str:
    """Check the file against a pinned hash, the hash recorded at first use, or its structure.

    Returns the file's sha256. ``shown_as`` is the final name of a file still being installed
    (its hash is recorded by the caller once it is in place).
    """
    shown = shown_as or path
    digest = sha256_file(path)
    if expected:
        if digest != expected:
            raise DataError(
                f"{shown}: sha256 {digest} does not match the expected {expected} "
                "(SEARCH_JENA_SHA256); delete the file to download it again"
            )
        _check_jena_header(path, shown)
        return digest
    sidecar = _sidecar(path)
    recorded = ""
    if shown_as is None and sidecar.is_file():
        words = sidecar.read_text().split()
        recorded = words[0].lower() if words else ""
    if recorded:
        if digest != recorded:
            raise DataError(
                f"{shown}: sha256 {digest} differs from {recorded} recorded in {sidecar} when the "
                "file was first verified; delete both files to download it again"
            )
        return digest
    _check_jena_header(path, shown)
    found = _count_data_rows(path)
    if found != rows:
        raise DataError(
            f"{shown}: has {found} data rows, expected {rows} for {JENA_2009_FILE} "
            "(truncated or a different file); delete it to download it again"
        )
    if shown_as is None:
        sidecar.write_text(f"{digest}  {JENA_2009_FILE}\n")
    return digest


def _check_jena_header(path: Path, shown: Path) -> None:
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    header = [name.strip().strip('"') for name in first.split(",")]
    if header != JENA_2009_HEADER:
        raise DataError(
            f"{shown}: header {preview(header)} is not the jena_climate_2009_2016.csv header "
            f"{preview(JENA_2009_HEADER)}"
        )


def _count_data_rows(path: Path) -> int:
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return lines - 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / "MANIFEST.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the data manifest {path} ({exc}); reinstall search") from None


def embedded_2020(folder: Path) -> tuple[Path, str]:
    """The shipped 2020 file in ``folder`` (the package's data folder) and its sha256, checked
    against the folder's MANIFEST.json."""
    path = folder / JENA_2020_FILE
    if not path.is_file():
        raise DataError(f"the embedded data file {path} is missing; reinstall search")
    entry = _manifest(folder)["files"][JENA_2020_FILE]
    digest = sha256_file(path)
    if digest != entry["sha256_gz"]:
        raise DataError(
            f"the embedded data file {path} is damaged: sha256 {digest}, expected "
            f"{entry['sha256_gz']} (MANIFEST.json); reinstall search"
        )
    return path, digest
