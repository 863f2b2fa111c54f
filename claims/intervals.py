"""95% intervals over what varies: training seeds and examples (a hierarchical bootstrap), or examples alone.

Replicate r of a quantity pools the seeds drawn for r (with replacement), each at its own
example resample; the draws depend only on (seeds, replicates), so the MoE side, the dense side
and their contrast use the same seeds and the same example resamples. With few seeds that
bootstrap is too narrow at the seed level (over 3 seeds its percentile interval of a mean covers
~73%, tests/test_intervals.py), so a pooled quantity's interval is widened to the Student t
interval of its seeds' own values (each with its examples' noise) where that is wider. Set statistics (J_stab,
R_t) carry split-half deviations too, pooled the same way, and use the centred percentile
interval widened to the split-half spread where that is wider: it removes the downward shift
that resampling adds at the top-1% boundary and the bootstrap's too-narrow spread for a top-k
overlap (tests/test_intervals.py and tests/test_verdicts.py measure both); other quantities use
the percentile interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import t as student_t

from lpi_core.metrics import bootstrap_interval, centred_percentile_interval

DRAW_SEED = 20_260_108  # the seed of the seed draws and row permutations: fixed, so reports repeat


@dataclass
class Estimate:
    """A quantity of one series (or pooled over seeds): its point, bootstrap replicates, checkpoints used."""

    point: float
    replicates: np.ndarray  # [R]
    steps: list[int] = field(default_factory=list)
    untestable: str | None = None  # why it cannot be tested at this scale, if so
    split_half: np.ndarray | None = None  # [S] split-half deviations of a set statistic
    seed_points: np.ndarray | None = None  # [seeds] each seed's own point (pooled over several seeds)

    @classmethod
    def not_testable(cls, reason: str, steps: list[int], replicates: int) -> "Estimate":
        return cls(float("nan"), np.full(replicates, np.nan), steps, reason)

    def __sub__(self, other: "Estimate") -> "Estimate":
        reason = self.untestable or other.untestable
        steps = sorted(set(self.steps) | set(other.steps))
        halves = None if self.split_half is None or other.split_half is None else self.split_half - other.split_half
        seeds = None if self.seed_points is None or other.seed_points is None else self.seed_points - other.seed_points
        return Estimate(self.point - other.point, self.replicates - other.replicates, steps, reason, halves, seeds)


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
        seeds = np.array([e.point for e in per_seed]) if len(per_seed) > 1 else None
        return Estimate(point, _pooled([e.replicates for e in per_seed]), steps, split_half=halves, seed_points=seeds)


def _pooled(per_seed: list[np.ndarray]) -> np.ndarray:
    """[R]: replicate r is the mean over the seeds drawn for r, each at its own row (see `draws`)."""
    values = np.stack(per_seed)  # [seeds, R]
    chosen, rows = draws(len(per_seed), values.shape[1])
    return values[chosen, rows].mean(1)


def student_t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """mean ± t_{(1+level)/2, n-1} · sd / √n of n ≥ 2 independent values: the interval of their mean
    that keeps its level with few of them."""
    x = np.asarray(values, dtype=float)
    half = float(student_t.ppf((1 + level) / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return (float(x.mean()) - half, float(x.mean()) + half)


def interval(estimate: Estimate, set_statistic: bool) -> tuple[float, float]:
    """The bootstrap interval (module docstring), widened to the t interval of the seeds' own values where wider."""
    if set_statistic:
        low, high = centred_percentile_interval(estimate.point, estimate.replicates, split_half=estimate.split_half)
    else:
        low, high = bootstrap_interval(estimate.replicates)
    seeds = estimate.seed_points
    if seeds is None or not np.isfinite(seeds).all() or not (np.isfinite(low) and np.isfinite(high)):
        return low, high
    t_low, t_high = student_t_interval(seeds)
    return min(low, t_low), max(high, t_high)


def method(set_statistic: bool, seeds: int, replicates: int, splits: int = 0) -> str:
    over = f"{seeds} seeds, then examples (hierarchical)" if seeds > 1 else "examples (one seed)"
    if set_statistic and splits:
        text = f"centred percentile bootstrap, {replicates} resamples over {over}, widened to the spread of {splits} split halves where wider"
    elif set_statistic:
        text = f"centred percentile bootstrap, {replicates} resamples over {over}"
    else:
        text = f"percentile bootstrap, {replicates} resamples over {over}"
    return text + (f"; widened to the t interval of the {seeds} seeds' own values where wider" if seeds > 1 else "")
