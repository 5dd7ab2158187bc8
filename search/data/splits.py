"""Split policies: which rows train, validate and test a model, and which windows each split holds.

A policy turns a series length into a :class:`SplitLayout` (row ranges per split); normalization
statistics come from the layout's training rows only, and :func:`window_starts` asks the policy
which windows belong to a split. Two policies:

* :class:`ChronologicalSplit` (``chronological``, the default): the book's 50/25/25 split. On one
  year of data it trains on winter to summer and validates on summer to autumn.
* :class:`BlockedSplit` (``blocked:DAYS``): contiguous blocks of DAYS days assigned train, train,
  val, test in turn, so every split sees every season. A window belongs to a split only when its
  whole span lies inside one block of it; val and test targets are fixed by a reference reach so
  that every trial of a study is scored on the same target times.

:func:`split_report` (in :mod:`search.data.split_report`, with the layout and policy interface
in :mod:`search.data.split_layout`) summarizes a prepared split (rows, blocks, dates, calendar months) for the
data-quality report and warns when val or test holds months of the year that train does not.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from search.data.geometry import WindowSpec
from search.data.split_layout import EPS, SPLITS, PreparedSeries, SplitLayout, SplitPolicy
from search.data.split_report import MIN_MONTH_DAYS, split_report
from search.errors import DataError

__all__ = [
    "MIN_MONTH_DAYS",
    "SPLITS",
    "BlockedSplit",
    "ChronologicalSplit",
    "SplitLayout",
    "SplitPolicy",
    "parse_split",
    "split_report",
    "window_starts",
]

DEFAULT_SPLIT = "chronological"
DEFAULT_BLOCK_DAYS = 28.0
BLOCK_CYCLE = ("train", "train", "val", "test")
"""Block k of a blocked split belongs to ``BLOCK_CYCLE[k % 4]``."""
_SPLIT_FORMS = "expected chronological, blocked or blocked:DAYS"
FOLDS_MARK = "/folds:"
"""How a cross-validated study's split name carries its folds (``blocked:14/folds:3``)."""


