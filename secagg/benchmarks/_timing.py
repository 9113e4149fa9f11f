"""Timing helpers shared by the benchmark suites.

Comparisons are ratios measured in one run: the functions compared are timed
round-robin, so load from other jobs on a shared machine hits all of them alike, and
ratios are taken per round before the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    fns: list[Callable[[], object]],
    repeat: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    warm_up: bool = True,
) -> list[list[float]]:
    """Time ``fns`` round-robin ``repeat`` times; one list of samples per function."""
    if warm_up:
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            samples[i].append(clock() - start)
    return samples


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios ``a[i] / b[i]``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))
