"""The claims-vs-measured report: claims.md (tabulate), claims.json, and the paper-style figures.

`lpi-claims report` builds it from the cache alone (after runs on one or several machines).
"""
from __future__ import annotations

import argparse
import io
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tabulate import tabulate  # noqa: E402

from lpi_core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402
from lpi_core.metrics import random_set_jaccard  # noqa: E402

from .catalogue import CLAIMS  # noqa: E402
from .evaluate import ClaimResult, evaluate  # noqa: E402
from .measure import SeriesMeasurements, measure_series  # noqa: E402
from .records import RecordStore, record_key, versions  # noqa: E402
from .suite import FAMILIES, SuiteConfig  # noqa: E402
from .windows import WINDOWS  # noqa: E402

CONFOUND_NOTE = (
    "Miniature suite: the MoE and the dense model share depth, width, total parameters, tokenizer and the "
    "same token stream (batch, steps, seed), which removes the paper's corpus confound (OLMoE-MIX vs Dolma)."
)


SCORES = {
    "exact": "exact Gated-LPI (the paper's score)",
    "first-order": "first-order approximation of Gated-LPI (opt-in, not the paper's exact score)",
}


def table(results: Sequence[ClaimResult], mode: str) -> str:
    """The claims-vs-measured table; `mode` (exact / first-order) names what produced each number."""
    rows = []
    for r in results:
        for i, c in enumerate(r.checks):
            rows.append(
                [
                    r.claim if i == 0 else "",
                    r.finding if i == 0 else "",
                    r.family if i == 0 else "",
                    f"{c.label}: {c.paper}",
                    f"{c.shown} ({c.op} {c.threshold_shown})",
                    ", ".join(map(str, c.steps)),
                    mode,
                    r.verdict if i == 0 else "",
                ]
            )
    headers = ["claim", "finding", "model", "paper", "measured [95% CI] (test)", "checkpoints", "scores", "verdict"]
    return tabulate(rows, headers=headers, tablefmt="github")


def markdown(results: Sequence[ClaimResult], context: dict) -> str:
    config = context["config"]
    line = ", ".join(f"{k}={v}" for k, v in config.items() if v not in (None, (), []))
    lines = [
        "# lpi-claims: claims vs measured",
        "",
        f"`{line}`",
        "",
        f"Scores: {SCORES[config['lpi_mode']]}.",
        "",
        table(results, config["lpi_mode"]),
        "",
        "## Notes",
        "",
    ]
    lines += [f"- {r.test_id}: {n}" for r in results for n in r.notes] or ["- none"]
    if config["suite"] == "miniature":
        lines += [f"- {CONFOUND_NOTE}"]
    if context["not_measured"]:
        lines += ["", "## Not measured", ""]
        by_reason: dict[str, list[str]] = {}
        for test_id, reason in sorted(context["not_measured"].items()):
            by_reason.setdefault(reason, []).append(test_id)
        lines += [f"- {', '.join(ids)}: {reason}" for reason, ids in by_reason.items()]
    lines += ["", "## Models and revisions", ""]
    for family, info in context["series"].items():
        lines.append(f"- **{family}**: `{info['name']}`, checkpoints (step: revision, commit): " + ", ".join(
            f"{c['step']}: {c['revision'] or 'local'} {c['commit'] or ''}".strip() for c in info["checkpoints"]
        ))
    lines += ["", "## Windows (paper steps -> this series' checkpoints, by fraction of the run)", ""]
    for family, windows in context["windows"].items():
        lines.append(f"- **{family}**: " + "; ".join(f"{name}: {steps}" for name, steps in windows.items()))
    lines += ["", "## Versions", "", "- " + ", ".join(f"{k} {v}" for k, v in context["versions"].items()), ""]
    return "\n".join(lines)


