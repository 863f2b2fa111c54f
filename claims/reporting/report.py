"""Build the report: evaluate the selected tests on the measured series, then write claims.md,
claims.json, index.html and the figures (rendering is in table.py, payload.py, html.py and figures.py)."""

from __future__ import annotations

import time
from pathlib import Path

from claims.catalogue.evaluate import ClaimResult, evaluate, families_of, one_model
from claims.catalogue.multiplicity import adjust
from claims.catalogue.paper import CLAIMS, HYPOTHESES
from claims.fixtures.miniature.build import MiniatureRun
from claims.fixtures.miniature.figure import training_figure
from claims.records.compute import versions
from claims.reporting.figures import figures
from claims.reporting.html import write_html_report
from claims.reporting.payload import payload
from claims.reporting.table import markdown
from claims.running.measurements import scales_for
from claims.running.suite import SuiteConfig
from claims.statistics.measure import SeriesMeasurements
from claims.statistics.windows import WINDOWS
from claims.storage.atomic import atomic_write_json, atomic_write_text
from lpi_core.reproducible import numeric_environment


def evaluate_all(
    config: SuiteConfig, measured: dict[str, list[SeriesMeasurements]], scales: dict, test_ids: set[str] | None = None
) -> list[ClaimResult]:
    """Every test (claim side) whose families are measured, or those in `test_ids`, in catalogue order."""
    return [
        evaluate(claim, side, measured, scales, config.rho_pairs, config.margin)
        for claim in CLAIMS
        for side in claim.sides
        if all(f in measured for f in families_of(side)) and (test_ids is None or f"{claim.id}-{side}" in test_ids)
    ]


def one_model_numbers(
    config: SuiteConfig, measured: dict[str, list[SeriesMeasurements]], scales: dict, test_ids: set[str]
) -> dict[str, dict[str, dict]]:
    """Contrast tests in `test_ids` with one model measured: test id -> that family -> one_model's numbers."""
    out: dict[str, dict[str, dict]] = {}
    present = [f for f in families_of("contrast") if f in measured]
    if len(present) != 1:
        return out
    for claim in CLAIMS:
        if "contrast" in claim.sides and f"{claim.id}-contrast" in test_ids:
            out[f"{claim.id}-contrast"] = {
                present[0]: one_model(claim, present[0], measured, scales, config.rho_pairs, config.margin)
            }
    return out


def build_report(
    config: SuiteConfig,
    measured: dict[str, list[SeriesMeasurements]],
    series_info: dict[str, dict],
    test_ids: set[str] | None = None,
    not_measured: dict[str, str] | None = None,
) -> tuple[list[ClaimResult], Path]:
    """Evaluate the tests (all, or those in `test_ids`) and write the report files; `not_measured`
    maps the test ids that have no measurement to the reason."""
    scales = scales_for(config, measured)
    results = evaluate_all(config, measured, scales, test_ids)
    context = {
        "multiplicity": adjust(results, HYPOTHESES),
        "config": config.as_dict(),
        "series": series_info,
        "scales": {f"{f} seed {s}": scale.describe() for (f, s), scale in sorted(scales.items())},
        "windows": {
            f"{f} seed {s}": {w.name: scale.window(w) for w in WINDOWS} for (f, s), scale in sorted(scales.items())
        },
        "versions": versions(),
        "machine": numeric_environment(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "not_measured": not_measured or {},
        "one_model": one_model_numbers(config, measured, scales, set(not_measured or {})),
    }
    out = Path(config.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = config.miniature(build=False) if config.suite == "miniature" and measured else None
    if run is not None:
        context["miniature"] = miniature_training(run, {f: [m.seed for m in series] for f, series in measured.items()})
    atomic_write_text(out / "claims.md", markdown(results, context))
    data = payload(results, measured, context, config.lpi_mode)
    atomic_write_json(out / "claims.json", data)
    atomic_write_text(out / "index.html", write_html_report(out, data))
    if measured:
        figures(measured, out)
    if run is not None and run.seeds:  # the figure shows seeds whose two series are built (not under -k moe)
        training_figure(run, out / "fig0_training.png")
    return results, out


def miniature_training(run: MiniatureRun, seeds: dict[str, list[int]]) -> dict:
    """Per family and seed: HIT@10 over the 906 prompts at each step, onset, run length, the final
    HIT@1, the prior-only baselines (HIT@10 and HIT@1) and the training precision."""
    prior_hit_at_1 = run.prior_baseline_hit_at(1)
    return {
        family: {
            str(seed): {
                "hit_at_10": {str(step): value for step, value in run.hit_at_10(family, seed).items()},
                "onset_step": run.onset_step(family, seed),
                "total_steps": run.series(family, seed).total_steps,
                "prior_baseline_hit_at_10": run.prior_baseline_hit_at_10,
                "final_hit_at_1": list(run.hit_at_1(family, seed).values())[-1],
                "prior_baseline_hit_at_1": prior_hit_at_1,
                "training_precision": run.training_precision,
            }
            for seed in family_seeds
        }
        for family, family_seeds in seeds.items()
    }
