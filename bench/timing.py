"""Wall-clock timing shared by the benchmark scripts (each passes its own number of repeats)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def wall_times(run: Callable[[], object], repeats: int) -> list[float]:
    """Seconds each of `repeats` calls of `run()` took."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def best_of(run: Callable[[], object], repeats: int) -> float:
    """Best wall time of a few runs (the least disturbed by the machine)."""
    return min(wall_times(run, repeats))


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """The median wall time of `run()` over `repeats` runs (for many fast calls, where the best is luck)."""
    return statistics.median(wall_times(run, repeats))
