"""A claim's side (moe, dense or contrast) evaluated on the measured series: values, intervals, verdicts, controls."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lpi_core.metrics import random_set_jaccard

from .catalogue import Check, Claim, Context
from .intervals import Estimate, interval, method, pool
from .measure import SeriesMeasurements
from .verdicts import combine, verdict
from .windows import PaperScale

FAMILY_NAMES = {"moe": "MoE", "dense": "dense"}


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

    @property
    def test_id(self) -> str:
        return f"{self.claim}-{self.side}"

    def message(self) -> str:
        parts = [
            f"{c.label} = {c.shown} (paper {c.paper}; claimed {c.op} {c.threshold_shown}; {c.method}; checkpoints {c.checkpoints}) -> {c.verdict}"
            + (f" ({c.untestable})" if c.untestable else "")
            for c in self.checks
        ]
        return f"{self.test_id}: {self.verdict}: " + "; ".join(parts) + "".join(f" NOTE: {n}" for n in self.notes)


def families_of(side: str) -> tuple[str, ...]:
    return ("moe", "dense") if side == "contrast" else (side,)


def _per_seed(check: Check, family: str, series: list[SeriesMeasurements], contexts: dict[tuple[str, int], Context], seeds: list[int]) -> list[Estimate]:
    by_seed = {m.seed: m for m in series}
    return [check.quantity.measure(by_seed[s], contexts[(family, s)]) for s in seeds]


def _format_interval(check: Check, value: float, bounds: tuple[float, float]) -> str:
    q = check.quantity
    return f"{q.format(value)} [{q.format(bounds[0])}, {q.format(bounds[1])}]"


def evaluate_check(check: Check, measured: dict[str, list[SeriesMeasurements]], contexts: dict[tuple[str, int], Context], seeds: list[int]) -> CheckResult:
    per_family = {f: _per_seed(check, f, measured[f], contexts, seeds) for f in families_of(check.side)}
    pooled = {f: pool(e) for f, e in per_family.items()}
    if check.side == "contrast":
        estimate = pool([a - b for a, b in zip(per_family["moe"], per_family["dense"])])
    else:
        estimate = pooled[check.side]
    set_stat = check.quantity.set_statistic
    bounds = interval(estimate, set_stat)
    replicates = estimate.replicates.shape[0]
    return CheckResult(
        label=check.label,
        side=check.side,
        paper=check.paper,
        source=check.source,
        op=check.op,
        threshold=check.threshold,
        value=estimate.point,
        interval=bounds,
        verdict=verdict(check.op, check.threshold, bounds, testable=estimate.untestable is None),
        checkpoints={f: p.steps for f, p in pooled.items()},
        method=method(set_stat, len(seeds), replicates, 0 if estimate.split_half is None else estimate.split_half.shape[0]),
        magnitudes={f: {"value": p.point, "interval": interval(p, set_stat), "shown": _format_interval(check, p.point, interval(p, set_stat))} for f, p in pooled.items()},
        shown=_format_interval(check, estimate.point, bounds),
        threshold_shown=check.quantity.format(check.threshold),
        untestable=estimate.untestable,
    )


def controls(claim: Claim, family: str, series: list[SeriesMeasurements], used: list[int], scales: dict[tuple[str, int], PaperScale]) -> dict:
    """The controls printed beside a set statistic: split-half ceiling, random-set Jaccard, set sizes
    as counts; each seed's over the checkpoints of `used` (the checks' steps, all seeds) on its own paper scale."""
    usable = {x.seed: [s for s in used if s in x.steps and scales[(family, x.seed)].paper_step(s) is not None] for x in series}
    m = series[0]
    units, layers, heads = m.units, m.units["layers"], m.units["heads"]
    out: dict = {}
    for kind in ("ffn", "attn"):
        if kind in claim.sets:
            total = units[kind]
            k = max(1, round(0.01 * total))
            out[f"{kind} top-1% set"] = f"{k} of {total} units"
            out[f"{kind} random-set J"] = random_set_jaccard(total)
            routed_at = [r for s, r in zip(m.steps, m.routed_ffn) if s in usable[m.seed]]  # the checkpoints used (none: not testable)
            if kind == "ffn" and family == "moe" and routed_at:
                routed = int(np.median(routed_at))
                out["ffn routed units"] = routed
                out["ffn random-set J over routed units"] = k / (2 * routed - k) if routed >= k else float("nan")
            ceiling = {x.seed: getattr(x, f"ceiling_{kind}") for x in series}
            ceilings = [float(np.mean([t.points[t.steps.index(s)] for s in usable[seed]])) for seed, t in ceiling.items() if usable[seed]]
            out[f"{kind} split-half ceiling"] = float(np.mean(ceilings)) if ceilings else float("nan")
        if f"{kind}-layer" in claim.sets:
            per_layer = units[kind] // layers
            out[f"{kind} per-layer top-1% (R_t)"] = f"{max(1, round(0.01 * per_layer))} of {per_layer} units"
    if "heads" in claim.sets:
        out["heads"] = f"{heads} heads; 10 heads = {100 * 10 / heads:.1f}% of them (OLMoE 3.9%, OLMo 1.0%)"
    return out


def evaluate(
    claim: Claim,
    side: str,
    measured: dict[str, list[SeriesMeasurements]],
    scales: dict[tuple[str, int], PaperScale],
    rho_pairs: str = "consecutive",
) -> ClaimResult:
    """Evaluate the checks of one side of a claim on the families' series (one per seed)."""
    families = families_of(side)
    missing = [f for f in families if f not in measured]
    if missing:
        raise KeyError(f"{claim.id}-{side} needs the {', '.join(missing)} series")
    seeds = sorted(set.intersection(*({m.seed for m in measured[f]} for f in families)))
    contexts = {key: Context(scale, rho_pairs) for key, scale in scales.items()}
    checks = [evaluate_check(c, measured, contexts, seeds) for c in claim.checks_for(side)]
    used = {f: sorted({s for c in checks for s in c.checkpoints.get(f, [])}) for f in families}
    result = ClaimResult(
        claim=claim.id,
        side=side,
        finding=claim.finding,
        checks=checks,
        verdict=combine([c.verdict for c in checks]),
        models={f: measured[f][0].name for f in families},
        seeds=seeds,
        controls={f: controls(claim, f, [m for m in measured[f] if m.seed in seeds], used[f], scales) for f in families} if claim.sets else {},
    )
    result.notes = [f"{c.label}: not testable at this scale: {c.untestable}" for c in checks if c.untestable]
    return result
