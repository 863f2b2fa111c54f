"""The paper's 14 findings as checks: what is measured, on which side, against what, and why.

Threshold rule: a check's threshold is either a bound the paper's *text* states for one model
(MoE R_t > 45%, top-10-head drop MoE < 10% and dense > 50%), or 0 for a difference in the
direction the text states: the contrast MoE − dense for a comparison of the two models, the
change between named steps for a shape. A number found only in the paper's tables is shown as a
magnitude, marked "(table N)"; where a table value is used as a threshold (moe-full-run), the
check says so. Each check's `source` quotes the sentence it rests on.

Sides: `moe` and `dense` checks read one family's series only; `contrast` checks read both. A
pytest id is `<claim>-<side>`, so `-k moe` runs only MoE-side checks (never loading the dense
series), `-k dense` the dense side, `-k contrast` the comparisons.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .intervals import Estimate
from .measure import SeriesMeasurements
from .windows import AFTER_200K, CONSOLIDATION, EARLY, END, FULL_RUN, LATE, WITHIN_100K, PaperScale, Window

SIDES = ("moe", "dense", "contrast")


@dataclass(frozen=True)
class Context:
    """What a quantity needs besides the series: the paper scale of its seed and the options in force."""

    scale: PaperScale
    rho_pairs: str = "consecutive"


Measure = Callable[[SeriesMeasurements, Context], Estimate]


@dataclass(frozen=True)
class Quantity:
    label: str
    measure: Measure
    set_statistic: bool = False  # J_stab or R_t: the widened centred percentile interval (intervals.py), and controls beside it
    percent: bool = False  # a fraction shown ×100 with a % sign
    unit: str = ""

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

    @property
    def label(self) -> str:
        return f"{self.quantity.label} (MoE − dense)" if self.side == "contrast" else self.quantity.label


@dataclass(frozen=True)
class Claim:
    id: str
    finding: str
    checks: tuple[Check, ...]
    sets: tuple[str, ...] = ()  # the unit sets it uses, for the controls: "ffn", "attn", "ffn-layer", "attn-layer", "heads"

    @property
    def sides(self) -> tuple[str, ...]:
        return tuple(s for s in SIDES if any(c.side == s for c in self.checks))

    def checks_for(self, side: str) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.side == side)


# -- quantities ---------------------------------------------------------------------------------


def _untestable(m: SeriesMeasurements, reason: str, steps: list[int]) -> Estimate:
    return Estimate.not_testable(reason, steps, m.replicates)


def pair_mean(trajectory: str, window: Window) -> Measure:
    """Mean over the consecutive pairs whose two checkpoints both lie in the window."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen, pairs = ctx.scale.window(window), ctx.scale.pairs(window)
        if len(chosen) < 2 or not pairs:
            return _untestable(m, f"window {window.name} holds {len(chosen)} usable checkpoint(s) {chosen}", chosen)
        t = getattr(m, trajectory)
        idx = [t.steps.index(s) for s in pairs]
        return t.combined(idx, np.full(len(idx), 1 / len(idx)), chosen)

    return measure


def pair_at(trajectory: str, paper_step: int) -> Measure:
    """The pair ending at the usable checkpoint nearest `paper_step` (END: the last pair)."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        step = ctx.scale.pair_nearest(paper_step)
        if step is None:
            return _untestable(m, f"fewer than 2 usable checkpoints {ctx.scale.usable}", ctx.scale.usable)
        t = getattr(m, trajectory)
        return t.combined([t.steps.index(step)], np.ones(1), [m.steps[m.steps.index(step) - 1], step])

    return measure


def change(trajectory: str, start: int, stop: int) -> Measure:
    """J(or R) at the pair nearest `stop` minus at the pair nearest `start`; untestable if both are one pair."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        a, b = ctx.scale.pair_nearest(start), ctx.scale.pair_nearest(stop)
        if a is None or a == b:
            name = lambda s: "end" if s == END else f"{s // 1000}K"  # noqa: E731
            return _untestable(m, f"{name(start)} and {name(stop)} fall on one pair (usable checkpoints {ctx.scale.usable})", ctx.scale.usable)
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


def profile_stat(kind: str, window: Window, statistic: str) -> Measure:
    """ρ_avg or σ_rel of the FFN or ATTN layer profiles of the window's checkpoints."""
    from lpi_core.metrics import rho_avg_rows, sigma_rel_rows

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen = ctx.scale.window(window)
        if len(chosen) < 2:
            return _untestable(m, f"window {window.name} holds {len(chosen)} usable checkpoint(s) {chosen}", chosen)
        points, reps = m.profile(kind)
        idx = [m.steps.index(s) for s in chosen]
        fn = (lambda p: rho_avg_rows(p, ctx.rho_pairs)) if statistic == "rho" else sigma_rel_rows
        return Estimate(float(fn(points[idx][None])[0]), fn(reps[:, idx]), chosen)

    return measure


