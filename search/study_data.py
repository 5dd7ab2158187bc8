"""A study's data before its first trial: loaded and described, both references measured on
the book configuration's windows, and the longest window the space can sample checked against
every split."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from search.data.stored_references import LinearCache
from search.errors import DataError
from search.record import StudyRecord, load_study_data

if TYPE_CHECKING:
    from search.data.dataset import Dataset
    from search.data.prepare import Prepared
    from search.spaces import Space

__all__ = ["load_and_check"]


def load_and_check(
    record: StudyRecord, space: Space, new: bool, say: Callable[[str], None]
) -> tuple[Dataset, Prepared, LinearCache, dict[str, Any]]:
    """The study's dataset and prepared series, the linear-model cache the trials share and the
    references. A window the data cannot hold refuses a ``new`` study; an older one goes on."""
    say(f"loading data {record.data} ...")
    dataset, prepared = load_study_data(record, space)
    say(
        f"data: {len(dataset.values):,} rows x {len(dataset.feature_names)} features, "
        f"train/val/test {prepared.num_train:,}/{prepared.num_val:,}/{prepared.num_test:,} "
        f"({prepared.split.name} split)"
    )
    linear = LinearCache()  # shared with the trials: the book geometry is fitted once
    references = book_references(space, prepared, linear)  # a window that cannot fit fails here
    problem = widest_window_problem(space, prepared)
    if problem is not None:
        if new:
            raise DataError(problem)  # a new study: refused before anything is stored
        say(f"note: {problem}")  # a study begun before this check goes on as it was
    for warning in references["split"].get("warnings", []):
        say(f"note: {warning}")
    return dataset, prepared, linear, references


def book_references(space: Space, prepared: Prepared, cache: LinearCache) -> dict[str, Any]:
    """Both references on the book configuration's val windows, and the split report."""
    from search.data.references import baseline_mae
    from search.data.split_report import split_report

    book = space.resolve(space.book_params(), book=True)
    book_spec = book.window(prepared.steps_per_hour)
    linear = cache.get(prepared, book_spec)
    return {
        "baseline_val_mae": baseline_mae(prepared, book_spec, "val"),
        "linear_val_mae": linear.val_mae,
        "linear_penalty": linear.penalty,
        "split": split_report(prepared),
    }


def widest_window_problem(space: Space, prepared: Prepared) -> str | None:
    """Why some split holds no window of the longest lookback the space can sample (a trial
    left unscorable, or a best model that cannot be evaluated on the test split), or None."""
    from search.data.geometry import WindowSpec
    from search.data.splits import SPLITS, window_starts

    for hours, rate in space.widest_windows():
        spec = WindowSpec(
            hours,
            rate,
            space.fixed.horizon_hours,
            space.fixed.target_steps,
            prepared.steps_per_hour,
        )
        for split in SPLITS:
            try:
                window_starts(prepared, spec, split)
            except DataError as error:
                return (
                    f"space {space.name!r} can sample lookback_hours {hours:g} at sampling_rate "
                    f"{rate}, which this data cannot window: {error}"
                )
    return None
