"""The paper's 14 findings as checks: what is measured, on which side, against what, and why.

Threshold rule: a check's threshold is either a bound the paper's *text* states for one model
(MoE R_t "over 45%"), or 0 for a difference in the direction the text states: the contrast
MoE − dense for a comparison of the two models, the change between named steps for a shape.
A value the paper only reports (the top-10-head drops 9.44% and 50.43%, table 3's full-run
ρ_avg) is no threshold: such a check tests that the measured value is no further than the
equivalence margin (`--margin`, a fraction of the quantity's range: 5 points of a drop, 0.05 of
ρ by default) past the paper's value on the side the text gives. A number found only in the
paper's tables is shown as a magnitude, marked "(table N)". Each check's `source` quotes the
sentence it rests on.

Ablations are tested on held-out sets: the masked units are chosen on one half of the examples
and the drop is scored on the other (both ways), so no example is scored with a set its own
scores chose. The paper's in-sample drop, a random set's and the HIT@1 drops are reported beside.

Sides: `moe` and `dense` checks read one family's series only; `contrast` checks read both. A
pytest id is `<claim>-<side>`, so `-k moe` runs only MoE-side checks (never loading the dense
series), `-k dense` the dense side, `-k contrast` the comparisons.
"""

from __future__ import annotations

from claims.catalogue.checks import (
    CHANGE,
    Check,
    Claim,
    Quantity,
    change_of,
    concentration_held_out,
    concentration_held_out_at,
    concentration_reported,
    drop_of,
    drops_reported,
    held_out_of,
    jstab_of,
    lock_in_of,
    moe_above_dense,
    moe_below_dense,
    rho_of,
    sigma_norm_of,
    sigma_rel_reported,
    stability_of,
    trend_of,
)
from claims.statistics.verdicts import ALPHA
from claims.statistics.windows import AFTER_200K, CONSOLIDATION, EARLY, END, FULL_RUN, LATE

FIG1 = "text: As shown in Figure 1, OLMoE exhibits markedly higher Top-1% set stability"
DENSE_FFN_J = "text: OLMo's Jaccard overlap peaks briefly at 10.2% around 70K steps, but then declines to 4.9% by 600K"
DENSE_ATTN_J = (
    "text: OLMo's Jaccard overlap peaks at 24.6% around 70K steps but then steadily declines to 15.1% by 600K"
)
R_FFN = held_out_of("ffn", FULL_RUN)
R_ATTN_RISE = Quantity(
    "ATTN R_t (held out) 200K-end minus the first pair",
    lambda m, c: concentration_held_out("attn", AFTER_200K)(m, c) - concentration_held_out_at("attn", 10_000)(m, c),
    set_statistic=True,
    percent=True,
    limits=CHANGE,
    concentration="attn",
)
RELIABILITY = (
    "set stability beyond noise (opposite halves across the pair over the halves at one checkpoint): co-primary, "
    "so that stabler sets are not only less noisy scores"
)


