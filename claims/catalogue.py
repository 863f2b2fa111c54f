"""The paper's 14 claims: for each model family, what is measured, the paper's value, and the test.

Thresholds: the paper's own where it states one (MoE R_t > 45%, top-10-head drop < 10% for MoE
and > 50% for dense); otherwise the midpoint between the paper's MoE and dense values, tested in
the direction the paper reports (e.g. MoE early FFN J_stab 22.2% vs dense 6.3%: MoE > 14.25%,
dense < 14.25%). Shape claims test differences (a dip, then a climb) against 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .measure import Quantity, SeriesMeasurements
from .windows import CONSOLIDATION, EARLY, FULL_RUN, LATE, PLATEAU, WITHIN_100K


@dataclass(frozen=True)
class Check:
    label: str
    paper: str
    measure: Callable[[SeriesMeasurements], Quantity]
    op: str  # ">" or "<"
    threshold: float
    percent: bool = False  # a fraction, shown ×100 with a % sign
    unit: str = ""  # shown after the value otherwise

    def format(self, value: float) -> str:
        if not math.isfinite(value):
            return "undefined"
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3g}{self.unit}"


@dataclass(frozen=True)
class Claim:
    id: str
    finding: str
    checks: dict[str, tuple[Check, ...]]  # family -> its checks

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.checks)


def _mid(a: float, b: float) -> float:
    return (a + b) / 2


def _difference(a: Callable, b: Callable) -> Callable[[SeriesMeasurements], Quantity]:
    def measure(m: SeriesMeasurements) -> Quantity:
        qa, qb = a(m), b(m)
        return Quantity(qa.value - qb.value, qa.replicates - qb.replicates, sorted(set(qa.steps) | set(qb.steps)))

    return measure


def _dip_then_climb(trajectory: str, peak: int, dip: int) -> Callable[[SeriesMeasurements], Quantity]:
    """min(J@peak - J@dip, J@last - J@dip): positive when the trajectory dips, then climbs above the dip."""

    def measure(m: SeriesMeasurements) -> Quantity:
        t = getattr(m, trajectory)
        p, d, last = m.pair_at(t, peak), m.pair_at(t, dip), m.pair_at(t, -1)
        value = min(p.value - d.value, last.value - d.value)
        replicates = np.minimum(p.replicates - d.replicates, last.replicates - d.replicates)
        return Quantity(value, replicates, sorted(set(p.steps) | set(d.steps) | set(last.steps)))

    return measure


def _jstab(kind: str, window) -> Callable:
    return lambda m: m.pair_mean(getattr(m, f"jstab_{kind}"), window)


def _profile(kind: str, window, statistic: str) -> Callable:
    return lambda m: m.profile_stat(kind, window, statistic)


def _drop(ablation: str) -> Callable:
    return lambda m: m.checkpoint_mean(m.drops[ablation], FULL_RUN)


def _pct(label, paper, measure, op, threshold) -> Check:
    return Check(label, paper, measure, op, threshold, percent=True)


def _consolidation(kind: str, moe: tuple[float, float], dense: tuple[float, float]) -> dict:
    rho_t, sigma_t = _mid(moe[0], dense[0]), _mid(moe[1], dense[1])
    return {
        "moe": (
            Check("ρ_avg", f"{moe[0]}", _profile(kind, CONSOLIDATION, "rho"), ">", rho_t),
            Check("σ_rel", f"{moe[1]}", _profile(kind, CONSOLIDATION, "sigma"), "<", sigma_t),
        ),
        "dense": (
            Check("ρ_avg", f"{dense[0]}", _profile(kind, CONSOLIDATION, "rho"), "<", rho_t),
            Check("σ_rel", f"{dense[1]}", _profile(kind, CONSOLIDATION, "sigma"), ">", sigma_t),
        ),
    }


def _two_sided(label, measure, moe: float, dense: float, threshold: float | None = None, moe_op: str = ">") -> dict:
    """Paper values in percent; the measure gives a fraction (J_stab, R_t)."""
    t = _mid(moe, dense) / 100 if threshold is None else threshold
    dense_op = "<" if moe_op == ">" else ">"
    return {
        "moe": (_pct(label, f"{moe}%", measure, moe_op, t),),
        "dense": (_pct(label, f"{dense}%", measure, dense_op, t),),
    }


def _drop_claim(ablation: str, moe: float, dense: float, moe_threshold: float | None = None, dense_threshold: float | None = None) -> dict:
    """HIT@10 drops are in percent already: MoE drops less than dense."""
    return {
        "moe": (Check("drop", f"{moe}%", _drop(ablation), "<", moe_threshold or _mid(moe, dense), unit="%"),),
        "dense": (Check("drop", f"{dense}%", _drop(ablation), ">", dense_threshold or _mid(moe, dense), unit="%"),),
    }


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "ffn-concentration",
        "top-1% FFN neurons take most positive gains in MoE (R_t > 45%), far less in dense",
        _two_sided("R_t", lambda m: m.pair_mean(m.r_ffn, FULL_RUN), 48.9, 26.4, threshold=0.45),
    ),
    Claim("ffn-stability-early", "FFN top-1% set stability, 10K-70K", _two_sided("J_stab", _jstab("ffn", EARLY), 22.2, 6.3)),
    Claim("ffn-stability-late", "FFN top-1% set stability, 100K-600K", _two_sided("J_stab", _jstab("ffn", LATE), 25.3, 6.1)),
    Claim(
        "ffn-stability-final",
        "FFN top-1% set stability at the last checkpoint pair",
        _two_sided("J_stab", lambda m: m.pair_at(m.jstab_ffn, -1), 44.2, 4.9),
    ),
    Claim(
        "ffn-explore-refine-consolidate",
        "MoE FFN J_stab rises (70K), dips (200K), then climbs to the end",
        {"moe": (_pct("min(J@70K-J@200K, J@end-J@200K)", "27% / 17.1% / 44.2%", _dip_then_climb("jstab_ffn", 70_000, 200_000), ">", 0.0),)},
    ),
    Claim(
        "attn-stability",
        "ATTN J_stab: MoE dips at 200K then climbs; dense declines from its 70K peak",
        {
            "moe": (_pct("min(J@100K-J@200K, J@end-J@200K)", "44.9% / 33.4% / 57.7%", _dip_then_climb("jstab_attn", 100_000, 200_000), ">", 0.0),),
            "dense": (
                _pct(
                    "J@70K - J@end",
                    "24.6% -> 15.1%",
                    _difference(lambda m: m.pair_at(m.jstab_attn, 70_000), lambda m: m.pair_at(m.jstab_attn, -1)),
                    ">",
                    0.0,
                ),
            ),
        },
    ),
    Claim(
        "attn-concentration",
        "MoE ATTN R_t climbs from its start to a plateau after 200K",
        {
            "moe": (
                _pct(
                    "mean R after 200K - R at start",
                    "21.5% -> 33-34%",
                    _difference(lambda m: m.pair_mean(m.r_attn, PLATEAU), lambda m: m.pair_at(m.r_attn, 10_000)),
                    ">",
                    0.0,
                ),
            )
        },
    ),
    Claim("ffn-layer-consolidation", "FFN layer profiles, 10K-600K: ρ_avg and σ_rel", _consolidation("ffn", (0.97, 0.37), (0.54, 5.01))),
    Claim("attn-layer-consolidation", "ATTN layer profiles, 10K-600K: ρ_avg and σ_rel", _consolidation("attn", (0.97, 0.49), (0.49, 8.64))),
    Claim(
        "moe-full-run-consolidation",
        "MoE layer profiles stay consolidated over the whole run (10K-end)",
        {
            "moe": (
                Check("FFN ρ_avg", "0.97", _profile("ffn", FULL_RUN, "rho"), ">", 0.9),
                Check("ATTN ρ_avg", "0.95", _profile("attn", FULL_RUN, "rho"), ">", 0.9),
            )
        },
    ),
    Claim(
        "early-lock-in",
        "FFN layer profile locked in within 100K steps (MoE), volatile (dense)",
        {
            "moe": (Check("ρ_avg", "≥ 0.97", _profile("ffn", WITHIN_100K, "rho"), ">", _mid(0.97, 0.69)),),
            "dense": (Check("ρ_avg", "0.69", _profile("ffn", WITHIN_100K, "rho"), "<", _mid(0.97, 0.69)),),
        },
    ),
    Claim("ablate-top1-head", "HIT@10 drop when the top-1 head is masked", _drop_claim("top1-head", 0.06, 16.46)),
    Claim(
        "ablate-top10-heads",
        "HIT@10 drop when the top-10 heads are masked: MoE < 10%, dense > 50%",
        _drop_claim("top10-heads", 9.44, 50.43, moe_threshold=10.0, dense_threshold=50.0),
    ),
    Claim("ablate-top1pct-ffn", "HIT@10 drop when the top-1% FFN neurons are masked", _drop_claim("top1pct-ffn", 35.47, 96.19)),
)