def drop_mean(ablation: str) -> Measure:
    """The HIT@10 drop averaged over the post-onset checkpoints (10K–end)."""

    def measure(m: SeriesMeasurements, ctx: Context) -> Estimate:
        chosen = ctx.scale.window(FULL_RUN)
        if len(chosen) < 2:
            return _untestable(m, f"{len(chosen)} usable checkpoint(s) {chosen}", chosen)
        t = m.drops[ablation]
        idx = [t.steps.index(s) for s in chosen]
        with np.errstate(invalid="ignore"):
            return Estimate(float(np.mean(t.points[idx])), t.replicates[:, idx].mean(1), chosen)

    return measure


def _jstab(kind: str, window: Window) -> Quantity:
    return Quantity(f"{kind.upper()} J_stab {window.name}", pair_mean(f"jstab_{kind}", window), set_statistic=True, percent=True)


def _rho(kind: str, window: Window) -> Quantity:
    return Quantity(f"{kind.upper()} ρ_avg {window.name}", profile_stat(kind, window, "rho"))


def _sigma(kind: str, window: Window) -> Quantity:
    return Quantity(f"{kind.upper()} σ_rel {window.name}", profile_stat(kind, window, "sigma"))


def _drop(ablation: str) -> Quantity:
    return Quantity(f"HIT@10 drop, {ablation} masked", drop_mean(ablation), unit="%")


def _change(trajectory: str, label: str, start: int, stop: int) -> Quantity:
    return Quantity(label, change(trajectory, start, stop), set_statistic=True, percent=True)


def _more(quantity: Quantity, paper: str, source: str) -> Check:
    return Check("contrast", quantity, ">", 0.0, paper, source)


def _less(quantity: Quantity, paper: str, source: str) -> Check:
    return Check("contrast", quantity, "<", 0.0, paper, source)


