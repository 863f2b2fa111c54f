"""95% intervals over what varies: training seeds and examples (a crossed bootstrap), or examples alone.

Seeds and examples are crossed, not nested: every seed of both models is scored on the same
examples. Replicate r of a quantity therefore pools the seeds drawn for r (with replacement), all
at one example resample, row r, shared by every seed and both models; the draws depend only on
(seeds, replicates), so the MoE side, the dense side and their contrast use the same seeds and
the same example resamples. With few seeds that bootstrap is too narrow at the seed level (over 3
seeds its percentile interval of a mean covers ~73%, tests/test_intervals.py), so a pooled
quantity's interval is widened to a Student t interval where that is wider: its variance is the
seeds' own spread over n plus the example component of the seeds' mean (the variance over
resample rows of the mean over all seeds at that row), which the seeds' spread cannot show
because every seed saw the same examples. Set statistics (J_stab,
R_t) carry split-half deviations too, pooled the same way, and use the centred percentile
interval widened to the split-half spread where that is wider: it removes the downward shift
that resampling adds at the top-1% boundary and the bootstrap's too-narrow spread for a top-k
overlap (tests/test_intervals.py and tests/test_verdicts.py measure both); other quantities use
the percentile interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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
    example_means: np.ndarray | None = None  # [R] the mean over all seeds at each example resample row
    seeds_left_out: str | None = None  # the seeds that could not be tested and why (pooled over the others)

    @classmethod
    def not_testable(cls, reason: str, steps: list[int], replicates: int) -> Estimate:
        return cls(float("nan"), np.full(replicates, np.nan), steps, reason)

    def __sub__(self, other: Estimate) -> Estimate:
        reason = self.untestable or other.untestable
        steps = sorted(set(self.steps) | set(other.steps))
        halves = None if self.split_half is None or other.split_half is None else self.split_half - other.split_half
        seeds = None if self.seed_points is None or other.seed_points is None else self.seed_points - other.seed_points
        rows = (
            None
            if self.example_means is None or other.example_means is None
            else self.example_means - other.example_means
        )
        return Estimate(
            self.point - other.point, self.replicates - other.replicates, steps, reason, halves, seeds, rows
        )

    def shifted(self, offset: float) -> Estimate:
        """The same estimate plus a constant (a fixed null subtracted, for one)."""
        return replace(
            self,
            point=self.point + offset,
            replicates=self.replicates + offset,
            seed_points=None if self.seed_points is None else self.seed_points + offset,
            example_means=None if self.example_means is None else self.example_means + offset,
        )

    def scaled(self, factor: float) -> Estimate:
        """The same estimate times a positive constant (divided by a fixed ceiling, for one)."""
        return replace(
            self,
            point=self.point * factor,
            replicates=self.replicates * factor,
            split_half=None if self.split_half is None else self.split_half * factor,
            seed_points=None if self.seed_points is None else self.seed_points * factor,
            example_means=None if self.example_means is None else self.example_means * factor,
        )


def draws(seeds: int, replicates: int) -> tuple[np.ndarray, np.ndarray]:
    """[R, S] seed indices and [R, S] example-resample rows of the crossed bootstrap: replicate r
    draws S seeds with replacement and scores every one of them at row r (the examples are shared
    by all seeds); one seed: rows 0..R-1."""
    rows = np.repeat(np.arange(replicates)[:, None], seeds, 1)
    if seeds == 1:
        return np.zeros((replicates, 1), dtype=int), rows
    chosen = np.random.default_rng(DRAW_SEED).integers(0, seeds, size=(replicates, seeds))
    return chosen, rows


def pool(per_seed: list[Estimate]) -> Estimate:
    """The mean over the seeds that can be tested, with crossed bootstrap replicates (seeds drawn,
    examples shared); not testable when fewer than two of several seeds (or the one seed) can be."""
    reasons = [f"seed {i}: {e.untestable}" for i, e in enumerate(per_seed) if e.untestable]
    steps = sorted({s for e in per_seed for s in e.steps})
    replicates = per_seed[0].replicates.shape[0]
    testable = [e for e in per_seed if not e.untestable]
    if len(testable) < min(2, len(per_seed)):
        return Estimate.not_testable("; ".join(reasons), steps, replicates)
    with np.errstate(invalid="ignore"):
        point = float(np.mean([e.point for e in testable]))
        halves = None if any(e.split_half is None for e in testable) else _pooled([e.split_half for e in testable])
        several = len(testable) > 1
        return Estimate(
            point,
            _pooled([e.replicates for e in testable]),
            steps,
            split_half=halves,
            seed_points=np.array([e.point for e in testable]) if several else None,
            example_means=np.mean([e.replicates for e in testable], 0) if several else None,
            seeds_left_out=f"{len(testable)} of {len(per_seed)} seeds tested ({'; '.join(reasons)})"
            if reasons
            else None,
        )


def _pooled(per_seed: list[np.ndarray]) -> np.ndarray:
    """[R]: replicate r is the mean over the seeds drawn for r, all at row r (see `draws`)."""
    values = np.stack(per_seed)  # [seeds, R]
    chosen, rows = draws(len(per_seed), values.shape[1])
    return values[chosen, rows].mean(1)


def student_t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """mean ± t_{(1+level)/2, n-1} · sd / √n of n ≥ 2 independent values: the interval of their mean
    that keeps its level with few of them."""
    x = np.asarray(values, dtype=float)
    half = float(student_t.ppf((1 + level) / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return (float(x.mean()) - half, float(x.mean()) + half)


UNBOUNDED = (-math.inf, math.inf)
_INSIDE = 1 - 1e-9  # how close to a bound a transformed value may come


@dataclass(frozen=True)
class RangeScale:
    """A scale on which a quantity with range `limits` is unbounded, for intervals that stay inside the
    range: z = atanh(u) with u the value mapped onto (-1, 1) for a bounded range (Fisher's z for a
    correlation, half the logit for a share), log(x - low) or -log(high - x) for a half-bounded one,
    z = x for none. `to_z` and `from_z` are each other's inverse and increase."""

    limits: tuple[float, float] = UNBOUNDED

    def to_z(self, x):
        low, high = self.limits
        x = np.asarray(x, dtype=float)
        if math.isfinite(low) and math.isfinite(high):
            return np.arctanh(np.clip(2 * (x - low) / (high - low) - 1, -_INSIDE, _INSIDE))
        if math.isfinite(low):
            return np.log(np.maximum(x - low, 1e-300))
        if math.isfinite(high):
            return -np.log(np.maximum(high - x, 1e-300))
        return x

    def from_z(self, z):
        low, high = self.limits
        z = np.asarray(z, dtype=float)
        if math.isfinite(low) and math.isfinite(high):
            return low + (np.tanh(z) + 1) * (high - low) / 2
        if math.isfinite(low):
            return low + np.exp(z)
        if math.isfinite(high):
            return high - np.exp(-z)
        return z

    def slope(self, x: float) -> float:
        """dz/dx at x (the delta method carries a spread in x over to z)."""
        step = 1e-6 * max(1.0, abs(x))
        return float((self.to_z(x + step) - self.to_z(x - step)) / (2 * step))


