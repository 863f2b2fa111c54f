"""Wall-clock helpers for the reference timings taken beside pytest-benchmark's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """fn's result and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def best_of(fn: Callable[[], Any], rounds: int = 3) -> float:
    """The fastest of `rounds` calls, in seconds."""
    return min(timed(fn)[1] for _ in range(rounds))
