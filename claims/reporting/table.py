"""The claims-vs-measured table and the markdown report around it (rendering only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tabulate import tabulate

from claims.catalogue.evaluate import ClaimResult
from claims.running.options import READINGS
from claims.statistics.verdicts import combine

MACHINE_NOTE = (
    "Results do not depend on the thread count or the number of workers; on another CPU or kernel set their last "
    "bits differ, and a miniature rebuilt there follows another training trajectory: compare its verdicts with the "
    "seed spread, not with this table."
)
SCORES = {
    "exact": "exact Gated-LPI (the paper's score)",
    "first-order": "first-order approximation of Gated-LPI (opt-in, not the paper's exact score)",
}
ATTENTION = {"sum": "position vectors summed, then one LPI", "each": "the sum of per-position LPIs"}
CONFOUND_NOTE = (
    "Miniature suite: the MoE and the dense model of a seed train on the same token stream (batch, steps, seed), "
    "which removes the paper's corpus confound (OLMoE-MIX vs Dolma)."
)
# Facts, not priors, is judged on HIT@1: 7 of the 12 evaluation relations have at most 10 distinct
# answers, so a relation's prior alone reaches a HIT@10 near 0.8 and no model can beat it by much.
PRIOR_MARGIN = 0.2


def facts_over_priors(training: dict) -> list[str]:
    """Each series' final HIT@1 beside the prior-only HIT@1, and a warning where it is not `PRIOR_MARGIN` above."""
    rows = [
        (family, seed, t["final_hit_at_1"], t["prior_baseline_hit_at_1"])
        for family, seeds in training.items()
        for seed, t in seeds.items()
    ]
    if not rows or rows[0][3] is None:
        return []
    prior = rows[0][3]
    lines = ["final HIT@1 (prior-only " + f"{prior:.3f}): " + ", ".join(f"{f} seed {s} {h:.3f}" for f, s, h, _ in rows)]
    short = [f"{f} seed {s} {h - prior:+.3f}" for f, s, h, _ in rows if h < prior + PRIOR_MARGIN]
    if short:
        lines.append(
            f"**WARNING: final HIT@1 less than {PRIOR_MARGIN} above the prior-only baseline** "
            f"({'; '.join(short)}): these "
            "models answer mostly from the relations' answer frequencies, not from the individual facts, so what the "
            "claims say about knowledge neurons rests on weak knowledge."
        )
    return lines


def _checkpoints(steps: dict[str, list[int]]) -> str:
    return "; ".join(f"{f}: {', '.join(map(str, s)) or '—'}" for f, s in steps.items())


def table(results: Sequence[ClaimResult], mode: str) -> str:
    """One row per check: the paper's magnitude, ours (each model's), the tested quantity with its
    interval and claimed side, the checkpoints, and the verdict; `mode` names the scores."""
    rows = []
    for r in results:
        for i, c in enumerate(r.checks):
            magnitudes = "; ".join(f"{f} {m['shown']}" for f, m in c.magnitudes.items()) if c.side == "contrast" else ""
            rows.append(
                [
                    r.test_id if i == 0 else "",
                    c.label,
                    c.paper,
                    magnitudes,
                    f"{c.shown} ({c.op} {c.threshold_shown})",
                    _checkpoints(c.checkpoints),
                    mode,
                    "" if c.holm_p is None else f"{c.holm_p:.3g}",
                    decided(c),
                    c.verdict,
                    "" if c.seeds_needed is None else str(c.seeds_needed),
                    decided(r) if i == 0 else "",
                ]
            )
    headers = [
        "test",
        "check",
        "paper",
        "measured per model [95% CI]",
        "tested [95% CI] (claimed side)",
        "checkpoints",
        "scores",
        "Holm p",
        "check verdict (Holm)",
        "unadjusted",
        "seeds for 80% power",
        "verdict (Holm)",
    ]
    return tabulate(rows, headers=headers, tablefmt="github")


SEEDS_NEEDED_NOTE = (
    "Verdicts are Holm-adjusted over the run's checks (the 'verdict (Holm)' columns decide each test's pytest "
    "outcome); 'unadjusted' is each check's own 95% interval against its threshold. Seeds for 80% power (an "
    "inconclusive check): the fewest seeds at which the interval rule would decide it with 80% probability if the "
    "true effect were the measured point and the spreads stayed as measured; the examples' part shared by every seed "
    "does not shrink with more seeds ('not by seeds' where it alone is too wide). The measured point is itself "
    "uncertain, and selected among many checks: the count is a planning figure. '> 100' says the effect is small "
    "beside the spread at this point estimate, not that there is no effect."
)


def decided(result) -> str:
    """The verdict that decides: Holm-adjusted where the run adjusted it, else the check's or test's own."""
    return result.holm_verdict or result.verdict


def tally(verdicts: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))


def by_finding(results: Sequence[ClaimResult]) -> dict[str, str]:
    """Each finding's (claim's) verdict over all its tests: replicated only when every test is."""
    tests: dict[str, list[str]] = {}
    for r in results:
        tests.setdefault(r.claim, []).append(decided(r))
    return {claim: combine(verdicts) for claim, verdicts in tests.items()}


