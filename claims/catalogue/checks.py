"""The language the catalogue (paper.py) is written in: a quantity (what is measured on one series,
as an Estimate), a check (a quantity on a side against a threshold, with the paper's magnitude and
the sentence behind it), a claim (its checks and what is reported beside them); the measures on a
series' trajectories and profiles (window means, pairs, changes, trends, profile statistics,
lock-in, ablation drops) and the builders of the quantities and checks the catalogue uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from claims.statistics.intervals import Estimate
from claims.statistics.measure import SeriesMeasurements, Trajectory
from claims.statistics.profiles import lock_in_rho_rows, sigma_norm_rows, sigma_rel_largest_share_rows
from claims.statistics.windows import AFTER_200K, CONSOLIDATION, END, FULL_RUN, LATE, PaperScale, Window
from lpi_core.metrics import rho_avg_rows, sigma_rel_rows

SIDES = ("moe", "dense", "contrast")


LAYER_TOP_MINIMUM = 10  # R_t per layer needs a layer's top 1% to hold this many units; else the layers are pooled


def concentration_reading(m: SeriesMeasurements, kind: str) -> str:
    """How R_t is read on this series: "layer" (the paper's Eq. 8, per layer) where 1% of a layer's
    units is at least LAYER_TOP_MINIMUM, else "pooled" (the top 1% of the model's units of that kind)."""
    per_layer = m.units[kind] / m.units["layers"]
    return "layer" if round(0.01 * per_layer) >= LAYER_TOP_MINIMUM else "pooled"


@dataclass(frozen=True)
class Context:
    """What a quantity needs besides the series: the paper scale of its seed and the options in force."""

    scale: PaperScale
    rho_pairs: str = "consecutive"
    margin: float = 0.05  # the equivalence margin around a reported value, as a fraction of the quantity's range
    pooled_kinds: frozenset[str] | None = None  # a contrast's R_t reading for both models; None: each series' own

    def reading(self, m: SeriesMeasurements, kind: str) -> str:
        if self.pooled_kinds is None:
            return concentration_reading(m, kind)
        return "pooled" if kind in self.pooled_kinds else "layer"


Measure = Callable[[SeriesMeasurements, Context], Estimate]


@dataclass(frozen=True)
class Quantity:
    label: str
    measure: Measure
    set_statistic: bool = (
        False  # J_stab or R_t: the widened centred percentile interval (intervals.py), and controls beside it
    )
    percent: bool = False  # a fraction shown ×100 with a % sign
    unit: str = ""
    limits: tuple[float, float] = (-math.inf, math.inf)  # the range one model's value can take (intervals respect it)
    width: float | None = None  # the width of the range the equivalence margin is a fraction of (None: the limits')
    concentration: str | None = None  # an R_t quantity: its kind ("ffn", "attn"), whose reading the report names

    @property
    def range_width(self) -> float:
        """What the equivalence margin is a fraction of: `width`, else the width of the limits."""
        return self.width if self.width is not None else self.limits[1] - self.limits[0]

    def format(self, value: float) -> str:
        if not np.isfinite(value):
            return "undefined"
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3g}{self.unit}"


@dataclass(frozen=True)
class Check:
    side: str  # "moe", "dense" or "contrast" (MoE − dense of the quantity)
    quantity: Quantity
    op: str
    threshold: float
    paper: str  # the paper's magnitude(s)
    source: str  # the paper's sentence (or table) behind the direction or the threshold
    equivalence: bool = False  # the threshold is a value the paper reports: tested past the equivalence margin
    coprimary: str = ""  # checks of one test sharing this name are one hypothesis, replicated only together

    @property
    def label(self) -> str:
        return f"{self.quantity.label} (MoE − dense)" if self.side == "contrast" else self.quantity.label

    @property
    def limits(self) -> tuple[float, float]:
        """The range of the tested value: the quantity's, or for a contrast the range of a difference of two."""
        low, high = self.quantity.limits
        return (low - high, high - low) if self.side == "contrast" else (low, high)

    def threshold_at(self, margin: float) -> float:
        """The threshold in force: a reported value moved by `margin` × the quantity's range width
        (100 points of a drop, 2 of a correlation, 1 of a share) to the side the claim allows."""
        if not self.equivalence:
            return self.threshold
        shift = margin * self.quantity.range_width
        return self.threshold - shift if self.op == ">" else self.threshold + shift


@dataclass(frozen=True)
class Claim:
    id: str
    finding: str
    checks: tuple[Check, ...]
    sets: tuple[
        str, ...
    ] = ()  # the unit sets it uses, for the controls: "ffn", "attn", "ffn-layer", "attn-layer", "heads"
    reported: tuple[Quantity, ...] = ()  # reported beside the checks per model, not tested

    @property
    def sides(self) -> tuple[str, ...]:
        return tuple(s for s in SIDES if any(c.side == s for c in self.checks))

    def checks_for(self, side: str) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.side == side)


