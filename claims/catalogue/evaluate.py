"""A claim's side (moe, dense or contrast) evaluated on the measured series: values, intervals, verdicts, controls."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from claims.catalogue.checks import Check, Claim, Context, Quantity, concentration_reading
from claims.catalogue.paper import POWER_ALPHA
from claims.statistics.intervals import Estimate, interval, method, one_sided_p, pool, seeds_needed
from claims.statistics.measure import SeriesMeasurements
from claims.statistics.verdicts import INCONCLUSIVE, REPLICATED, combine, verdict
from claims.statistics.windows import PaperScale
from lpi_core.metrics import random_set_jaccard

MARGINS_SHOWN = (0.025, 0.05, 0.1)  # the equivalence margins whose verdicts the report shows beside the one in force


@dataclass
class CheckResult:
    label: str
    side: str
    paper: str
    source: str
    op: str
    threshold: float
    value: float
    interval: tuple[float, float]
    verdict: str
    checkpoints: dict[str, list[int]]  # family -> the checkpoints used (over all seeds)
    method: str
    magnitudes: dict[str, dict]  # family -> {"value", "interval"}: each model's own number (a contrast's two sides)
    shown: str  # value [interval], formatted
    threshold_shown: str
    untestable: str | None = None
    p_value: float | None = None  # one-sided, for the claimed side (intervals.one_sided_p)
    p_value_opposite: float | None = None  # one-sided, for the other side
    seeds_needed: int | str | None = (
        None  # an inconclusive check: the seeds that would decide it (intervals.seeds_needed)
    )
    holm_p: float | None = None  # p_value, Holm-adjusted over the run's checks (multiplicity.adjust)
    holm_verdict: str | None = None  # the verdict at the Holm-adjusted p-values: the one that decides
    seeds_left_out: str | None = None  # seeds whose windows could not be tested (pooled over the others)
    reading: str | None = None  # an R_t check: how R_t was read on each model (per layer or layers pooled)
    margin_verdicts: dict[str, str] = field(default_factory=dict)  # an equivalence check: margin -> verdict
    coprimary: str = ""  # checks of a test sharing this name are one hypothesis for Holm


@dataclass
class ClaimResult:
    claim: str
    side: str
    finding: str
    checks: list[CheckResult]
    verdict: str
    models: dict[str, str]
    seeds: list[int]
    controls: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reported: dict[str, dict[str, dict]] = field(
        default_factory=dict
    )  # reported-only quantities: label -> family -> value
    holm_verdict: str | None = None  # from its checks' Holm verdicts: the test's outcome (multiplicity.adjust)

    @property
    def test_id(self) -> str:
        return f"{self.claim}-{self.side}"

    def message(self) -> str:
        parts = [
            f"{c.label} = {c.shown} (paper {c.paper}; claimed {c.op} {c.threshold_shown}; {c.method}; "
            f"checkpoints {c.checkpoints}) -> {c.holm_verdict or c.verdict} after Holm"
            + ("" if c.holm_p is None else f" (adjusted p {c.holm_p:.3g})")
            + f", {c.verdict} unadjusted"
            + (f" ({c.untestable})" if c.untestable else "")
            + ("" if c.seeds_needed is None else f" (seeds for 80% power: {c.seeds_needed})")
            for c in self.checks
        ]
        decided = self.holm_verdict or self.verdict
        return f"{self.test_id}: {decided}: " + "; ".join(parts) + "".join(f" NOTE: {n}" for n in self.notes)


def families_of(side: str) -> tuple[str, ...]:
    return ("moe", "dense") if side == "contrast" else (side,)


def _per_seed(
    check: Check,
    family: str,
    series: list[SeriesMeasurements],
    contexts: dict[tuple[str, int], Context],
    seeds: list[int],
) -> list[Estimate]:
    by_seed = {m.seed: m for m in series}
    return [check.quantity.measure(by_seed[s], contexts[(family, s)]) for s in seeds]


def _format_interval(q: Quantity, value: float, bounds: tuple[float, float], untestable: str | None = None) -> str:
    if untestable:
        return f"not testable: {untestable}"
    return f"{q.format(value)} [{q.format(bounds[0])}, {q.format(bounds[1])}]"


def evaluate_check(
    check: Check,
    measured: dict[str, list[SeriesMeasurements]],
    contexts: dict[tuple[str, int], Context],
    seeds: list[int],
    margin: float = 0.05,
    power_alpha: float = 0.025,
) -> CheckResult:
    """One check's value, interval, verdict and p-values over the seeds; `power_alpha`: the one-sided
    level its seeds-for-80%-power figure is planned at (2.5% / Holm's family)."""
    families = families_of(check.side)
    reading = None
    if check.quantity.concentration is not None:
        kind = check.quantity.concentration
        if check.side == "contrast":  # one reading for both models: pooled where either model needs it
            pooled = any(concentration_reading(m, kind) == "pooled" for f in families for m in measured[f])
            contexts = {k: replace(c, pooled_kinds=frozenset({kind} if pooled else ())) for k, c in contexts.items()}
        shown = []
        for f in families:
            first = measured[f][0]
            shown.append(f"{f}: {_reading_shown(contexts[(f, first.seed)].reading(first, kind), first, kind)}")
        reading = "; ".join(shown)
    per_family = {f: _per_seed(check, f, measured[f], contexts, seeds) for f in families}
    pooled = {f: pool(e) for f, e in per_family.items()}
    if check.side == "contrast":
        estimate = pool([a - b for a, b in zip(per_family["moe"], per_family["dense"])])
    else:
        estimate = pooled[check.side]
    set_stat, limits = check.quantity.set_statistic, check.limits
    threshold = check.threshold_at(margin)
    bounds = interval(estimate, set_stat, limits=limits)
    replicates = estimate.replicates.shape[0]
    outcome = verdict(check.op, threshold, bounds, testable=estimate.untestable is None)
    margins = {
        f"{m:g}": verdict(check.op, check.threshold_at(m), bounds, testable=estimate.untestable is None)
        for m in MARGINS_SHOWN
    }
    opposite = "<" if check.op == ">" else ">"
    return CheckResult(
        label=check.label,
        side=check.side,
        paper=check.paper,
        source=check.source,
        op=check.op,
        threshold=threshold,
        value=estimate.point,
        interval=bounds,
        verdict=outcome,
        checkpoints={f: p.steps for f, p in pooled.items()},
        method=method(
            set_stat, len(seeds), replicates, 0 if estimate.split_half is None else estimate.split_half.shape[0]
        ),
        magnitudes={f: _magnitude(check.quantity, p) for f, p in pooled.items()},
        shown=_format_interval(check.quantity, estimate.point, bounds, estimate.untestable),
        threshold_shown=check.quantity.format(threshold),
        untestable=estimate.untestable,
        p_value=one_sided_p(estimate, set_stat, check.op, threshold, limits),
        p_value_opposite=one_sided_p(estimate, set_stat, opposite, threshold, limits),
        seeds_needed=seeds_needed(estimate, set_stat, threshold, limits, alpha=power_alpha)
        if outcome in (INCONCLUSIVE, REPLICATED)
        else None,
        seeds_left_out=estimate.seeds_left_out,
        reading=reading,
        margin_verdicts=margins if check.equivalence else {},
        coprimary=check.coprimary,
    )


def _reading_shown(reading: str, m: SeriesMeasurements, kind: str) -> str:
    per_layer = m.units[kind] // m.units["layers"]
    if reading == "layer":
        return f"per layer (top 1% = {round(0.01 * per_layer)} of {per_layer} units a layer)"
    return (
        f"layers pooled (top 1% of a layer would be {round(0.01 * per_layer)} of {per_layer} units; "
        f"pooled: {round(0.01 * m.units[kind])} of {m.units[kind]})"
    )


def _magnitude(quantity: Quantity, pooled: Estimate) -> dict:
    """One model's value of `quantity` over the seeds, with its interval (inside the quantity's range)."""
    bounds = interval(pooled, quantity.set_statistic, limits=quantity.limits)
    shown = _format_interval(quantity, pooled.point, bounds, pooled.untestable)
    return {"value": pooled.point, "interval": bounds, "shown": shown}


def reported_quantities(
    claim: Claim,
    families: tuple[str, ...],
    measured: dict[str, list[SeriesMeasurements]],
    contexts: dict[tuple[str, int], Context],
    seeds: list[int],
) -> dict[str, dict[str, dict]]:
    """The claim's reported-only quantities (`Claim.reported`) per model: label -> family -> value, interval."""
    out: dict[str, dict[str, dict]] = {}
    for quantity in claim.reported:
        for family in families:
            pooled = _pooled_over_seeds(quantity, family, measured, contexts, seeds)
            out.setdefault(quantity.label, {})[family] = _magnitude(quantity, pooled)
    return out


def _pooled_over_seeds(
    quantity: Quantity,
    family: str,
    measured: dict[str, list[SeriesMeasurements]],
    contexts: dict[tuple[str, int], Context],
    seeds: list[int],
) -> Estimate:
    """One model's `quantity` at each of `seeds`, pooled (intervals.pool)."""
    by_seed = {m.seed: m for m in measured[family]}
    return pool([quantity.measure(by_seed[s], contexts[(family, s)]) for s in seeds])


def one_model(
    claim: Claim,
    family: str,
    measured: dict[str, list[SeriesMeasurements]],
    scales: dict[tuple[str, int], PaperScale],
    rho_pairs: str = "consecutive",
    margin: float = 0.05,
) -> dict[str, dict]:
    """A contrast's numbers for `family` alone, where the other model is not measured (no verdict):
    label -> value, interval and shown, for each contrast check's quantity and each reported one;
    a quantity the series cannot give has its reason in `untestable`."""
    seeds = sorted(m.seed for m in measured[family])
    contexts = {key: Context(scale, rho_pairs, margin) for key, scale in scales.items()}
    out: dict[str, dict] = {}
    for quantity in [c.quantity for c in claim.checks_for("contrast")] + list(claim.reported):
        pooled = _pooled_over_seeds(quantity, family, measured, contexts, seeds)
        if pooled.untestable:
            out[quantity.label] = {"untestable": pooled.untestable, "shown": f"not testable: {pooled.untestable}"}
        else:
            out[quantity.label] = _magnitude(quantity, pooled)
    return out


def controls(
    claim: Claim,
    family: str,
    series: list[SeriesMeasurements],
    used: list[int],
    scales: dict[tuple[str, int], PaperScale],
) -> dict:
    """The controls printed beside a set statistic: split-half ceiling, random-set Jaccard, set sizes
    as counts; each seed's over the checkpoints of `used` (the checks' steps, all seeds) on its own paper scale."""
    usable = {
        x.seed: [s for s in used if s in x.steps and scales[(family, x.seed)].paper_step(s) is not None] for x in series
    }
    m = series[0]
    units, layers, heads = m.units, m.units["layers"], m.units["heads"]
    out: dict = {}
    for kind in ("ffn", "attn"):
        if kind in claim.sets:
            total = units[kind]
            k = max(1, round(0.01 * total))
            out[f"{kind} top-1% set"] = f"{k} of {total} units"
            out[f"{kind} random-set J"] = random_set_jaccard(total)
            routed_at = [
                r for s, r in zip(m.steps, m.routed_ffn) if s in usable[m.seed]
            ]  # the checkpoints used (none: not testable)
            if kind == "ffn" and family == "moe" and routed_at:
                routed = int(np.median(routed_at))
                out["ffn routed units"] = routed
                out["ffn random-set J over routed units"] = k / (2 * routed - k) if routed >= k else float("nan")
            ceiling = _mean_over_seeds(series, f"ceiling_{kind}", usable)
            out[f"{kind} split-half ceiling"] = ceiling
            jstab = _mean_over_seeds(
                series, f"jstab_{kind}", {seed: [s for s in steps if s != steps[0]] for seed, steps in usable.items()}
            )
            out[f"{kind} J_stab / ceiling"] = jstab / ceiling if ceiling > 0 else float("nan")
        if f"{kind}-layer" in claim.sets:
            per_layer = units[kind] // layers
            out[f"{kind} per-layer top-1% (R_t)"] = f"{max(1, round(0.01 * per_layer))} of {per_layer} units"
            out[f"{kind} R_t reading"] = _reading_shown(concentration_reading(m, kind), m, kind)
    if "heads" in claim.sets:
        out["heads"] = f"{heads} heads; 10 heads = {100 * 10 / heads:.1f}% of them (OLMoE 3.9%, OLMo 1.0%)"
    return out


def _mean_over_seeds(series: list[SeriesMeasurements], trajectory: str, usable: dict[int, list[int]]) -> float:
    """The trajectory's mean over each seed's usable steps (those it has), then over the seeds."""
    means = []
    for x in series:
        t = getattr(x, trajectory)
        steps = [s for s in usable[x.seed] if s in t.steps]
        if steps:
            means.append(float(np.nanmean([t.points[t.steps.index(s)] for s in steps])))
    return float(np.mean(means)) if means else float("nan")


def evaluate(
    claim: Claim,
    side: str,
    measured: dict[str, list[SeriesMeasurements]],
    scales: dict[tuple[str, int], PaperScale],
    rho_pairs: str = "consecutive",
    margin: float = 0.05,
) -> ClaimResult:
    """Evaluate the checks of one side of a claim on the families' series (one per seed)."""
    families = families_of(side)
    missing = [f for f in families if f not in measured]
    if missing:
        raise KeyError(f"{claim.id}-{side} needs the {', '.join(missing)} series")
    seeds = sorted(set.intersection(*({m.seed for m in measured[f]} for f in families)))
    contexts = {key: Context(scale, rho_pairs, margin) for key, scale in scales.items()}
    checks = [evaluate_check(c, measured, contexts, seeds, margin, POWER_ALPHA) for c in claim.checks_for(side)]
    used = {f: sorted({s for c in checks for s in c.checkpoints.get(f, [])}) for f in families}
    result = ClaimResult(
        claim=claim.id,
        side=side,
        finding=claim.finding,
        checks=checks,
        verdict=combine([c.verdict for c in checks]),
        models={f: measured[f][0].name for f in families},
        seeds=seeds,
        controls={f: controls(claim, f, [m for m in measured[f] if m.seed in seeds], used[f], scales) for f in families}
        if claim.sets
        else {},
        reported=reported_quantities(claim, families, measured, contexts, seeds),
    )
    result.notes = [f"{c.label}: not testable at this scale: {c.untestable}" for c in checks if c.untestable]
    result.notes += [f"{c.label}: {c.seeds_left_out}" for c in checks if c.seeds_left_out]
    result.notes += [f"{c.label}: R_t read {c.reading}" for c in checks if c.reading]
    result.notes += [
        f"{c.label}: at equivalence margin " + ", ".join(f"{m}: {v}" for m, v in c.margin_verdicts.items())
        for c in checks
        if c.margin_verdicts
    ]
    return result
