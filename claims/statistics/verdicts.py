"""The verdict rule: from a check's 95% interval and its claimed side, never from a point estimate."""

from __future__ import annotations

import math

REPLICATED = "replicated"  # the whole interval lies on the claimed side
NOT_REPLICATED = "not replicated"  # the whole interval lies on the other side
INCONCLUSIVE = "inconclusive"  # the interval straddles (or touches) the threshold
NOT_MEASURED = "not measured"  # the quantity is undefined (NaN: a drop from HIT@10 = 0, no variance, non-finite scores)
NOT_TESTABLE = "not testable at this scale"  # its window holds fewer than 2 usable (post-onset) checkpoints
ALPHA = 0.025  # one-sided: the tail of a 95% interval
VERDICTS = (REPLICATED, NOT_REPLICATED, INCONCLUSIVE, NOT_MEASURED, NOT_TESTABLE)
_SEVERITY = (NOT_REPLICATED, INCONCLUSIVE, NOT_MEASURED, NOT_TESTABLE, REPLICATED)  # a claim takes its checks' first


def verdict(op: str, threshold: float, interval: tuple[float, float], testable: bool = True) -> str:
    """Replicated when the whole interval lies on the claimed side of `threshold` (`op` is ">" or "<"),
    not replicated when it lies wholly on the other side, inconclusive when it straddles."""
    if op not in (">", "<"):
        raise ValueError(f"op must be '>' or '<', not {op!r}")
    if not testable:
        return NOT_TESTABLE
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return NOT_MEASURED
    if low > high:
        raise ValueError(f"an interval runs from low to high, not {interval}")
    above, below = low > threshold, high < threshold
    if above or below:
        return REPLICATED if (above if op == ">" else below) else NOT_REPLICATED
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its checks': replicated only when every check is."""
    if not verdicts:
        raise ValueError("a claim needs at least one check")
    return next(v for v in _SEVERITY if v in verdicts)