FIG1 = "Figure 1: OLMoE exhibits markedly higher Top-1% set stability"
TABLE3 = "Table 3 / text: OLMoE's layer profile locks in early; OLMo's is volatile"
R_FFN = Quantity("FFN R_t 10K-end", pair_mean("r_ffn", FULL_RUN), set_statistic=True, percent=True)
R_ATTN_RISE = Quantity("ATTN R_t 200K-end minus first pair", lambda m, c: pair_mean("r_attn", AFTER_200K)(m, c) - pair_at("r_attn", 10_000)(m, c), set_statistic=True, percent=True)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "ffn-concentration",
        "top-1% FFN neurons take most positive gains in MoE (R_t > 45%), far less in dense",
        (
            Check("moe", R_FFN, ">", 0.45, "48.9%", "abstract: the top ~1% of MoE neurons capture over 45% of positive updates"),
            _more(R_FFN, "48.9% vs 26.4% (table 2)", "abstract: a high-utility core ... absent in the dense baseline"),
        ),
        sets=("ffn-layer",),
    ),
    Claim("ffn-stability-early", "FFN top-1% set stability, 10K-70K", (_more(_jstab("ffn", EARLY), "22.2% vs 6.3% (table 2)", FIG1),), sets=("ffn",)),
    Claim("ffn-stability-late", "FFN top-1% set stability, 100K-600K", (_more(_jstab("ffn", LATE), "25.3% vs 6.1% (table 2)", FIG1),), sets=("ffn",)),
    Claim(
        "ffn-stability-final",
        "FFN top-1% set stability at the last checkpoint pair",
        (_more(Quantity("FFN J_stab last pair", pair_at("jstab_ffn", END), set_statistic=True, percent=True), "44.2% (1.2M) vs 4.9% (600K)", FIG1),),
        sets=("ffn",),
    ),
    Claim(
        "ffn-explore-refine-consolidate",
        "MoE FFN J_stab rises to 70K, dips at 200K, then climbs monotonically to the end",
        (
            Check("moe", _change("jstab_ffn", "FFN J rise 10K→70K", 10_000, 70_000), ">", 0.0, "→ 27% @70K", "text: it rises to 27% at 70K steps"),
            Check("moe", _change("jstab_ffn", "FFN J dip 70K→200K", 70_000, 200_000), "<", 0.0, "27% → 17.1%", "text: dips to 17.1% at 200K"),
            Check("moe", _change("jstab_ffn", "FFN J climb 200K→end", 200_000, END), ">", 0.0, "17.1% → 44.2%", "text: then climbs monotonically to 44.2% by 1.2M"),
            Check("moe", Quantity("FFN J trend 200K-end (per 1M steps)", trend("jstab_ffn", AFTER_200K), set_statistic=True), ">", 0.0, "monotone climb", "text: climbs monotonically"),
        ),
        sets=("ffn",),
    ),
    Claim(
        "attn-stability",
        "ATTN J_stab: MoE dips at 200K then climbs; dense declines from its 70K peak; MoE above dense",
        (
            Check("moe", _change("jstab_attn", "ATTN J dip 100K→200K", 100_000, 200_000), "<", 0.0, "44.9% → 33.4%", "text: rises to 44.9% at 100K, dips to 33.4% at 200K"),
            Check("moe", _change("jstab_attn", "ATTN J climb 200K→end", 200_000, END), ">", 0.0, "33.4% → 57.7%", "text: a sustained upward trajectory, reaching 0.577 at 1200K"),
            Check("moe", Quantity("ATTN J trend 200K-end (per 1M steps)", trend("jstab_attn", AFTER_200K), set_statistic=True), ">", 0.0, "sustained climb", "text: a sustained and robust upward trajectory"),
            Check("dense", _change("jstab_attn", "ATTN J change 70K→600K", 70_000, 600_000), "<", 0.0, "24.6% → 15.1% (figure 1)", "figure 1: dense peak at 70K, lower at 600K"),
            _more(_jstab("attn", CONSOLIDATION), "44.9% / 33.4% vs peak 24.6% (figure 1)", "text: significant difference in the stability of the core neuron sets"),
        ),
        sets=("attn",),
    ),
    Claim(
        "attn-concentration",
        "MoE ATTN R_t climbs from its start to a plateau after 200K",
        (Check("moe", R_ATTN_RISE, ">", 0.0, "21.5% → 33-34% (table 2)", "table 2: ATTN concentration rises from the start to a plateau after 200K"),),
        sets=("attn-layer",),
    ),
    Claim(
        "ffn-layer-consolidation",
        "FFN layer profiles, 10K-600K: MoE ρ_avg higher, σ_rel lower than dense",
        (
            _more(_rho("ffn", CONSOLIDATION), "0.97 vs 0.54", "text: OLMoE achieves a near-perfect ρ of 0.97 ... OLMo's is only 0.54"),
            _less(_sigma("ffn", CONSOLIDATION), "0.37 vs 5.01", "text: OLMoE's σ is an order of magnitude lower than OLMo's (0.37 vs. 5.01)"),
        ),
    ),
    Claim(
        "attn-layer-consolidation",
        "ATTN layer profiles, 10K-600K: MoE ρ_avg higher, σ_rel lower than dense",
        (
            _more(_rho("attn", CONSOLIDATION), "0.97 vs 0.49", "text: OLMoE achieves a high ρ (0.97) ... OLMo, with a ρ (0.49)"),
            _less(_sigma("attn", CONSOLIDATION), "0.49 vs 8.64", "text: a low σ of 0.49 ... OLMo ... a σ of 8.64"),
        ),
    ),
    Claim(
        "moe-full-run-consolidation",
        "MoE layer profiles stay consolidated over the whole run (10K-end)",
        (
            Check("moe", _rho("ffn", FULL_RUN), ">", 0.97, "0.97 (table 3)", "table 3 only (OLMoE 10K–1.2M): threshold = the table's value, not a bound in the text"),
            Check("moe", _rho("attn", FULL_RUN), ">", 0.95, "0.95 (table 3)", "table 3 only (OLMoE 10K–1.2M): threshold = the table's value, not a bound in the text"),
        ),
    ),
    Claim(
        "early-lock-in",
        "FFN layer profile locked in within 100K steps (MoE), volatile (dense)",
        (_more(_rho("ffn", WITHIN_100K), "≥ 0.97 vs 0.69 (table)", "abstract: MoE locks into a stable importance profile within 100K steps, whereas the dense model remains volatile"),),
    ),
    Claim(
        "ablate-top1-head",
        "HIT@10 drop when the top-1 head is masked: MoE negligible, dense large",
        (_less(_drop("top1-head"), "0.06% vs 16.46%", "text: the top-1 head in OLMo causes a drop (16.46%); negligible in OLMoE"),),
        sets=("heads",),
    ),
    Claim(
        "ablate-top10-heads",
        "HIT@10 drop when the top-10 heads are masked: MoE < 10%, dense > 50%",
        (
            Check("moe", _drop("top10-heads"), "<", 10.0, "9.44%", "abstract: masking the ten most important MoE heads reduces HIT@10 by 10%"),
            Check("dense", _drop("top10-heads"), ">", 50.0, "50.43%", "abstract: compared with 50% for the dense model"),
            _less(_drop("top10-heads"), "9.44% vs 50.43%", "text: substantially smaller than in OLMo"),
        ),
        sets=("heads",),
    ),
    Claim(
        "ablate-top1pct-ffn",
        "HIT@10 drop when the top-1% FFN neurons (S_t) are masked: MoE less than dense",
        (_less(_drop("top1pct-ffn"), "35.5% vs 96.1%", "text: OLMoE exhibits a moderate reduction of 35.5% ... OLMo nearly collapses, with a 96.1% mean drop"),),
        sets=("ffn",),
    ),
)


def claim_by_id(claim_id: str) -> Claim:
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise KeyError(f"no claim {claim_id!r}; claims: {', '.join(c.id for c in CLAIMS)}")


def claim_sides() -> list[tuple[str, str]]:
    """(claim id, side) of every test, in catalogue order."""
    return [(claim.id, side) for claim in CLAIMS for side in claim.sides]
