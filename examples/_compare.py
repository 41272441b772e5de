"""Shared helper of the examples: time a fit, median of a few runs."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(fit: Callable[[], object], repeats: int = 3) -> float:
    """Median wall-clock seconds of ``fit()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
