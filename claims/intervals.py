"""95% intervals over what varies: training seeds and examples (a hierarchical bootstrap), or examples alone.

Replicate r of a quantity pools the seeds drawn for r (with replacement), each at its own
example resample; the draws depend only on (seeds, replicates), so the MoE side, the dense side
and their contrast use the same seeds and the same example resamples. Set statistics (J_stab,
R_t) carry split-half deviations too, pooled the same way, and use the centred percentile
interval widened to the split-half spread where that is wider: it removes the downward shift
that resampling adds at the top-1% boundary and the bootstrap's too-narrow spread for a top-k
overlap (tests/test_intervals.py and tests/test_verdicts.py measure both); other quantities use
the percentile interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lpi_core.metrics import centred_percentile_interval, bootstrap_interval

DRAW_SEED = 20_260_108  # the seed of the seed draws and row permutations: fixed, so reports repeat


@dataclass
class Estimate:
    """A quantity of one series (or pooled over seeds): its point, bootstrap replicates, checkpoints used."""

    point: float
    replicates: np.ndarray  # [R]
    steps: list[int] = field(default_factory=list)
    untestable: str | None = None  # why it cannot be tested at this scale, if so
    split_half: np.ndarray | None = None  # [S] split-half deviations of a set statistic

    @classmethod
    def not_testable(cls, reason: str, steps: list[int], replicates: int) -> "Estimate":
        return cls(float("nan"), np.full(replicates, np.nan), steps, reason)

    def __sub__(self, other: "Estimate") -> "Estimate":
        reason = self.untestable or other.untestable
        steps = sorted(set(self.steps) | set(other.steps))
        halves = None if self.split_half is None or other.split_half is None else self.split_half - other.split_half
        return Estimate(self.point - other.point, self.replicates - other.replicates, steps, reason, halves)


def draws(seeds: int, replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """[R, S] seed indices and [R, S] example-resample rows of the hierarchical bootstrap; one seed: rows 0..R-1."""
    if seeds == 1:
        return np.zeros((replicates, 1), dtype=int), np.arange(replicates)[:, None]
    rng = np.random.default_rng(DRAW_SEED)
    chosen = rng.integers(0, seeds, size=(replicates, seeds))
    rows = np.stack([rng.permutation(replicates) for _ in range(seeds)], 1)
    return chosen, rows


def pool(per_seed: list[Estimate]) -> Estimate:
    """The mean over seeds, with hierarchical bootstrap replicates (seeds, then examples)."""
    reasons = [f"seed {i}: {e.untestable}" for i, e in enumerate(per_seed) if e.untestable]
    steps = sorted({s for e in per_seed for s in e.steps})
    replicates = per_seed[0].replicates.shape[0]
    if reasons:
        return Estimate.not_testable("; ".join(reasons), steps, replicates)
    with np.errstate(invalid="ignore"):
        point = float(np.mean([e.point for e in per_seed]))
        halves = None if any(e.split_half is None for e in per_seed) else _pooled([e.split_half for e in per_seed])
        return Estimate(point, _pooled([e.replicates for e in per_seed]), steps, split_half=halves)


def _pooled(per_seed: list[np.ndarray]) -> np.ndarray:
    """[R]: replicate r is the mean over the seeds drawn for r, each at its own row (see `draws`)."""
    values = np.stack(per_seed)  # [seeds, R]
    chosen, rows = draws(len(per_seed), values.shape[1])
    return values[chosen, rows].mean(1)


def interval(estimate: Estimate, set_statistic: bool) -> tuple[float, float]:
    if set_statistic:
        return centred_percentile_interval(estimate.point, estimate.replicates, split_half=estimate.split_half)
    return bootstrap_interval(estimate.replicates)


def method(set_statistic: bool, seeds: int, replicates: int, splits: int = 0) -> str:
    over = f"{seeds} seeds, then examples (hierarchical)" if seeds > 1 else "examples (one seed)"
    if set_statistic and splits:
        return f"centred percentile bootstrap, {replicates} resamples over {over}, widened to the spread of {splits} split halves where wider"
    if set_statistic:
        return f"centred percentile bootstrap, {replicates} resamples over {over}"
    return f"percentile bootstrap, {replicates} resamples over {over}"