def _scale_for(limits: tuple[float, float], *values: float) -> RangeScale:
    """The range's scale where every value lies strictly inside it, else the identity (no transform)."""
    low, high = limits
    inside = all(np.isfinite(v) and low < v < high for v in values)
    return RangeScale(limits if inside else UNBOUNDED)


def bootstrap_part(
    estimate: Estimate, set_statistic: bool, level: float = 0.95, limits: tuple[float, float] = UNBOUNDED
) -> tuple[float, float]:
    """The bootstrap interval alone (module docstring), before the t widening. The centred one is
    centred and widened on the range's scale (`RangeScale`), so it stays inside `limits`; a
    percentile interval of replicates that lie in the range already does."""
    if not set_statistic:
        return bootstrap_interval(estimate.replicates, level)
    scale = _scale_for(limits, estimate.point)
    halves = None if estimate.split_half is None else np.asarray(estimate.split_half) * scale.slope(estimate.point)
    low, high = centred_percentile_interval(
        float(scale.to_z(estimate.point)), scale.to_z(estimate.replicates), level, split_half=halves
    )
    if not (np.isfinite(low) and np.isfinite(high)):
        return low, high
    return float(scale.from_z(low)), float(scale.from_z(high))


def seed_part(
    estimate: Estimate, level: float = 0.95, limits: tuple[float, float] = UNBOUNDED
) -> tuple[float, float] | None:
    """The t interval over seeds, on the range's scale: z(mean) ± t_{(1+level)/2, df} · √(sd(z(seeds))² / n
    + var(z(example means))), back on the quantity's (None: under 2 seeds). The second term is the
    example component of the seeds' mean: every seed saw the same examples, so their own spread
    leaves it out. df = n - 1 (`seed_variance`). Centred on the z of the seeds' mean, not on their
    mean z, it keeps to the mean that the point estimates (tests/test_intervals.py)."""
    seeds = estimate.seed_points
    if seeds is None or len(seeds) < 2 or not np.isfinite(seeds).all():
        return None
    scale = _scale_for(limits, *seeds)
    centre = float(scale.to_z(float(np.mean(seeds))))
    variance, df = seed_variance(estimate, scale)
    half = float(student_t.ppf((1 + level) / 2, df)) * math.sqrt(variance)
    return float(scale.from_z(centre - half)), float(scale.from_z(centre + half))