def _save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def figures(measurements: dict[str, SeriesMeasurements], out: Path) -> list[Path]:
    """Figures 1-5 of the paper, for the measured series."""
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, kind in zip(axes, ("ffn", "attn")):
        for family, m in measurements.items():
            t = getattr(m, f"jstab_{kind}")
            ax.plot([s / m.total_steps for s in t.steps], 100 * t.points, marker="o", label=family)
            ax.axhline(100 * random_set_jaccard(m.units[kind]), ls=":", lw=1, color="grey")
        ax.set(title=f"{kind.upper()} top-1% set stability J_stab", xlabel="fraction of training run", ylabel="Jaccard (%)")
        ax.legend()
    _save_figure(fig, out / "fig1_jstab.png")
    written.append(out / "fig1_jstab.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, kind in zip(axes, ("ffn", "attn")):
        for family, m in measurements.items():
            profile = m.profile_ffn if kind == "ffn" else m.profile_attn
            ax.plot([s / m.total_steps for s in m.steps], profile.mean(1), marker="o", label=family)
        ax.set(title=f"mean {kind.upper()} layer LPI over training", xlabel="fraction of training run", ylabel="mean layer LPI")
        ax.legend()
    _save_figure(fig, out / "fig2_layer_trajectories.png")
    written.append(out / "fig2_layer_trajectories.png")

    fig, axes = plt.subplots(len(measurements), 2, figsize=(11, 3.4 * len(measurements)), squeeze=False, layout="constrained")
    for row, (family, m) in enumerate(measurements.items()):
        early, late = m.steps[len(m.steps) // 3], m.steps[-1]
        for col, kind in enumerate(("ffn", "attn")):
            profile = m.profile_ffn if kind == "ffn" else m.profile_attn
            ax = axes[row][col]
            for step in (early, late):
                ax.plot(profile[m.steps.index(step)], marker=".", label=f"step {step}")
            ax.set(title=f"{family} {kind.upper()} layer profile", xlabel="layer", ylabel="layer LPI")
            ax.legend()
    _save_figure(fig, out / "fig3_4_layer_profiles.png")
    written.append(out / "fig3_4_layer_profiles.png")

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
    for ax, ablation in zip(axes, ("top1-head", "top10-heads", "top1pct-ffn")):
        for family, m in measurements.items():
            t = m.drops[ablation]
            ax.plot([s / m.total_steps for s in t.steps], t.points, marker="o", label=family)
        ax.set(title=f"HIT@10 drop, {ablation} masked", xlabel="fraction of training run", ylabel="drop (%)")
        ax.legend()
    _save_figure(fig, out / "fig5_ablation.png")
    written.append(out / "fig5_ablation.png")
    return written


def build_report(
    config: SuiteConfig,
    measurements: dict[str, SeriesMeasurements],
    series_info: dict[str, dict],
    claim_ids: set[str] | None = None,
    not_measured: dict[str, str] | None = None,
) -> tuple[list[ClaimResult], Path]:
    """Evaluate the claims (all, or the test ids in `claim_ids`) and write the report files;
    `not_measured` maps the test ids that have no measurement to the reason."""
    results = [
        evaluate(claim, measurements[family])
        for claim in CLAIMS
        for family in claim.families
        if family in measurements and (claim_ids is None or f"{claim.id}[{family}]" in claim_ids)
    ]
    context = {
        "config": config.as_dict(),
        "series": series_info,
        "windows": {f: {w.name: m.window(w) for w in WINDOWS} for f, m in measurements.items()},
        "versions": versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "not_measured": not_measured or {},
    }
    out = Path(config.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "claims.md", markdown(results, context))
    payload = {
        "context": context,
        "claims": [{**asdict(r), "scores": config.lpi_mode} for r in results],
        "trajectories": {f: trajectories(m) for f, m in measurements.items()},
    }
    atomic_write_json(out / "claims.json", finite_or_null(payload))
    if measurements:
        figures(measurements, out)
    return results, out


def finite_or_null(value):
    """`value` with every NaN or infinite float replaced by None (null in JSON: undefined, not a number)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def trajectories(m: SeriesMeasurements) -> dict:
    return {
        "model": m.name,
        "total_steps": m.total_steps,
        "steps": m.steps,
        "jstab_ffn": m.jstab_ffn.as_dict(),
        "jstab_attn": m.jstab_attn.as_dict(),
        "r_ffn": m.r_ffn.as_dict(),
        "r_attn": m.r_attn.as_dict(),
        "layer_profile_ffn": m.profile_ffn.tolist(),
        "layer_profile_attn": m.profile_attn.tolist(),
        "hit_at_10": m.hit.as_dict(),
        "ablation_drops": {k: t.as_dict() for k, t in m.drops.items()},
        "units": m.units,
        "random_set_jaccard": {k: random_set_jaccard(v) for k, v in m.units.items() if k != "heads"},
    }


def series_measurements(config: SuiteConfig, family: str, compute: bool, rotate: int = 0) -> tuple[SeriesMeasurements, dict]:
    """Measure one family's series from the record store; `compute=False` reads the cache alone."""
    series = config.series(family, build=compute)
    data, options = config.data(), config.run_options()
    store = RecordStore(config.cache)
    if compute:
        records = store.ensure(series.checkpoints, data, options, rotate=rotate)
    else:
        records, missing = {}, []
        for checkpoint in series.checkpoints:
            record = store.load(record_key(checkpoint, data, options))
            if record is None:
                missing.append(checkpoint.step)
            else:
                records[checkpoint.step] = record
        if missing:
            raise FileNotFoundError(f"{series.name}: the cache {config.cache} has no records for steps {missing}; run the claims on them first")
    info = {
        "name": series.name,
        "total_steps": series.total_steps,
        "checkpoints": [
            {"step": s, "revision": r["meta"]["revision"], "commit": r["meta"]["commit"], "seconds": r["meta"]["seconds"]}
            for s, r in sorted(records.items())
        ],
    }
    return measure_series(family, series.name, series.total_steps, records), info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lpi-claims", description="Build the claims report from the cache alone.")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="evaluate every claim from cached records and write the report")
    report.add_argument("--suite", default="miniature", choices=["miniature", "paper"])
    report.add_argument("--preset", default="default")
    report.add_argument("--moe-model")
    report.add_argument("--dense-model")
    report.add_argument("--checkpoints", default="", help="comma-separated steps")
    report.add_argument("--examples", type=int)
    report.add_argument("--bootstrap", type=int, default=100)
    report.add_argument("--gpu", action="store_true", help="the records were computed with --gpu")
    report.add_argument("--cache-dir")
    report.add_argument("--report-dir", default="reports")
    report.add_argument("--lpi-mode", default="exact", help="the records were computed with this --lpi-mode")
    report.add_argument("--family", choices=FAMILIES, action="append", help="only this family (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = SuiteConfig(
            suite=args.suite, preset=args.preset, gpu=args.gpu, moe_model=args.moe_model, dense_model=args.dense_model,
            checkpoints=tuple(int(s) for s in args.checkpoints.split(",") if s), examples=args.examples,
            bootstrap=args.bootstrap, cache_dir=args.cache_dir, report_dir=args.report_dir,
            lpi_mode=args.lpi_mode,
        )
        measured, info = {}, {}
        for family in args.family or FAMILIES:
            measured[family], info[family] = series_measurements(config, family, compute=False)
    except (ValueError, FileNotFoundError) as err:
        print(f"lpi-claims report: {err}", file=sys.stderr)
        return 2
    results, out = build_report(config, measured, info)
    print(table(results, config.lpi_mode))
    print(f"\nreport written to {out}/ (claims.md, claims.json, figures)")
    return 0