class ChronologicalSplit(SplitPolicy):
    """The book's split: the first 50% of rows train, the next 25% validate, the rest test.

    A window belongs to the split its first row lies in (``timeseries_dataset_from_array``'s
    ``start_index``/``end_index``), so its later rows may reach into the next split, as in the book.
    """

    def __init__(self, train_fraction: float = 0.5, val_fraction: float = 0.25) -> None:
        if not (
            0 < train_fraction < 1 and 0 < val_fraction < 1 and train_fraction + val_fraction < 1
        ):
            raise DataError(
                f"split fractions must be > 0 and leave a test part: train {train_fraction:g}, "
                f"val {val_fraction:g}, test {1 - train_fraction - val_fraction:g}"
            )
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction

    @property
    def name(self) -> str:
        return "chronological"

    def layout(self, n_rows: int, steps_per_hour: float) -> SplitLayout:
        num_train = int(self.train_fraction * n_rows)
        num_val = int(self.val_fraction * n_rows)
        num_test = n_rows - num_train - num_val
        if num_train < 2 or num_val < 1 or num_test < 1:
            raise DataError(
                f"series too short to split: {n_rows} rows give train {num_train}, val {num_val}, "
                f"test {num_test} rows (need at least 2, 1 and 1)"
            )
        return SplitLayout(
            ranges={
                "train": [(0, num_train)],
                "val": [(num_train, num_train + num_val)],
                "test": [(num_train + num_val, n_rows)],
            },
            n_rows=n_rows,
        )

    def starts(self, layout: SplitLayout, spec: WindowSpec, split: str) -> np.ndarray:
        """Mirrors the index arithmetic and argument checks of ``timeseries_dataset_from_array``
        with start/end (0, num_train), (num_train, num_train + num_val), (num_train + num_val,
        None); a split with no complete window is a DataError giving the numbers."""
        n = layout.n_rows
        ((start, end_row),) = layout._ranges(split)
        end: int | None = None if split == "test" else end_row
        length, rate, delay = spec.sequence_length, int(spec.sampling_rate), spec.delay
        data_len = n - delay  # len(data[:-delay])
        geometry = (
            f"lookback {spec.lookback_hours:g} h (sequence_length {length} x sampling rate {rate}) "
            f"+ horizon {spec.horizon_hours:g} h = a span of {spec.span} rows"
        )
        stop = data_len if end is None else end
        last_row = (n if end is None else end) - 1
        if (
            data_len <= 0
            or rate >= data_len
            or start >= data_len
            or stop >= data_len + (end is None)
        ):
            # Keras: start_index and end_index must be < len(data[:-delay]), sampling_rate too.
            raise DataError(
                f"series too short for {geometry}: the {split} split covers rows "
                f"{start}..{last_row} of {n}, and each window's target lies {delay} rows after "
                f"the window's first row (only rows before {max(data_len, 0)} can start one), so "
                "it has no complete window; use a shorter lookback/horizon or more data"
            )
        num = stop - start - (length - 1) * rate
        num = min(num, data_len)
        if spec.target_steps > 1:
            num = min(num, n - (spec.span - 1) - start)
        if num <= 0:
            rows = last_row - start + 1
            inputs = (length - 1) * rate + 1
            if end is None:  # the test split: data[:-delay] keeps the last rows out of inputs
                need = inputs + delay
                why = (
                    f"the book's window arithmetic (Keras' timeseries_dataset_from_array on the "
                    f"series without its last {delay} rows, the delay from a window's first input "
                    f"to its target) needs a window's {inputs} input rows plus that delay of "
                    f"{delay} rows inside the split, {need} rows"
                )
            else:
                need = inputs
                why = f"a window's first input must lie in the split, {need} rows before its end"
            if spec.target_steps > 1 and need < spec.span:
                need = spec.span
                why += f" (its {spec.target_steps} targets: {need} rows)"
            enough = self._rows_for(layout, spec, split)
            raise DataError(
                f"series too short for {geometry}: the {split} split has {rows} rows (rows "
                f"{start}..{last_row} of {n}), which hold no complete window: {why}, "
                f"{need - rows} more than it has; use a shorter lookback/horizon or more data "
                f"({enough:,} rows would do)"
            )
        return np.arange(start, start + num, dtype=np.int64)

    def _count(self, n_rows: int, spec: WindowSpec, split: str) -> int:
        """How many windows ``split`` holds in a series of ``n_rows`` rows (<= 0: none)."""
        try:
            layout = self.layout(n_rows, spec.steps_per_hour)
        except DataError:
            return 0
        ((start, end_row),) = layout._ranges(split)
        length, rate, delay = spec.sequence_length, int(spec.sampling_rate), spec.delay
        data_len = n_rows - delay
        stop = data_len if split == "test" else end_row
        if data_len <= 0 or rate >= data_len or start >= data_len:
            return 0
        if stop >= data_len + (split == "test"):
            return 0
        num = min(stop - start - (length - 1) * rate, data_len)
        if spec.target_steps > 1:
            num = min(num, n_rows - (spec.span - 1) - start)
        return num

    def _rows_for(self, layout: SplitLayout, spec: WindowSpec, split: str) -> int:
        """The fewest rows of a series whose ``split`` holds a complete window (this policy)."""
        low, high = layout.n_rows, max(layout.n_rows, 2)
        while self._count(high, spec, split) <= 0:
            low, high = high, high * 2
        while high - low > 1:  # _count(low) <= 0 < _count(high)
            middle = (low + high) // 2
            if self._count(middle, spec, split) > 0:
                high = middle
            else:
                low = middle
        return high