def seed_variance(estimate: Estimate, scale: RangeScale) -> tuple[float, float]:
    """The variance of the seeds' mean on `scale` (their spread / n plus the example component) and
    the degrees of freedom of its t quantile: n - 1, the seeds' (conservative where the examples'
    part dominates; Welch–Satterthwaite's would be narrower, and measured below 93% coverage on
    draws whose example noise is each seed's own, tests/test_intervals.py)."""
    z = scale.to_z(estimate.seed_points)
    own = float(z.var(ddof=1)) / len(z)
    rows = estimate.example_means
    finite = np.zeros(0) if rows is None else rows[np.isfinite(rows)]
    shared = float(scale.to_z(finite).var(ddof=1)) if finite.size > 1 else 0.0
    return own + shared, len(z) - 1


def interval(
    estimate: Estimate, set_statistic: bool, level: float = 0.95, limits: tuple[float, float] = UNBOUNDED
) -> tuple[float, float]:
    """The bootstrap interval (module docstring), widened to the t interval of the seeds' own values
    where wider; inside `limits`, the range of the quantity, where its values lie inside it."""
    low, high = bootstrap_part(estimate, set_statistic, level, limits)
    seeds = seed_part(estimate, level, limits)
    if seeds is None or not (np.isfinite(low) and np.isfinite(high)):
        return low, high
    return min(low, seeds[0]), max(high, seeds[1])


P_FLOOR = 1e-12  # a p-value below this is reported as this (beyond R replicates the tail is normal: metrics.py)


def one_sided_p(
    estimate: Estimate, set_statistic: bool, op: str, threshold: float, limits: tuple[float, float] = UNBOUNDED
) -> float | None:
    """The p-value the verdict rule implies for the claimed side `op` of `threshold`: the smallest α
    at which the (1 - 2α) interval lies wholly on that side (so a check is replicated at 95% exactly
    when p < 0.025); 1.0 where no interval does, None where the quantity is undefined. Beyond what
    the resamples resolve (fewer than 5 in a tail) the bootstrap part's tail is normal
    (`bootstrap_interval`), so p is not floored at 1 / resamples."""
    if estimate.untestable or not np.isfinite(estimate.point):
        return None

    def on_side(alpha: float) -> bool:
        low, high = interval(estimate, set_statistic, 1 - 2 * alpha, limits)
        return low > threshold if op == ">" else high < threshold

    floor, ceiling = P_FLOOR, 0.4999
    if not on_side(ceiling):
        return 1.0
    if on_side(floor):
        return floor
    for _ in range(40):  # on_side is False at `floor`, True at `ceiling`, and grows with α (intervals nest)
        middle = (floor + ceiling) / 2
        floor, ceiling = (floor, middle) if on_side(middle) else (middle, ceiling)
    return ceiling