def multiplicity_lines(summary: dict) -> list[str]:
    return [
        f"- {summary['checks']} checks, each one-sided at {100 * summary['alpha_one_sided']:.1f}%: "
        f"were every effect null, {summary['expected_false_replications']:.2f} of them would read replicated "
        "on average.",
        f"- Holm-adjusted over the run's checks (these decide): {summary['replicated_holm']} replicated "
        f"(unadjusted {summary['replicated']}), {summary['not_replicated_holm']} not replicated "
        f"(unadjusted {summary['not_replicated']}); by test {summary['tests_replicated_holm']} of "
        f"{summary['tests']} replicated (unadjusted {summary['tests_replicated']}).",
    ]


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else "undefined"
    return str(v)


def markdown(results: Sequence[ClaimResult], context: dict) -> str:
    config = context["config"]
    line = ", ".join(f"{k}={v}" for k, v in config.items() if v not in (None, (), []))
    readings = ", ".join(f"{k}={config[k]}" for k in READINGS)
    findings = by_finding(results)
    lines = [
        "# lpi-claims: claims vs measured",
        "",
        f"`{line}`",
        "",
        f"Scores: {SCORES[config['lpi_mode']]}. Readings in force: {readings}; "
        f"attention neurons: {ATTENTION[config['attn_positions']]}.",
        "",
        (
            f"Verdicts (Holm-adjusted, as pytest decides): {tally([decided(r) for r in results])} of {len(results)} "
            f"tests; by finding, {tally(list(findings.values()))} of {len(findings)} findings. Unadjusted: "
            f"{tally([r.verdict for r in results])}."
        )
        if results
        else "Verdicts: no test was measured (see Not measured).",
        "",
        table(results, config["lpi_mode"]),
        "",
        f"{SEEDS_NEEDED_NOTE}",
        "",
        "## Multiplicity",
        "",
        *(multiplicity_lines(context["multiplicity"]) if "multiplicity" in context else ["- not computed"]),
        "",
        "## Interval methods",
        "",
    ]
    lines += [f"- {m}" for m in sorted({c.method for r in results for c in r.checks})] or ["- none"]
    reported = [(r.test_id, label, values) for r in results for label, values in r.reported.items()]
    if reported:
        lines += ["", "## Reported beside the checks (not tested)", ""]
        lines += [
            f"- {test}: {label}: " + "; ".join(f"{f} {v['shown']}" for f, v in values.items())
            for test, label, values in reported
        ]
    lines += ["", "## Controls beside the set statistics", ""]
    for r in results:
        for family, values in r.controls.items():
            lines.append(f"- {r.test_id} ({family}): " + "; ".join(f"{k} {_value(v)}" for k, v in values.items()))
    lines += ["", "## Notes", ""]
    lines += [f"- {r.test_id}: {n}" for r in results for n in r.notes] or ["- none"]
    if config["suite"] == "miniature":
        lines += [f"- {CONFOUND_NOTE}"]
    if context["not_measured"]:
        lines += ["", "## Not measured", ""]
        by_reason: dict[str, list[str]] = {}
        for test_id, reason in sorted(context["not_measured"].items()):
            by_reason.setdefault(reason, []).append(test_id)
        lines += [f"- {', '.join(ids)}: {reason}" for reason, ids in by_reason.items()]
    for test_id, families in context.get("one_model", {}).items():
        for family, values in families.items():
            lines += ["", f"{test_id}, the {family} model alone (no verdict):", ""]
            lines += [f"- {label}: {v['shown']}" for label, v in values.items()]
    if "miniature" in context:
        lines += [
            "",
            "## Training (HIT@10 over the 906 prompts; onset = half the final gain over chance; fig0_training.png)",
            "",
        ]
        for family, seeds in context["miniature"].items():
            for seed, t in seeds.items():
                hits = ", ".join(f"{step}: {value:.3f}" for step, value in t["hit_at_10"].items())
                lines.append(
                    f"- **{family}** seed {seed}: onset step {t['onset_step']} of {t['total_steps']}; HIT@10 {hits}"
                )
        first = next(iter(next(iter(context["miniature"].values())).values()))
        lines.append(
            "- prior-only baseline (each relation's answers ranked by corpus frequency): "
            f"HIT@10 {_value(first['prior_baseline_hit_at_10'])}"
        )
        lines.append(f"- trained in {first['training_precision']}")
        lines += [f"- {line}" for line in facts_over_priors(context["miniature"])]
    lines += ["", "## Paper scale (checkpoint → paper step; — = before onset, no paper analogue)", ""]
    for key, text in context["scales"].items():
        lines.append(f"- **{key}**: {text}")
    lines += ["", "## Windows (paper steps → checkpoints used)", ""]
    for key, windows in context["windows"].items():
        lines.append(f"- **{key}**: " + "; ".join(f"{name}: {steps}" for name, steps in windows.items()))
    lines += ["", "## Models and revisions", ""]
    for family, info in context["series"].items():
        for s in info["series"]:
            lines.append(
                f"- **{family}** seed {s['seed']}: `{info['name']}`, checkpoints (step: revision, commit): "
                + ", ".join(
                    f"{c['step']}: {c['revision'] or 'local'} {c['commit'] or ''}".strip() for c in s["checkpoints"]
                )
            )
    lines += ["", "## Versions", "", "- " + ", ".join(f"{k} {v}" for k, v in context["versions"].items())]
    lines += [
        "",
        "## Machine",
        "",
        "- " + ", ".join(f"{k} {v}" for k, v in context["machine"].items()),
        f"- {MACHINE_NOTE}",
        "",
    ]
    return "\n".join(lines)