class BlockedSplit(SplitPolicy):
    """Contiguous blocks of ``days`` days assigned train, train, val, test in turn.

    Block k holds rows ``[k*B, min((k+1)*B, n))`` with ``B = round(days * 24 * steps_per_hour)``
    (the last block may be partial) and belongs to ``("train", "train", "val", "test")[k % 4]``,
    so every split covers every season of a long enough record. Each block is its own range of
    the layout (two neighbouring train blocks stay two ranges).

    A window (rows ``s`` to ``s + span - 1``: its inputs and all its targets) belongs to a split
    only when it lies inside one block of that split; no window straddles two blocks, so none
    straddles two splits. Train blocks hold every such window. Val and test blocks hold, with a
    reference reach of ``R = round(reference_hours * steps_per_hour)`` rows, exactly the windows
    whose last target row lies in ``[block_start + R, block_end - 1]`` (with one target step:
    whose target does): the rows a window of the reference reach can predict without leaving
    the block (its first input row, ``R`` rows before its last target, lies in the block). The
    set depends on the block and ``R`` only, so every trial of a study (whatever its lookback)
    is scored on the same target times; a trial reaching further than ``R`` rows is a DataError.
    ``reference_hours`` is the study's longest reach: its longest lookback + horizon +
    (target_steps - 1) hours. Without it each trial uses its own span (val and test then hold
    every window that fits a block, like train).
    """

    def __init__(
        self,
        days: float = DEFAULT_BLOCK_DAYS,
        reference_hours: float | None = None,
        folds: int | None = None,
    ) -> None:
        if isinstance(days, bool) or not isinstance(days, numbers.Real):
            raise DataError(f"block length must be a number of days, got {days!r}")
        if not math.isfinite(days) or days < 1:
            raise DataError(f"block length must be at least 1 day, got {days:g}")
        if reference_hours is not None and (
            isinstance(reference_hours, bool)
            or not isinstance(reference_hours, numbers.Real)
            or not math.isfinite(reference_hours)
            or reference_hours <= 0
        ):
            raise DataError(
                f"reference_hours must be a number of hours > 0, got {reference_hours!r}"
            )
        if folds is not None and (
            isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2
        ):
            raise DataError(f"--folds must be a whole number >= 2, got {folds!r}")
        self.days: float = float(days)
        self.reference_hours: float | None = (
            None if reference_hours is None else float(reference_hours)
        )
        self.folds: int | None = None if folds is None else int(folds)

    @property
    def name(self) -> str:
        """``blocked:DAYS``, or ``blocked:DAYS/folds:K`` for a cross-validated study (a form an
        install that does not know folds refuses, rather than continuing the study without)."""
        base = f"blocked:{self.days:g}"
        return base if self.folds is None else f"{base}{FOLDS_MARK}{self.folds}"

    def block_rows(self, steps_per_hour: float) -> int:
        """Rows per block on a grid of ``steps_per_hour`` rows per hour."""
        rows = round(self.days * 24 * steps_per_hour)
        if rows < 1:
            raise DataError(
                f"blocks of {self.days:g} days hold no whole row at {steps_per_hour:g} rows per "
                "hour; use longer blocks"
            )
        return int(rows)

    def reference_rows(self, steps_per_hour: float) -> int | None:
        """The reference reach in rows (None without ``reference_hours``)."""
        if self.reference_hours is None:
            return None
        return int(round(self.reference_hours * steps_per_hour))

    def describe(self, steps_per_hour: float) -> dict[str, Any]:
        settings = {
            "policy": self.name,
            "block_days": self.days,
            "block_rows": self.block_rows(steps_per_hour),
            "reference_hours": self.reference_hours,
        }
        if self.folds is not None:
            settings["folds"] = self.folds
        return settings

    def fold_layouts(self, layout: SplitLayout) -> list[SplitLayout]:
        """The K cross-validation layouts of a blocked layout: the non-test blocks, in
        chronological order, are assigned to folds in rotation (block i to fold ``i % K``);
        fold f validates on its own blocks and trains on every other non-test block; the test
        blocks stay test in every fold, so no fold ever trains or validates on a test row."""
        if not self.folds:
            return []
        nontest = sorted(layout.ranges["train"] + layout.ranges["val"])
        if len(nontest) < self.folds:
            raise DataError(
                f"--folds {self.folds} needs at least {self.folds} non-test blocks, and the "
                f"{self.name} split of {layout.n_rows} rows has {len(nontest)}; use fewer folds, "
                "shorter blocks (blocked:DAYS) or more data"
            )
        layouts = []
        for fold in range(self.folds):
            val = [block for i, block in enumerate(nontest) if i % self.folds == fold]
            train = [block for i, block in enumerate(nontest) if i % self.folds != fold]
            ranges = {"train": train, "val": val, "test": list(layout.ranges["test"])}
            layouts.append(SplitLayout(ranges=ranges, n_rows=layout.n_rows))
        return layouts

    def layout(self, n_rows: int, steps_per_hour: float) -> SplitLayout:
        block = self.block_rows(steps_per_hour)
        n_blocks = -(-n_rows // block) if n_rows > 0 else 0
        if n_blocks < len(BLOCK_CYCLE):
            raise DataError(
                f"series too short to split into blocks: {n_rows} rows in blocks of "
                f"{self.days:g} days = {block} rows give {n_blocks} block(s), and the {self.name} "
                f"split needs at least {len(BLOCK_CYCLE)} ({', '.join(BLOCK_CYCLE)}); use shorter "
                "blocks (blocked:DAYS) or more data"
            )
        ranges: dict[str, list[tuple[int, int]]] = {split: [] for split in SPLITS}
        for k in range(n_blocks):
            ranges[BLOCK_CYCLE[k % len(BLOCK_CYCLE)]].append(
                (k * block, min((k + 1) * block, n_rows))
            )
        return SplitLayout(ranges=ranges, n_rows=n_rows)

    def starts(self, layout: SplitLayout, spec: WindowSpec, split: str) -> np.ndarray:
        """Windows inside one block of the split: train (or no reference) every window that fits,
        val/test those whose last target lies ``R`` rows or more after the block's first row."""
        blocks = layout._ranges(split)
        span = spec.span
        reach = span - 1  # rows from a window's first input to its last target
        geometry = (
            f"lookback {spec.lookback_hours:g} h (sequence_length {spec.sequence_length} x "
            f"sampling rate {int(spec.sampling_rate)}) + horizon {spec.horizon_hours:g} h"
            + (f" + {spec.target_steps - 1} more hourly targets" if spec.target_steps > 1 else "")
            + f" = a span of {span} rows"
        )
        reference = None if split == "train" else self.reference_rows(spec.steps_per_hour)
        if reference is not None and reach > reference:
            raise DataError(
                f"{geometry} reaches {reach} rows from its first input to its last target, "
                f"beyond the reference reach of {self.reference_hours:g} h = {reference} rows that "
                f"fixes the {split} targets of the {self.name} split; pass the study's longest "
                "lookback + horizon + (target_steps - 1) hours as reference_hours"
            )
        offset = reach if reference is None else reference  # first last-target row - block start
        pieces = []
        for start, end in blocks:
            first = start + offset - reach  # first input row of the block's first window
            last = end - span  # first input row of a window ending on the block's last row
            if last >= first:
                pieces.append(np.arange(first, last + 1, dtype=np.int64))
        if not pieces:
            longest = max(end - start for start, end in blocks)
            need = offset + 1
            reference_text = (
                ""
                if reference is None
                else f" (at the reference reach of {self.reference_hours:g} h = {reference} rows)"
            )
            raise DataError(
                f"blocks too short for {geometry}: the {split} split's {len(blocks)} block(s) of "
                f"{self.name} (at most {longest} rows each) hold no complete window, which needs "
                f"{need} rows inside one block{reference_text}; use longer blocks "
                "(blocked:DAYS) or a shorter lookback/horizon"
            )
        return np.concatenate(pieces)


def parse_split(
    text: str | None, reference_hours: float | None = None, folds: int | None = None
) -> SplitPolicy:
    """The policy a ``--split`` value names: ``chronological`` (the default, also for None),
    ``blocked`` (blocks of 28 days) or ``blocked:DAYS`` (DAYS a number >= 1), optionally with
    ``/folds:K`` (how a cross-validated study records its split; ``folds`` gives K too, and
    must agree). ``reference_hours`` (the study's longest lookback + horizon + (target_steps -
    1) hours) fixes the val/test targets of a blocked split; the chronological split ignores
    it."""
    text = (text or DEFAULT_SPLIT).strip()
    if FOLDS_MARK in text:
        text, _, count = text.partition(FOLDS_MARK)
        try:
            recorded = int(count)
        except ValueError:
            raise DataError(
                f"unknown split {text + FOLDS_MARK + count!r}: K of {FOLDS_MARK}K must be a "
                f"whole number, got {count!r}; {_SPLIT_FORMS}"
            ) from None
        if folds is not None and folds != recorded:
            raise DataError(f"split {text}{FOLDS_MARK}{recorded} has {recorded} folds, not {folds}")
        folds = recorded
    if folds is not None and not text.startswith("blocked"):
        raise DataError(
            f"--folds needs a blocked split (--split blocked or blocked:DAYS), not {text!r}: "
            "folds rotate the blocks that are not test"
        )
    if text == "chronological":
        return ChronologicalSplit()
    if text == "blocked":
        return BlockedSplit(DEFAULT_BLOCK_DAYS, reference_hours, folds)
    if text.startswith("blocked:"):
        value = text.partition(":")[2].strip()
        try:
            days = float(value)
        except ValueError:
            raise DataError(
                f"unknown split {text!r}: DAYS must be a number of days, got {value!r}; "
                f"{_SPLIT_FORMS}"
            ) from None
        if not math.isfinite(days) or days < 1:
            raise DataError(
                f"unknown split {text!r}: DAYS must be at least 1 day, got {value!r}; "
                f"{_SPLIT_FORMS}"
            )
        return BlockedSplit(days, reference_hours, folds)
    raise DataError(f"unknown split {text!r}; {_SPLIT_FORMS}")


def window_starts(prepared: PreparedSeries, spec: WindowSpec, split: str) -> np.ndarray:
    """First input row of every window of a split of a prepared series, in chronological order."""
    spec.validate()
    if spec.steps_per_hour and abs(spec.steps_per_hour - prepared.steps_per_hour) > EPS:
        raise DataError(
            f"window spec assumes {spec.steps_per_hour:g} rows per hour but the series has "
            f"{prepared.steps_per_hour:g}; build the spec with steps_per_hour="
            f"{prepared.steps_per_hour:g}"
        )
    return prepared.split.starts(prepared.layout, spec, split)