SEEDS_LIMIT = 100
POWER = 0.8


def seeds_needed(
    estimate: Estimate,
    set_statistic: bool,
    threshold: float,
    limits: tuple[float, float] = UNBOUNDED,
    limit: int = SEEDS_LIMIT,
    alpha: float = 0.025,
) -> int | str | None:
    """How many seeds would decide this check with 80% power at one-sided level `alpha` (the caller
    passes Holm's first step, 2.5% over the family) if the effect were the measured point: the fewest
    n at which, on the range's scale (`RangeScale`), the distance from the point to `threshold` is at
    least (t_{1-alpha, n-1} + t_{0.80, n-1}) standard errors. The standard error at
    n seeds has a part that shrinks with n (the seeds' spread, and the bootstrap part's seed share,
    as √(seeds / n)) and one that does not (the example component shared by every seed: more seeds
    do not average it away). "> limit" where no n up to `limit` gets there, "not by seeds" where the
    examples' component alone is too wide, "no effect measurable" where the point sits on the
    threshold; None with fewer than 2 seeds or an undefined quantity (no seed spread to scale). The
    point is the measured effect, itself uncertain (and, among many checks, selected): the count
    is a planning figure, not a promise."""
    seeds = estimate.seed_points
    if (
        estimate.untestable
        or seeds is None
        or len(seeds) < 2
        or not np.isfinite(seeds).all()
        or not np.isfinite(estimate.point)
    ):
        return None
    if estimate.point == threshold:
        return "no effect measurable"
    low, high = bootstrap_part(estimate, set_statistic, limits=limits)
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    scale = _scale_for(limits, estimate.point, threshold, low, high, *seeds)
    point, low, high = (float(scale.to_z(v)) for v in (estimate.point, low, high))
    gap = abs(point - float(scale.to_z(threshold)))
    towards = max(0.0, point - low if point > float(scale.to_z(threshold)) else high - point)
    z975 = float(student_t.ppf(0.975, 10**6))
    boot_se = towards / z975  # the bootstrap part's standard error now (its interval is a 95% one)
    level = float(student_t.ppf(1 - alpha, 10**6))
    rows = estimate.example_means
    shared = float(scale.to_z(rows[np.isfinite(rows)]).var(ddof=1)) if rows is not None and rows.size > 1 else 0.0
    spread, now = float(np.var(scale.to_z(seeds), ddof=1)), len(seeds)
    if (level + float(student_t.ppf(POWER, 10**6))) * math.sqrt(shared) >= gap:
        return "not by seeds"
    for n in range(2, limit + 1):
        factor = float(student_t.ppf(1 - alpha, n - 1) + student_t.ppf(POWER, n - 1))
        seed_se = math.sqrt(spread / n + shared)
        boot_n = math.sqrt(shared + max(0.0, boot_se**2 - shared) * now / n)
        if factor * max(seed_se, boot_n) <= gap:
            return n
    return f"> {limit}"


def method(set_statistic: bool, seeds: int, replicates: int, splits: int = 0) -> str:
    over = f"{seeds} seeds crossed with the examples" if seeds > 1 else "examples (one seed)"
    if set_statistic and splits:
        text = (
            f"centred percentile bootstrap, {replicates} resamples over {over}, "
            f"widened to the spread of {splits} split halves where wider"
        )
    elif set_statistic:
        text = f"centred percentile bootstrap, {replicates} resamples over {over}"
    else:
        text = f"percentile bootstrap, {replicates} resamples over {over}"
    return text + (
        f"; widened to the t interval over the {seeds} seeds (with the examples' part) where wider" if seeds > 1 else ""
    )
