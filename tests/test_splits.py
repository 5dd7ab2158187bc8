"""Blocked splits (every split covers every season), parse_split and the split report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared, prepare
from search.data.sources import Dataset, load_dataset
from search.data.splits import (
    SPLITS,
    BlockedSplit,
    ChronologicalSplit,
    SplitLayout,
    parse_split,
    split_report,
    window_starts,
)
from search.data.windows import make_windows
from search.errors import DataError

CYCLE = ("train", "train", "val", "test")
FORMS = "expected chronological, blocked or blocked:DAYS"


def synthetic(
    n_rows: int,
    n_features: int = 3,
    steps_per_hour: float = 6,
    seed: int = 0,
    distinct: bool = False,
    start: str = "2020-01-01",
) -> Dataset:
    """Like tests/test_windows.py's series; with ``distinct`` the target is the row number."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_rows, n_features)).astype(np.float32) * 5 + 10
    target = np.arange(n_rows, dtype=np.float32) if distinct else values[:, 0].copy()
    if distinct:
        values[:, 0] = target
    step = np.timedelta64(int(3600 / steps_per_hour), "s")
    return Dataset(
        name="synthetic",
        times=np.datetime64(start) + np.arange(n_rows) * step,
        values=values,
        feature_names=[f"f{i}" for i in range(n_features)],
        target=target,
        target_name="f0",
        steps_per_hour=steps_per_hour,
        report={},
    )


def reach_hours(spec: WindowSpec) -> float:
    """What a caller passes as reference_hours: lookback + horizon + (target_steps - 1) hours."""
    return spec.lookback_hours + spec.horizon_hours + (spec.target_steps - 1)