# -- quantities ---------------------------------------------------------------------------------


def _untestable(m: SeriesMeasurements, reason: str, steps: list[int]) -> Estimate:
    return Estimate.not_testable(reason, steps, m.replicates)


TrajectoryOf = str | Callable[[SeriesMeasurements, "Context"], Trajectory]


def _trajectory(trajectory: TrajectoryOf, m: SeriesMeasurements, ctx: Context) -> Trajectory:
    """A series' trajectory: the field named `trajectory`, or what `trajectory(m, ctx)` picks."""
    return getattr(m, trajectory) if isinstance(trajectory, str) else trajectory(m, ctx)


def pair_mean(trajectory: TrajectoryOf, window: Window) -> Measure:
    """Mean over the consecutive pairs whose two checkpoints both lie in the window."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen, pairs = ctx.scale.window(window), ctx.scale.pairs(window)
        if len(chosen) < 2 or not pairs:
            return _untestable(m, f"window {window.name} holds {len(chosen)} usable checkpoint(s) {chosen}", chosen)
        t = _trajectory(trajectory, m, ctx)
        idx = [t.steps.index(s) for s in pairs]
        return t.combined(idx, np.full(len(idx), 1 / len(idx)), chosen)

    return measure


def pair_at(trajectory: TrajectoryOf, paper_step: int) -> Measure:
    """The pair ending at the usable checkpoint nearest `paper_step` (END: the last pair)."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        step = ctx.scale.pair_nearest(paper_step)
        if step is None:
            return _untestable(m, f"fewer than 2 usable checkpoints {ctx.scale.usable}", ctx.scale.usable)
        t = _trajectory(trajectory, m, ctx)
        return t.combined([t.steps.index(step)], np.ones(1), [m.steps[m.steps.index(step) - 1], step])

    return measure


def change(trajectory: str, start: int, stop: int) -> Measure:
    """J(or R) at the pair nearest `stop` minus at the pair nearest `start`; untestable if both are one pair."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        a, b = ctx.scale.pair_nearest(start), ctx.scale.pair_nearest(stop)
        if a is None or a == b:
            name = lambda s: "end" if s == END else f"{s // 1000}K"  # noqa: E731
            return _untestable(
                m,
                f"{name(start)} and {name(stop)} fall on one pair (usable checkpoints {ctx.scale.usable})",
                ctx.scale.usable,
            )
        return pair_at(trajectory, stop)(m, ctx) - pair_at(trajectory, start)(m, ctx)

    return measure


def trend(trajectory: str, window: Window) -> Measure:
    """Least-squares slope of the pair values over the window, per 1M paper steps."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen, pairs = ctx.scale.window(window), ctx.scale.pairs(window)
        if len(pairs) < 2:
            return _untestable(m, f"window {window.name} holds {len(pairs)} pair(s); a trend needs 2", chosen)
        t = getattr(m, trajectory)
        idx = [t.steps.index(s) for s in pairs]
        x = np.array([ctx.scale.paper_step(s) for s in pairs]) / 1e6
        weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
        return t.combined(idx, weights, chosen)

    return measure


def _pairs_before(m: SeriesMeasurements, pairs: list[int]) -> list[tuple[int, int]]:
    return [(m.steps[m.steps.index(b) - 1], b) for b in pairs]


def _null_of(m: SeriesMeasurements, key: str, pairs: list[int]) -> float:
    """The split-half null of R_t over the pairs: per pair the mean of its two checkpoints' nulls."""
    null = m.concentration_null[key]
    at = lambda s: null.points[null.steps.index(s)]  # noqa: E731
    with np.errstate(invalid="ignore"):
        return float(np.nanmean([(at(a) + at(b)) / 2 for a, b in _pairs_before(m, pairs)]))


def _concentration(table: str, kind: str, reading: str | None) -> TrajectoryOf:
    """An R_t trajectory (`table`: "concentration" in-sample, "concentration_held_out" cross-fitted) of
    `kind`; `reading` None: the context's (per layer, or pooled)."""
    return lambda m, ctx: getattr(m, table)[f"{kind}/{reading or ctx.reading(m, kind)}"]


def concentration_held_out(kind: str, window: Window, reading: str | None = None) -> Measure:
    """Cross-fitted R_t over the window's pairs: the top 1% of one half's positive gains, their share
    of the other half's (measure.py). `reading`: "routed" (FFN units routed at t or t-1, layers
    pooled); None: the context's reading (per layer, or pooled)."""
    return pair_mean(_concentration("concentration_held_out", kind, reading), window)