def stability_checks(kind: str, paper: str, source: str, window=None, paper_step: int | None = None) -> tuple:
    """A J_stab contrast and its co-primary set stability beyond noise contrast (both MoE − dense > 0)."""
    quantity = jstab_of(kind, window, paper_step)
    return (
        moe_above_dense(quantity=quantity, paper=paper, source=source, coprimary=f"{kind} stability"),
        moe_above_dense(
            quantity=stability_of(kind, window, paper_step),
            paper=paper,
            source=f"{source}; {RELIABILITY}",
            coprimary=f"{kind} stability",
        ),
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="ffn-concentration",
        finding=(
            "top-1% FFN neurons take most positive gains in MoE (R_t > 45%), far less in dense; R_t held out "
            "(the top 1% chosen on one half of the examples, its share scored on the other), and among routed units"
        ),
        checks=(
            Check(
                side="moe",
                quantity=R_FFN,
                op=">",
                threshold=0.45,
                paper="48.9% (table 2); over 45% (abstract)",
                source=(
                    "abstract: the top approximately 1% of MoE neurons capture over 45% of positive updates; "
                    "held out, so that a noise tail chosen on the same examples does not count (noise alone gives 0)"
                ),
            ),
            moe_above_dense(
                quantity=R_FFN,
                paper="48.9% vs 26.4% (table 2)",
                source="abstract: forming a high-utility core, which is absent in the dense baseline",
                coprimary="ffn concentration",
            ),
            moe_above_dense(
                quantity=held_out_of("ffn", FULL_RUN, "routed"),
                paper="48.9% vs 26.4% (table 2)",
                source=(
                    "abstract: forming a high-utility core, which is absent in the dense baseline; the routed "
                    "control: among units routed at t or t−1, so unrouted experts' exact zeros do not make the core"
                ),
                coprimary="ffn concentration",
            ),
        ),
        sets=("ffn-layer",),
        reported=concentration_reported("ffn", FULL_RUN),
    ),
    Claim(
        id="ffn-stability-early",
        finding="FFN top-1% set stability, 10K-70K",
        checks=stability_checks("ffn", "22.2% vs 6.3% (table 2)", FIG1, window=EARLY),
        sets=("ffn",),
    ),
    Claim(
        id="ffn-stability-late",
        finding="FFN top-1% set stability, 100K-600K",
        checks=stability_checks("ffn", "25.3% vs 6.1% (table 2)", FIG1, window=LATE),
        sets=("ffn",),
    ),
    Claim(
        id="ffn-stability-final",
        finding="FFN top-1% set stability at the last checkpoint pair",
        checks=stability_checks(
            "ffn",
            "44.2% (1.2M) vs 4.9% (600K)",
            f"text: climbs monotonically to 44.2% by 1.2M steps; {DENSE_FFN_J}",
            paper_step=END,
        ),
        sets=("ffn",),
    ),
    Claim(
        id="ffn-explore-refine-consolidate",
        finding="MoE FFN J_stab rises to 70K and dips at 200K; after 200K it climbs, unlike the dense model's",
        checks=(
            Check(
                side="moe",
                quantity=change_of("ffn", 10_000, 70_000, "rise"),
                op=">",
                threshold=0.0,
                paper="→ 27% @70K",
                source="text: it rises to 27% at 70K steps",
            ),
            Check(
                side="moe",
                quantity=change_of("ffn", 70_000, 200_000, "dip"),
                op="<",
                threshold=0.0,
                paper="27% → 17.1%",
                source="text: dips to 17.1% at 200K",
            ),
            moe_above_dense(
                quantity=trend_of("ffn"),
                paper="17.1% → 44.2% vs → 4.9% (600K): a monotone climb vs a decline",
                source=f"text: then climbs monotonically to 44.2% by 1.2M steps; {DENSE_FFN_J}",
            ),
        ),
        sets=("ffn",),
        reported=(change_of("ffn", 200_000, END, "climb"),),
    ),
    Claim(
        id="attn-stability",
        finding=(
            "ATTN J_stab: MoE dips at 200K then climbs, unlike dense, which declines from its 70K peak; MoE above dense"
        ),
        checks=(
            Check(
                side="moe",
                quantity=change_of("attn", 100_000, 200_000, "dip"),
                op="<",
                threshold=0.0,
                paper="44.9% → 33.4%",
                source="text: rises rapidly to 44.9% at 100K steps ..., dips to 33.4% at 200K steps",
            ),
            moe_above_dense(
                quantity=trend_of("attn"),
                paper="33.4% → 57.7% vs → 15.1% (600K): a sustained climb vs a steady decline",
                source=(
                    "text: the overlap enters a sustained and robust upward trajectory, ultimately reaching 0.577 "
                    f"at 1200K steps; {DENSE_ATTN_J}"
                ),
            ),
            Check(
                side="dense",
                quantity=change_of("attn", 70_000, 600_000, "change"),
                op="<",
                threshold=0.0,
                paper="24.6% → 15.1%",
                source=DENSE_ATTN_J,
            ),
            *stability_checks(
                "attn",
                "44.9% / 33.4% vs peak 24.6% (text)",
                "text: There is a significant difference in the stability of the core neuron sets",
                window=CONSOLIDATION,
            ),
        ),
        sets=("attn",),
        reported=(change_of("attn", 200_000, END, "climb"),),
    ),
    Claim(
        id="attn-concentration",
        finding="MoE ATTN R_t climbs from its start to a plateau after 200K",
        checks=(
            Check(
                side="moe",
                quantity=R_ATTN_RISE,
                op=">",
                threshold=0.0,
                paper="21.5% → 33-34%",
                source=(
                    "text: this importance score ratio steadily climbs from an initial 21.5%, "
                    "stabilizing in a plateau of 33%–34% after 200K steps; each end held out"
                ),
            ),
        ),
        sets=("attn-layer",),
        reported=concentration_reported("attn", FULL_RUN),
    ),
    Claim(
        id="ffn-layer-consolidation",
        finding="FFN layer profiles, 10K-600K: MoE ρ_avg higher, its profile's fluctuation (σ_norm) lower than dense",
        checks=(
            moe_above_dense(
                quantity=rho_of("ffn", CONSOLIDATION),
                paper="0.97 vs 0.54 (table 3)",
                source="text: OLMoE achieves a near-perfect ρ of 0.97 between 10K and 600K ... OLMo's is only 0.54",
            ),
            moe_below_dense(
                quantity=sigma_norm_of("ffn", CONSOLIDATION),
                paper="σ_rel 0.37 vs 5.01 (table 3)",
                source=(
                    "text: OLMoE's σ is an order of magnitude lower than OLMo's (0.37 vs. 5.01); "
                    "tested with σ_norm (profiles.py)"
                ),
            ),
        ),
        reported=sigma_rel_reported("ffn"),
    ),
    Claim(
        id="attn-layer-consolidation",
        finding="ATTN layer profiles, 10K-600K: MoE ρ_avg higher, its profile's fluctuation (σ_norm) lower than dense",
        checks=(
            moe_above_dense(
                quantity=rho_of("attn", CONSOLIDATION),
                paper="0.97 vs 0.49 (table 3)",
                source="text: OLMoE achieves a high ρ (0.97) ... OLMo, with a ρ (0.49)",
            ),
            moe_below_dense(
                quantity=sigma_norm_of("attn", CONSOLIDATION),
                paper="σ_rel 0.49 vs 8.64 (table 3)",
                source="text: a low σ of 0.49 ... OLMo ... a σ of 8.64; tested with σ_norm (profiles.py)",
            ),
        ),
        reported=sigma_rel_reported("attn"),
    ),
    Claim(
        id="full-run-consolidation",
        finding="MoE layer profiles stay consolidated over the whole run (10K-end), more than the dense model's",
        checks=(
            moe_above_dense(
                quantity=rho_of("ffn", FULL_RUN),
                paper="0.97 (table 3, OLMoE 10K–1.2M) vs 0.54 (OLMo 10K–600K)",
                source=(
                    "table 3 (OLMoE 10K–1.2M: 0.97); text: consolidation ... whereas OLMo's is only 0.54: "
                    "a MoE − dense contrast over each run's whole post-onset stretch"
                ),
            ),
            moe_above_dense(
                quantity=rho_of("attn", FULL_RUN),
                paper="0.95 (table 3, OLMoE 10K–1.2M) vs 0.49 (OLMo 10K–600K)",
                source=(
                    "table 3 (OLMoE 10K–1.2M: 0.95); text: OLMo, with a ρ (0.49): "
                    "a MoE − dense contrast over each run's whole post-onset stretch"
                ),
            ),
        ),
    ),
    Claim(
        id="early-lock-in",
        finding="FFN and ATTN layer profiles formed by 100K stay (MoE), keep shifting (dense)",
        checks=(
            moe_above_dense(
                quantity=lock_in_of("ffn"),
                paper="nearly identical 50K-600K vs noticeable shifts (figure 3)",
                source=(
                    "text: Less than 100K steps suffice for MoE FFN and ATTN layers to lock into a stable "
                    "importance profile, whereas the dense model exhibits volatility; OLMoE's FFN importance "
                    "distribution is nearly identical between 50K and 600K steps"
                ),
            ),
            moe_above_dense(
                quantity=lock_in_of("attn"),
                paper="stable vs continuously reconfigured (figure 4)",
                source=(
                    "text: Less than 100K steps suffice for MoE FFN and ATTN layers to lock into a stable "
                    "importance profile, whereas the dense model exhibits volatility"
                ),
            ),
        ),
    ),
    Claim(
        id="ablate-top1-head",
        finding="HIT@10 drop when the top-1 head is masked: MoE negligible, dense large",
        checks=(
            moe_below_dense(
                quantity=drop_of("top1-head"),
                paper="0.06% vs 16.46% (table 4)",
                source=(
                    "text: Ablating the single most important head in OLMo causes a performance drop (16.46%), "
                    "whereas the same intervention has a negligible effect on OLMoE"
                ),
            ),
        ),
        reported=drops_reported("top1-head"),
        sets=("heads",),
    ),
    Claim(
        id="ablate-top10-heads",
        finding="HIT@10 drop when the top-10 heads are masked: MoE minor (9.44%), dense catastrophic (50.43%)",
        checks=(
            Check(
                side="moe",
                quantity=drop_of("top10-heads"),
                op="<",
                threshold=9.44,
                equivalence=True,
                paper="9.44% (table 4)",
                source=(
                    "text: causing only a minor 9.44% average performance drop; "
                    "the reported value plus the equivalence margin"
                ),
            ),
            Check(
                side="dense",
                quantity=drop_of("top10-heads"),
                op=">",
                threshold=50.43,
                equivalence=True,
                paper="50.43% (table 4)",
                source="text: averages a catastrophic 50.43%; the reported value less the equivalence margin",
            ),
            moe_below_dense(
                quantity=drop_of("top10-heads"),
                paper="9.44% vs 50.43% (table 4)",
                source="text: the performance drop is not only substantially smaller than in OLMo",
            ),
        ),
        reported=drops_reported("top10-heads"),
        sets=("heads",),
    ),
    Claim(
        id="ablate-top1pct-ffn",
        finding="HIT@10 drop when the top-1% FFN neurons (S_t) are masked: MoE less than dense",
        checks=(
            moe_below_dense(
                quantity=drop_of("top1pct-ffn"),
                paper="35.5% vs 96.1% (table 4)",
                source=(
                    "text: OLMoE exhibits a moderate performance reduction of 35.5% ... "
                    "OLMo nearly collapses, with a 96.1% mean drop"
                ),
            ),
        ),
        reported=drops_reported("top1pct-ffn"),
        sets=("ffn",),
    ),
)


HYPOTHESES = len({(c.id, k.side, k.coprimary or k.quantity.label) for c in CLAIMS for k in c.checks})
"""Holm's family: the catalogue's hypotheses (a check, or a test's co-primary checks together)."""
POWER_ALPHA = ALPHA / HYPOTHESES  # the one-sided level seeds for 80% power are planned at: Holm's first step


def claim_by_id(claim_id: str) -> Claim:
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise KeyError(f"no claim {claim_id!r}; claims: {', '.join(c.id for c in CLAIMS)}")


def claim_sides() -> list[tuple[str, str]]:
    """(claim id, side) of every test, in catalogue order."""
    return [(claim.id, side) for claim in CLAIMS for side in claim.sides]
