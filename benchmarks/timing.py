"""The one timer the benchmarks share (each runs as `python benchmarks/NAME.py`, so this folder is on sys.path)."""

from __future__ import annotations

import statistics
import time


def timed(fn, runs: int) -> tuple[float, object]:
    """(median seconds of `runs` calls of fn, the last call's result)."""
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def median_time(fn, runs: int) -> float:
    return timed(fn, runs)[0]