def concentration_held_out_at(kind: str, paper_step: int) -> Measure:
    """Cross-fitted R_t at the pair ending nearest `paper_step` (the context's reading)."""
    return pair_at(_concentration("concentration_held_out", kind, None), paper_step)


def concentration_of(kind: str, window: Window, null: bool = False) -> Measure:
    """The paper's in-sample R_t over the window's pairs, or its split-half null (`null`: the same
    statistic between two halves of one checkpoint, per pair the mean of its two checkpoints'),
    in the context's reading."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        estimate = pair_mean(_concentration("concentration", kind, None), window)(m, ctx)
        if estimate.untestable or not null:
            return estimate
        value = _null_of(m, f"{kind}/{ctx.reading(m, kind)}", ctx.scale.pairs(window))
        return Estimate(value, np.full(estimate.replicates.shape, value), estimate.steps)

    return measure


PROFILE_STATISTICS = {
    "rho": lambda ctx: lambda p: rho_avg_rows(p, ctx.rho_pairs),
    "sigma": lambda ctx: sigma_rel_rows,
    "sigma_norm": lambda ctx: sigma_norm_rows,
    "sigma_share": lambda ctx: sigma_rel_largest_share_rows,
}


def _profile_estimate(
    m: SeriesMeasurements, kind: str, chosen: list[int], fn: Callable[[np.ndarray], np.ndarray]
) -> Estimate:
    points, reps = m.profile(kind)
    idx = [m.steps.index(s) for s in chosen]
    return Estimate(float(fn(points[idx][None])[0]), fn(reps[:, idx]), chosen)


def profile_stat(kind: str, window: Window, statistic: str) -> Measure:
    """A statistic (PROFILE_STATISTICS: ρ_avg, σ_rel, σ_norm, σ_rel's largest layer share) of the
    FFN or ATTN layer profiles of the window's checkpoints."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen = ctx.scale.window(window)
        if len(chosen) < 2:
            return _untestable(m, f"window {window.name} holds {len(chosen)} usable checkpoint(s) {chosen}", chosen)
        return _profile_estimate(m, kind, chosen, PROFILE_STATISTICS[statistic](ctx))

    return measure


def lock_in(kind: str, formed: int, window: Window) -> Measure:
    """The lock-in correlation (profiles.lock_in_rho_rows) of the profile at the usable checkpoint
    nearest `formed` (paper steps) with every later one in the window."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        usable = ctx.scale.usable
        if not usable:
            return _untestable(m, "no usable checkpoints", usable)
        first = min(usable, key=lambda s: abs(ctx.scale.paper_step(s) - formed))
        chosen = [first] + [s for s in ctx.scale.window(window) if s > first]
        if len(chosen) < 2:
            return _untestable(m, f"no usable checkpoint after {first} (≈{formed // 1000}K) in {window.name}", chosen)
        return _profile_estimate(m, kind, chosen, lock_in_rho_rows)

    return measure


def drop_mean(masked: str, hits: str = "HIT@10") -> Measure:
    """The drop in `hits` (HIT@10 or HIT@1) when `masked` (a key of `SeriesMeasurements.drops`) is
    masked, averaged over the post-onset checkpoints (10K–end)."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen = ctx.scale.window(FULL_RUN)
        if not chosen:
            return _untestable(m, f"no usable checkpoint in {FULL_RUN.name} (usable: {ctx.scale.usable})", chosen)
        t = (m.drops if hits == "HIT@10" else m.drops_at_1)[masked]
        idx = [t.steps.index(s) for s in chosen]
        with np.errstate(invalid="ignore"):
            return Estimate(float(np.mean(t.points[idx])), t.replicates[:, idx].mean(1), chosen)

    return measure


SHARE, CHANGE, CORRELATION, POSITIVE, DROP = (0.0, 1.0), (-1.0, 1.0), (-1.0, 1.0), (0.0, math.inf), (-math.inf, 100.0)
DROP_WIDTH = 100.0  # a drop's range for the equivalence margin: 0 to 100 points


def _over_pairs(trajectory: str, window: Window | None, paper_step: int | None) -> tuple[str, Measure]:
    """Where (the window's name, or "last pair") and the measure of a pair trajectory over a window's
    pairs, or at the pair nearest `paper_step` (END: the last pair)."""
    if window is not None:
        return window.name, pair_mean(trajectory, window)
    return "last pair", pair_at(trajectory, paper_step)


def jstab_of(kind: str, window: Window | None = None, paper_step: int | None = None) -> Quantity:
    where, measure = _over_pairs(f"jstab_{kind}", window, paper_step)
    return Quantity(f"{kind.upper()} J_stab {where}", measure, set_statistic=True, percent=True, limits=SHARE)


def rho_of(kind: str, window: Window) -> Quantity:
    return Quantity(f"{kind.upper()} ρ_avg {window.name}", profile_stat(kind, window, "rho"), limits=CORRELATION)


def sigma_norm_of(kind: str, window: Window) -> Quantity:
    return Quantity(f"{kind.upper()} σ_norm {window.name}", profile_stat(kind, window, "sigma_norm"), limits=POSITIVE)


def lock_in_of(kind: str) -> Quantity:
    return Quantity(
        f"{kind.upper()} lock-in ρ, 100K vs each later ≤ 600K", lock_in(kind, 100_000, LATE), limits=CORRELATION
    )


def drop_of(ablation: str, kind: str = "held-out", hits: str = "HIT@10") -> Quantity:
    """The drop when `ablation`'s set is masked: chosen on the other half of the examples (held-out,
    the tested one), on all of them (in-sample, the paper's) or at random (ablations.py)."""
    masked = ablation if kind == "in-sample" else f"{kind}/{ablation}"
    return Quantity(
        f"{hits} drop, {ablation} masked ({kind})", drop_mean(masked, hits), unit="%", limits=DROP, width=DROP_WIDTH
    )


def drops_reported(ablation: str) -> tuple[Quantity, ...]:
    """Beside the tested held-out HIT@10 drop: the paper's in-sample one, a random set's, and HIT@1's."""
    return (
        drop_of(ablation, "in-sample"),
        drop_of(ablation, "random"),
        drop_of(ablation, "held-out", "HIT@1"),
        drop_of(ablation, "random", "HIT@1"),
    )


def stability_of(kind: str, window: Window | None = None, paper_step: int | None = None) -> Quantity:
    """Set stability beyond noise (measure.py) over a window's pairs, or at the pair nearest `paper_step`."""
    where, measure = _over_pairs(f"stability_{kind}", window, paper_step)
    return Quantity(f"{kind.upper()} set stability beyond noise {where}", measure, set_statistic=True, limits=POSITIVE)


def change_of(kind: str, start: int, stop: int, what: str) -> Quantity:
    """The change of gap-normalised set stability beyond noise (measure.py) between the pairs nearest
    two paper steps."""
    name = lambda s: "end" if s == END else f"{s // 1000}K"  # noqa: E731
    return Quantity(
        f"{kind.upper()} stability {what} {name(start)}→{name(stop)} (beyond noise, gap-normalised)",
        change(f"stability_{kind}_gap", start, stop),
        set_statistic=True,
        limits=CHANGE,
    )


def trend_of(kind: str) -> Quantity:
    """The slope of gap-normalised set stability beyond noise over the pairs after 200K, per 1M paper steps."""
    return Quantity(
        f"{kind.upper()} stability trend 200K-end (beyond noise, gap-normalised, per 1M steps)",
        trend(f"stability_{kind}_gap", AFTER_200K),
        set_statistic=True,
    )


def held_out_of(kind: str, window: Window, reading: str | None = None) -> Quantity:
    routed = " among routed units" if reading == "routed" else ""
    return Quantity(
        f"{kind.upper()} R_t{routed} {window.name} (held out)",
        concentration_held_out(kind, window, reading),
        set_statistic=True,
        percent=True,
        limits=SHARE,
        concentration=kind,
    )


def concentration_reported(kind: str, window: Window) -> tuple[Quantity, Quantity]:
    """The paper's in-sample R_t and its split-half null, beside the tested held-out R_t."""
    return (
        Quantity(
            f"{kind.upper()} R_t {window.name} (in-sample, the paper's)",
            concentration_of(kind, window),
            set_statistic=True,
            percent=True,
            limits=SHARE,
            concentration=kind,
        ),
        Quantity(
            f"{kind.upper()} R_t null {window.name} (two halves of one checkpoint)",
            concentration_of(kind, window, null=True),
            percent=True,
            limits=SHARE,
            concentration=kind,
        ),
    )


def moe_above_dense(quantity: Quantity, paper: str, source: str, coprimary: str = "") -> Check:
    """The contrast check MoE − dense > 0."""
    return Check("contrast", quantity, ">", 0.0, paper, source, coprimary=coprimary)


def moe_below_dense(quantity: Quantity, paper: str, source: str) -> Check:
    """The contrast check MoE − dense < 0."""
    return Check("contrast", quantity, "<", 0.0, paper, source)


def sigma_rel_reported(kind: str) -> tuple[Quantity, Quantity]:
    """The paper's σ_rel and its largest layer's share: reported beside the tested σ_norm, not tested."""
    return (
        Quantity(
            f"{kind.upper()} σ_rel 10K-600K (the paper's)", profile_stat(kind, CONSOLIDATION, "sigma"), limits=POSITIVE
        ),
        Quantity(
            f"{kind.upper()} σ_rel's largest layer share",
            profile_stat(kind, CONSOLIDATION, "sigma_share"),
            percent=True,
            limits=SHARE,
        ),
    )
