"""Several seeds of one evaluation: the rows merged across seeds, their interval, the verdicts.

:func:`merge_seeds` turns the rows of one run per seed into one row per number of the
matrix: the mean over the seeds that produced it, the 90% Student-t interval of that mean
(:func:`t_interval`: each end a one-sided 95% confidence bound, the bound a one-sided
verdict needs) and a verdict decided on the interval by :data:`INTERVAL_RULE`
(:func:`interval_verdict`), the rule that luck cannot win: a row the harness requires to
succeed (a positive control) must succeed on every seed with its whole interval on the
success side, and any other row (a defended one, or one without a claim) is reported
stopped only when every seed was stopped and its whole interval is on the stopped side.

Rows of different seeds are the same number of the matrix when they agree on
:data:`ROW_KEY` and on their rank among the rows of their run with that key; a row only
some seeds produced keeps their count in ``seeds`` (it is never dropped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy import stats

from secagg.errors import InvalidParameterError
from threat_models.evaluation.rows import Row

__all__ = [
    "CONFIDENCE",
    "INTERVAL_RULE",
    "ROW_KEY",
    "t_interval",
    "interval_verdict",
    "merge_rows",
    "merge_seeds",
]

#: Coverage of the interval every merged row states: 90%, so that each end is a one-sided
#: 95% confidence bound on the mean (a verdict is one-sided: "stopped" needs the upper
#: bound below the threshold, "succeeded" for a control the lower bound above it).
CONFIDENCE = 0.90

#: How a verdict over several seeds is decided (the JSON's ``interval_rule``).
INTERVAL_RULE = (
    "over several seeds a row shows the mean and its 90% Student-t interval, whose ends are "
    "one-sided 95% confidence bounds, and its verdict "
    "is decided on the interval by the rule luck cannot win: a row expected to succeed "
    "(positive controls included) succeeds only when every seed succeeded and the whole "
    "interval is on the success side of its threshold; any other row (defended, or without "
    "a claim) is reported stopped only when every seed was stopped and the whole interval is "
    "on the stopped side, so an interval reaching the threshold reads succeeded; a row whose "
    "verdict is not a threshold on its value (or whose value is not finite) is decided by "
    "its seeds alone: all must succeed for a row expected to succeed, any one suffices for "
    "the others"
)

#: The fields that name a number of the matrix across seeds (with its rank among equals).
ROW_KEY = ("family", "attack", "defense", "setting", "metric", "positive_control")


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The :data:`CONFIDENCE` Student-t interval of the mean of ``values``.

    ``mean -+ t(0.95, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof = 1``); the value itself, twice, when every value is equal (infinities
    included); ``None`` for a single value or when the values are not all finite and not
    all equal.
    """
    if not values:
        raise InvalidParameterError("an interval needs at least one value")
    first = values[0]
    if len(values) < 2:
        return None
    if all(v == first for v in values):
        return (first, first)
    if not all(math.isfinite(v) for v in values):
        return None
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, arr.size - 1)) * float(
        arr.std(ddof=1) / math.sqrt(arr.size)
    )
    return (mean - half, mean + half)


def _success_side(x: float, threshold: float, above: bool) -> bool:
    return x >= threshold if above else x <= threshold


def interval_verdict(
    *,
    succeeded: Sequence[bool],
    expected: bool | None,
    interval: tuple[float, float] | None,
    threshold: float | None,
    threshold_above: bool = True,
) -> bool:
    """The verdict of a row over several seeds, by :data:`INTERVAL_RULE`.

    Args:
        succeeded: the verdict of each seed that produced the row.
        expected: the row's expectation (``True``: it must succeed, as a positive control).
        interval: the interval of the mean value (``None``: not defined).
        threshold: the success criterion on the value (``None``: not a threshold).
        threshold_above: success is ``value >= threshold`` (else ``value <= threshold``).
    """
    if not succeeded:
        raise InvalidParameterError("a verdict needs at least one seed")
    every, some = all(succeeded), any(succeeded)
    if threshold is None or interval is None:
        return every if expected is True else some
    low, high = interval
    if expected is True:
        return every and _success_side(low if threshold_above else high, threshold, threshold_above)
    return some or _success_side(high if threshold_above else low, threshold, threshold_above)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(v == present[0] for v in present):
        return present[0]
    return float(np.mean(np.asarray(present, dtype=np.float64)))


def merge_rows(rows: Sequence[Row]) -> Row:
    """One number of the matrix over the seeds that produced it (one row per seed).

    ``value``, ``baseline``, ``epsilon``, ``noise_multiplier`` and ``accuracy`` are means
    (over the seeds where present); ``seeds`` counts the rows; ``ci_low``, ``ci_high`` are
    :func:`t_interval` of the values (``None`` for one seed); ``succeeded`` follows
    :func:`interval_verdict`. The other fields are the first row's; ``threshold`` is kept
    when every seed states the same one, else ``None`` (the seeds alone decide). A single
    row is returned unchanged.
    """
    if not rows:
        raise InvalidParameterError("nothing to merge")
    first = rows[0]
    if len(rows) == 1:
        return first
    criteria = {(r.threshold, r.threshold_above) for r in rows}
    threshold = first.threshold if len(criteria) == 1 else None
    values = [r.value for r in rows]
    interval = t_interval(values)
    return replace(
        first,
        value=values[0] if interval == (values[0], values[0]) else float(np.mean(values)),
        baseline=_mean([r.baseline for r in rows]),
        epsilon=_mean([r.epsilon for r in rows]),
        noise_multiplier=_mean([r.noise_multiplier for r in rows]),
        accuracy=_mean([r.accuracy for r in rows]),
        threshold=threshold,
        seeds=len(rows),
        ci_low=None if interval is None else interval[0],
        ci_high=None if interval is None else interval[1],
        succeeded=interval_verdict(
            succeeded=[r.succeeded for r in rows],
            expected=first.expected,
            interval=interval,
            threshold=threshold,
            threshold_above=first.threshold_above,
        ),
    )


def merge_seeds(runs: Sequence[Sequence[Row]]) -> tuple[Row, ...]:
    """The rows of one run per seed, merged into one row per number of the matrix.

    Rows match on :data:`ROW_KEY` and on their rank among the rows of their run with the
    same key; the merged rows follow the first seed's order, then any row only later seeds
    produced, in their order (:func:`merge_rows` merges each group).
    """
    groups: dict[tuple[object, ...], list[Row]] = {}
    for rows in runs:
        rank: dict[tuple[object, ...], int] = {}
        for row in rows:
            key = tuple(getattr(row, name) for name in ROW_KEY)
            rank[key] = rank.get(key, -1) + 1
            groups.setdefault((*key, rank[key]), []).append(row)
    return tuple(merge_rows(group) for group in groups.values())