def blocks_of(n_rows: int, block: int) -> list[tuple[int, int, str]]:
    """The blocks computed by hand: (start, end, split)."""
    return [
        (k * block, min((k + 1) * block, n_rows), CYCLE[k % 4]) for k in range(-(-n_rows // block))
    ]


def target_rows(starts: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Every target row of every window, (windows, target_steps)."""
    stride = spec.target_stride if spec.target_steps > 1 else 0
    return starts[:, None] + spec.delay + stride * np.arange(spec.target_steps)


def assert_inside_one_block(
    starts: np.ndarray, spec: WindowSpec, layout: SplitLayout, split: str
) -> None:
    """Every window's whole span (first input .. last target) lies in one block of ``split``."""
    assert starts.dtype == np.int64 and np.all(np.diff(starts) > 0)  # chronological
    bounds = np.array(layout.ranges[split])
    block = np.searchsorted(bounds[:, 0], starts, side="right") - 1
    assert np.all(block >= 0)
    assert np.all(starts >= bounds[block, 0])
    assert np.all(starts + spec.span - 1 < bounds[block, 1])


@pytest.fixture(scope="module")
def jena() -> Dataset:
    return load_dataset("jena-2020")


# ---------------------------------------------------------------------------------------------
# layout


@pytest.mark.parametrize(
    ("days", "steps_per_hour", "n_rows", "block"),
    [(28, 6, 52_704, 4032), (2, 6, 2000, 288), (1.5, 1, 500, 36), (7.5, 6, 20_000, 1080)],
)
def test_blocks_alternate_train_train_val_test_and_cover_all_rows(
    days: float, steps_per_hour: float, n_rows: int, block: int
) -> None:
    policy = BlockedSplit(days)
    layout = policy.layout(n_rows, steps_per_hour)
    assert policy.block_rows(steps_per_hour) == block
    expected = blocks_of(n_rows, block)
    assert n_rows % block  # the last block is partial
    for split in SPLITS:
        assert layout.ranges[split] == [(a, b) for a, b, s in expected if s == split]
    got = sorted((a, b, s) for s in SPLITS for a, b in layout.ranges[s])
    assert got == expected
    assert got[0][0] == 0 and got[-1][1] == n_rows
    assert all(got[i][1] == got[i + 1][0] for i in range(len(got) - 1))  # contiguous
    masks = np.stack([layout.mask(s) for s in SPLITS])
    assert np.all(masks.sum(axis=0) == 1)  # every row in exactly one split
    assert sum(layout.rows(s) for s in SPLITS) == n_rows


def test_names_and_block_rows() -> None:
    assert BlockedSplit().name == "blocked:28"
    assert BlockedSplit(14).name == "blocked:14" and BlockedSplit(14.0).name == "blocked:14"
    assert BlockedSplit(7.5).name == "blocked:7.5"
    assert BlockedSplit(np.int64(3)).name == "blocked:3"  # type: ignore[arg-type]
    assert BlockedSplit(28).block_rows(1) == 672 and BlockedSplit(7.5).block_rows(6) == 1080
    assert ChronologicalSplit().name == "chronological"


def test_series_too_short_for_four_blocks() -> None:
    with pytest.raises(DataError) as excinfo:
        prepare(synthetic(3 * 288, steps_per_hour=6), BlockedSplit(2))
    message = str(excinfo.value)
    assert "864 rows" in message and "288 rows" in message and "3 block(s)" in message
    assert "\n" not in message
    prepare(synthetic(3 * 288 + 1, steps_per_hour=6), BlockedSplit(2))  # a 1-row test block


# ---------------------------------------------------------------------------------------------
# windows


GEOMETRIES = [
    WindowSpec(24, 6, 24),
    WindowSpec(120, 6, 24),
    WindowSpec(3, 1, 1, target_steps=5),
    WindowSpec(12, 2, 6, steps_per_hour=1),
    WindowSpec(48, 4, 24, target_steps=3, steps_per_hour=1),
]


def geometry_id(spec: WindowSpec) -> str:
    return (
        f"{spec.lookback_hours:g}h-rate{spec.sampling_rate}-ahead{spec.horizon_hours:g}h-"
        f"x{spec.target_steps}-{spec.steps_per_hour:g}perh"
    )


@pytest.mark.parametrize("spec", GEOMETRIES, ids=geometry_id)
@pytest.mark.parametrize("with_reference", [False, True])
def test_no_window_crosses_a_block_edge(spec: WindowSpec, with_reference: bool) -> None:
    days = 14 if spec.steps_per_hour == 6 else 10
    n_rows = int(days * 24 * spec.steps_per_hour * 9.5)  # 10 blocks, the last one partial
    reference = reach_hours(spec) + 6 if with_reference else None
    p = prepare(
        synthetic(n_rows, steps_per_hour=spec.steps_per_hour), BlockedSplit(days, reference)
    )
    label = np.empty(n_rows, dtype=object)
    for split in SPLITS:
        label[p.layout.mask(split)] = split
    block_rows = p.split.block_rows(spec.steps_per_hour)  # type: ignore[attr-defined]
    block_id = np.arange(n_rows) // block_rows
    for split in SPLITS:
        starts = window_starts(p, spec, split)
        assert_inside_one_block(starts, spec, p.layout, split)
        rows = starts[:, None] + np.arange(spec.span)  # every row of every window
        assert np.all(block_id[rows] == block_id[rows[:, :1]])  # one block each
        assert np.all(label[rows] == split)  # none straddles two splits
        if split == "train" or reference is None:
            # every window that fits a block, and no other
            expected = sum(max(0, b - a - spec.span + 1) for a, b in p.layout.ranges[split])
            assert len(starts) == expected


def test_windows_deliver_the_rows_they_claim() -> None:
    """Through make_windows on a series whose target (and first feature) is the row number."""
    spec = WindowSpec(6, 2, 3, target_steps=2, steps_per_hour=1)
    p = prepare(synthetic(24 * 40, steps_per_hour=1, distinct=True), BlockedSplit(3, 20))
    for split in SPLITS:
        ds = make_windows(p, spec, split, batch_size=32)
        ys = np.concatenate([ds[i][1] for i in range(len(ds))])
        xs = np.concatenate([ds[i][0] for i in range(len(ds))])
        starts = ds.start_rows()
        np.testing.assert_array_equal(ys, target_rows(starts, spec))
        first_inputs = xs[:, 0, 0] * p.std[0] + p.mean[0]
        np.testing.assert_allclose(first_inputs, starts, atol=1e-3)
        assert_inside_one_block(starts, spec, p.layout, split)


def test_val_and_test_targets_do_not_depend_on_the_lookback(jena: Dataset) -> None:
    short = WindowSpec(24, 6, 24)
    book = WindowSpec(120, 6, 24)
    p = prepare(jena, BlockedSplit(28, reference_hours=reach_hours(book)))
    for split in ("val", "test"):
        a, b = window_starts(p, short, split), window_starts(p, book, split)
        assert len(a) == len(b) > 0 and len(a) < len(window_starts(p, short, "train"))
        assert p.times is not None
        np.testing.assert_array_equal(p.times[a + short.delay], p.times[b + book.delay])
        # the first target of each val/test block lies reference_hours after the block's start
        firsts = a[np.r_[0, np.flatnonzero(np.diff(a) > 1) + 1]] + short.delay
        assert list(firsts) == [start + 144 * 6 for start, _ in p.layout.ranges[split]]
        assert_inside_one_block(b, book, p.layout, split)
    # train keeps every window that fits: the shorter lookback has more of them
    assert len(window_starts(p, short, "train")) > len(window_starts(p, book, "train"))
    # without a reference each trial has its own targets: more for the shorter lookback
    own = prepare(jena, BlockedSplit(28))
    assert len(window_starts(own, short, "val")) > len(window_starts(own, book, "val"))
    # the reference (144 h = 864 rows from first input to target) reaches one sampling step
    # (6 rows) further than the book's span, so even the longest trial loses 6 windows a block
    fixed, free = window_starts(p, book, "val"), window_starts(own, book, "val")
    assert np.isin(fixed, free).all() and len(free) - len(fixed) == 6 * 3


def test_several_target_steps_share_every_target_row() -> None:
    specs = [WindowSpec(lookback, 2, 3, target_steps=4, steps_per_hour=1) for lookback in (4, 24)]
    reference = max(reach_hours(spec) for spec in specs)
    p = prepare(synthetic(24 * 3 * 12, steps_per_hour=1), BlockedSplit(3, reference))
    for split in ("val", "test"):
        rows = [target_rows(window_starts(p, spec, split), spec) for spec in specs]
        np.testing.assert_array_equal(rows[0], rows[1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps_per_hour=st.sampled_from([1, 2, 6]),
    days=st.sampled_from([1, 1.5, 2, 3]),
    n_blocks=st.floats(4.01, 11),
    lookbacks=st.lists(st.integers(1, 12), min_size=2, max_size=2),
    sampling_rate=st.integers(1, 3),
    horizon=st.integers(1, 4),
    target_steps=st.integers(1, 3),
    slack=st.integers(0, 5),
)
def test_blocked_windows_property(
    steps_per_hour: int,
    days: float,
    n_blocks: float,
    lookbacks: list[int],
    sampling_rate: int,
    horizon: int,
    target_steps: int,
    slack: int,
) -> None:
    specs = [
        WindowSpec(
            lookback * sampling_rate / steps_per_hour,
            sampling_rate,
            horizon,
            target_steps,
            steps_per_hour,
        )
        for lookback in lookbacks
    ]
    reference = max(reach_hours(spec) for spec in specs) + slack
    n_rows = int(days * 24 * steps_per_hour * n_blocks)
    policy = BlockedSplit(days, reference)
    layout = policy.layout(n_rows, steps_per_hour)
    targets = {}
    for i, spec in enumerate(specs):
        for split in SPLITS:
            try:
                starts = policy.starts(layout, spec, split)
            except DataError as error:
                assert "\n" not in str(error) and "too short" in str(error)
                starts = np.empty(0, dtype=np.int64)
            if len(starts):
                assert_inside_one_block(starts, spec, layout, split)
            if split != "train":
                targets[i, split] = target_rows(starts, spec)
    for split in ("val", "test"):
        np.testing.assert_array_equal(targets[0, split], targets[1, split])


def test_a_trial_reaching_past_the_reference_is_an_error() -> None:
    p = prepare(synthetic(24 * 30, steps_per_hour=1), BlockedSplit(3, reference_hours=12))
    window_starts(p, WindowSpec(24, 1, 1, steps_per_hour=1), "train")  # no reference in train
    window_starts(p, WindowSpec(11, 1, 1, steps_per_hour=1), "val")
    with pytest.raises(DataError) as excinfo:
        window_starts(p, WindowSpec(24, 1, 1, steps_per_hour=1), "val")
    message = str(excinfo.value)
    assert "reference reach of 12 h = 12 rows" in message and "\n" not in message


def test_blocks_too_short_for_a_long_window() -> None:
    p = prepare(synthetic(24 * 12, steps_per_hour=1), BlockedSplit(1))  # 24-row blocks
    window_starts(p, WindowSpec(12, 1, 12, steps_per_hour=1), "val")  # a 24-row span fits
    with pytest.raises(DataError) as excinfo:
        window_starts(p, WindowSpec(120, 6, 24, steps_per_hour=1), "train")
    message = str(excinfo.value)
    assert "blocks too short" in message and "span of 139 rows" in message
    assert "at most 24 rows" in message and "blocked:1" in message and "\n" not in message
    with pytest.raises(DataError, match="too short"):
        make_windows(p, WindowSpec(12, 1, 13, steps_per_hour=1), "test")
    # a reference longer than a block leaves val without windows although train has some
    q = prepare(synthetic(24 * 12, steps_per_hour=1), BlockedSplit(1, reference_hours=30))
    window_starts(q, WindowSpec(2, 1, 1, steps_per_hour=1), "train")
    with pytest.raises(DataError) as excinfo:
        window_starts(q, WindowSpec(2, 1, 1, steps_per_hour=1), "val")
    assert "reference reach of 30 h = 30 rows" in str(excinfo.value)


# ---------------------------------------------------------------------------------------------
# normalization


@pytest.mark.parametrize("steps_per_hour", [1, 6])
def test_normalization_uses_the_train_blocks_only(steps_per_hour: int) -> None:
    ds = synthetic(24 * steps_per_hour * 30, steps_per_hour=steps_per_hour, seed=3)
    policy = BlockedSplit(2)
    base = prepare(ds, policy)
    block = 48 * steps_per_hour
    train = np.zeros(len(ds), dtype=bool)
    for a, b, split in blocks_of(len(ds), block):
        train[a:b] = split == "train"
    np.testing.assert_array_equal(base.layout.mask("train"), train)
    rows = ds.values[train].astype(np.float64)
    np.testing.assert_allclose(base.mean, rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(base.std, rows.std(axis=0), rtol=1e-12)
    changed = dataclasses.replace(ds, values=ds.values.copy())
    changed.values[~train] = changed.values[~train] * 1000.0 - 7  # val and test only
    other = prepare(changed, policy)
    np.testing.assert_array_equal(other.mean, base.mean)
    np.testing.assert_array_equal(other.std, base.std)
    np.testing.assert_array_equal(other.data[train], base.data[train])
    changed.values[train] += 1.0  # the training blocks do move them
    assert not np.allclose(prepare(changed, policy).mean, base.mean)


# ---------------------------------------------------------------------------------------------
# parse_split


@pytest.mark.parametrize(
    ("text", "name", "days"),
    [
        (None, "chronological", None),
        ("", "chronological", None),
        ("chronological", "chronological", None),
        (" chronological ", "chronological", None),
        ("blocked", "blocked:28", 28.0),
        ("blocked:28", "blocked:28", 28.0),
        ("blocked:14", "blocked:14", 14.0),
        ("blocked:7.5", "blocked:7.5", 7.5),
        ("blocked: 1", "blocked:1", 1.0),
        ("blocked:365", "blocked:365", 365.0),
    ],
)
def test_parse_split_forms(text: str | None, name: str, days: float | None) -> None:
    policy = parse_split(text)
    assert policy.name == name and parse_split(policy.name).name == name
    if days is None:
        assert isinstance(policy, ChronologicalSplit)
        assert isinstance(parse_split(text, reference_hours=150), ChronologicalSplit)
    else:
        assert isinstance(policy, BlockedSplit)
        assert policy.days == days and policy.reference_hours is None
        with_reference = parse_split(text, reference_hours=150)
        assert isinstance(with_reference, BlockedSplit)
        assert with_reference.reference_hours == 150 and with_reference.name == name


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("random", "unknown split 'random'"),
        ("Blocked", "unknown split 'Blocked'"),
        ("blocked:", "must be a number of days"),
        ("blocked:abc", "must be a number of days, got 'abc'"),
        ("blocked:0", "at least 1 day"),
        ("blocked:0.5", "at least 1 day"),
        ("blocked:-7", "at least 1 day"),
        ("blocked:nan", "at least 1 day"),
        ("blocked:inf", "at least 1 day"),
        ("chronological:50", "unknown split"),
    ],
)
def test_parse_split_errors_are_one_line(text: str, fragment: str) -> None:
    with pytest.raises(DataError) as excinfo:
        parse_split(text)
    message = str(excinfo.value)
    assert fragment in message and FORMS in message and "\n" not in message


def test_bad_blocked_arguments() -> None:
    for days in (0.5, 0, float("nan"), float("inf")):
        with pytest.raises(DataError, match="at least 1 day"):
            BlockedSplit(days)
    with pytest.raises(DataError, match="number of days"):
        BlockedSplit("28")  # type: ignore[arg-type]
    for reference in (0, -1, float("nan")):
        with pytest.raises(DataError, match="reference_hours"):
            BlockedSplit(28, reference)
    with pytest.raises(DataError, match="reference_hours"):
        parse_split("blocked", reference_hours=-5)


# ---------------------------------------------------------------------------------------------
# split report


def test_report_of_the_chronological_2020_split_warns_about_its_months(jena: Dataset) -> None:
    report = split_report(prepare(jena))
    json.dumps(report)
    assert report["policy"] == "chronological" and report["rows"] == len(jena) == 52_704
    train, val, test = (report[part] for part in SPLITS)
    assert (train["rows"], val["rows"], test["rows"]) == (26_352, 13_176, 13_176)
    assert train["blocks"] == val["blocks"] == test["blocks"] == 1
    assert train["first"] == "2020-01-01T00:10:00" and test["last"] == "2021-01-01T00:00:00"
    assert train["months"] == [f"2020-{m:02d}" for m in range(1, 7)]
    assert train["partial_months"] == ["2020-07"]  # one day: not coverage
    assert val["months"] == ["2020-07", "2020-08", "2020-09"]
    assert test["months"] == ["2020-10", "2020-11", "2020-12"]
    assert test["partial_months"] == ["2021-01"]
    val_warning, test_warning = report["warnings"]
    assert val_warning.startswith("val covers July, August, September, where train holds")
    assert test_warning.startswith("test covers October, November, December, where train")
    assert all("\n" not in warning for warning in report["warnings"])
    assert all(
        w.endswith(
            "; `--split blocked` (a new study, or --fresh) interleaves train, val "
            "and test through the year"
        )
        for w in report["warnings"]
    )  # the remedy


@pytest.mark.parametrize("days", [7, 14])
def test_report_of_short_blocks_covers_every_month_in_train(jena: Dataset, days: int) -> None:
    report = split_report(prepare(jena, BlockedSplit(days)))
    json.dumps(report)
    assert report["policy"] == f"blocked:{days}" and report["block_rows"] == days * 144
    assert report["train"]["months"] == [f"2020-{m:02d}" for m in range(1, 13)]
    assert report["warnings"] == []


def test_report_of_28_day_blocks_on_one_year(jena: Dataset) -> None:
    """A 112-day cycle on one year leaves March, July and November out of train entirely: the
    report says so (over several years the cycle drifts through the calendar)."""
    p = prepare(jena, BlockedSplit(28))
    report = split_report(p)
    json.dumps(report)
    assert report["block_days"] == 28 and report["reference_hours"] is None
    assert [report[part]["blocks"] for part in SPLITS] == [8, 3, 3]
    assert sum(report[part]["rows"] for part in SPLITS) == len(jena)
    assert report["train"]["months"] == [f"2020-{m:02d}" for m in (1, 2, 4, 5, 6, 8, 9, 10, 12)]
    assert report["val"]["first"] == "2020-02-26T00:10:00"  # block 2 starts on day 56
    assert p.times is not None
    for part in SPLITS:
        (a, _), (_, b) = p.layout.ranges[part][0], p.layout.ranges[part][-1]
        assert report[part]["first"] == str(p.times[a].astype("datetime64[s]"))
        assert report[part]["last"] == str(p.times[b - 1].astype("datetime64[s]"))
    assert [w.split(",")[0] for w in report["warnings"]] == [
        "val covers March",
        "test covers March",
    ]
    assert all("March, July, November, where" in w for w in report["warnings"])
    assert all("shorter blocks (--split blocked:14)" in w for w in report["warnings"])


def test_report_over_several_years_covers_every_month() -> None:
    ds = synthetic(24 * 365 * 3, steps_per_hour=1, start="2014-01-01")
    report = split_report(prepare(ds, BlockedSplit(28)))
    assert report["warnings"] == []
    assert (
        report["train"]["months"][0] == "2014-01"
        and report["test"]["last"] == "2016-12-30T23:00:00"
    )
    for part in SPLITS:  # every part holds every month of the year somewhere
        assert {month[-2:] for month in report[part]["months"]} == {
            f"{m:02d}" for m in range(1, 13)
        }


def test_report_without_times_gives_rows_only() -> None:
    ds = dataclasses.replace(synthetic(24 * 20, steps_per_hour=1), times=None)
    p: Prepared = prepare(ds, BlockedSplit(2))
    report = split_report(p)
    json.dumps(report)
    assert report["warnings"] == [] and "min_month_days" not in report
    assert report["train"] == {"rows": 48 * 6, "blocks": 6}
    assert report["val"] == {"rows": 48 * 2, "blocks": 2}
    assert report["test"] == {"rows": 48 * 2, "blocks": 2}
