"""reports/index.html: the report as one self-contained page (plotly's JavaScript embedded, no
network needed): the claims table with verdicts, each claim's figure (its trajectory per family and
seed with the replicates' 95% band) shown when its row is clicked, the training curves, and a
section per unit of any drill-down (`lpi-claims units`) found in the report directory.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# which trajectory shows a claim (rendering only; the checks themselves are in catalogue.py)
CLAIM_TRAJECTORY = {
    "ffn-concentration": ("r_ffn", "FFN top-1% share of positive gains R_t"),
    "attn-concentration": ("r_attn", "ATTN top-1% share of positive gains R_t"),
    "ffn-stability-early": ("jstab_ffn", "FFN top-1% set stability J_stab"),
    "ffn-stability-late": ("jstab_ffn", "FFN top-1% set stability J_stab"),
    "ffn-stability-final": ("jstab_ffn", "FFN top-1% set stability J_stab"),
    "ffn-explore-refine-consolidate": ("jstab_ffn", "FFN top-1% set stability J_stab"),
    "attn-stability": ("jstab_attn", "ATTN top-1% set stability J_stab"),
    "ffn-layer-consolidation": ("split_half_ceiling_ffn", "FFN split-half ceiling of the unit scores"),
    "attn-layer-consolidation": ("split_half_ceiling_attn", "ATTN split-half ceiling of the unit scores"),
    "full-run-consolidation": ("split_half_ceiling_ffn", "FFN split-half ceiling of the unit scores"),
    "early-lock-in": ("split_half_ceiling_ffn", "FFN split-half ceiling of the unit scores"),
    "ablate-top1-head": ("ablation_drops.top1-head", "HIT@10 drop (%), top-1 head masked"),
    "ablate-top10-heads": ("ablation_drops.top10-heads", "HIT@10 drop (%), top-10 heads masked"),
    "ablate-top1pct-ffn": ("ablation_drops.top1pct-ffn", "HIT@10 drop (%), top-1% FFN neurons masked"),
}
COLOURS = {"moe": ("#1f77b4", "rgba(31,119,180,0.15)"), "dense": ("#d62728", "rgba(214,39,40,0.15)")}


def _trajectory(series: dict, name: str) -> dict:
    value = series
    for part in name.split("."):
        value = value[part]
    return value


def claim_figure(claim_id: str, trajectories: dict) -> go.Figure:
    """The claim's trajectory for every family and seed against the fraction of training, with its band."""
    name, title = CLAIM_TRAJECTORY[claim_id]
    figure = go.Figure()
    for family, runs in trajectories.items():
        line, band = COLOURS.get(family, ("#555", "rgba(80,80,80,0.15)"))
        for run in runs:
            t = _trajectory(run, name)
            x = [s / run["total_steps"] for s in t["steps"]]
            label = f"{family} seed {run['seed']}"
            if "low" in t:
                figure.add_trace(
                    go.Scatter(
                        x=x + x[::-1],
                        y=t["high"] + t["low"][::-1],
                        mode="lines",
                        fill="toself",
                        fillcolor=band,
                        line=dict(width=0),
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=label,
                    )
                )
            figure.add_trace(
                go.Scatter(
                    x=x, y=t["values"], mode="lines+markers", name=label, line=dict(color=line), legendgroup=label
                )
            )
    figure.update_layout(title=title, xaxis_title="fraction of the training run", height=380, margin=dict(t=50, b=40))
    return figure


def training_figure(miniature: dict) -> go.Figure:
    """HIT@10 against step for every family and seed, the onset marked."""
    figure = go.Figure()
    for family, seeds in miniature.items():
        line, _ = COLOURS.get(family, ("#555", ""))
        for seed, run in seeds.items():
            steps = sorted(run["hit_at_10"], key=int)
            figure.add_trace(
                go.Scatter(
                    x=[int(s) for s in steps],
                    y=[run["hit_at_10"][s] for s in steps],
                    mode="lines+markers",
                    name=f"{family} seed {seed}",
                    line=dict(color=line),
                )
            )
            if run.get("onset_step"):
                figure.add_vline(x=run["onset_step"], line=dict(color=line, dash="dot", width=1))
    figure.update_layout(
        title="HIT@10 over training (dotted: knowledge onset)", xaxis_title="step", height=360, margin=dict(t=50, b=40)
    )
    return figure


def unit_figure(unit: dict) -> go.Figure:
    figure = go.Figure()
    steps = [int(s) for s in unit["importance"]]
    for seed, values in unit["importance_per_seed"].items():
        figure.add_trace(go.Scatter(x=steps, y=values, mode="lines+markers", name=f"importance, seed {seed}"))
    if unit.get("routing"):
        figure.add_trace(
            go.Scatter(
                x=steps,
                y=list(unit["routing"].values()),
                mode="lines",
                name="expert routing frequency",
                yaxis="y2",
                line=dict(dash="dash"),
            )
        )
        figure.update_layout(yaxis2=dict(overlaying="y", side="right", title="routing"))
    figure.update_layout(
        title=f"{_unit_name(unit)}: importance over training",
        xaxis_title="step",
        height=340,
        margin=dict(t=50, b=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return figure


def _unit_name(unit: dict) -> str:
    return (
        f"{unit['module']}[{unit['neuron']}]"
        if "neuron" in unit
        else f"{unit['module']}[head {unit['head']}, dim {unit['dim']}]"
    )


def _cell(text: object) -> str:
    return f"<td>{html.escape(str(text))}</td>"


def html_report(payload: dict, drill_downs: list[dict] = ()) -> str:
    """The page (module docstring) for a claims.json payload and any drill-down JSONs."""
    figures, rows = {}, []
    for claim in payload["claims"]:
        test = claim["test_id"]
        if claim["claim"] in CLAIM_TRAJECTORY:
            figures[test] = json.loads(claim_figure(claim["claim"], payload["trajectories"]).to_json())
        for i, check in enumerate(claim["checks"]):
            head = f'<td rowspan="{len(claim["checks"])}" class="test">{html.escape(test)}</td>' if i == 0 else ""
            verdict = (
                f'<td rowspan="{len(claim["checks"])}" class="verdict {claim["verdict"].replace(" ", "-")}">'
                f"{html.escape(claim['verdict'])}</td>"
                if i == 0
                else ""
            )
            rows.append(
                f'<tr class="claim" data-test="{html.escape(test)}">{head}{_cell(check["label"])}'
                f"{_cell(check['paper'])}"
                f"{_cell(check['shown'] + ' (' + check['op'] + ' ' + check['threshold_shown'] + ')')}"
                f"{_cell(check['verdict'])}{_cell(check['verdict_unadjusted'])}"
                f"{_cell(check.get('seeds_needed') or '')}{verdict}</tr>"
            )
    counts = {}
    for claim in payload["claims"]:
        counts[claim["verdict"]] = counts.get(claim["verdict"], 0) + 1
    config = payload["context"]["config"]
    extra = []
    if "miniature" in payload["context"]:
        figures["training"] = json.loads(training_figure(payload["context"]["miniature"]).to_json())
        extra.append('<h2>Training</h2><div id="fig-training" class="figure"></div>')
    for found in drill_downs:
        extra.append(f"<h2>Top {html.escape(found['kind'])} units: {html.escape(found['family'])}</h2>")
        for unit in found["units"]:
            key = f"unit-{found['family']}-{found['kind']}-{unit['rank']}"
            figures[key] = json.loads(unit_figure(unit).to_json())
            examples = "".join(
                f"<li>{html.escape(e['prompt'])} → <b>{html.escape(e['answer'])}</b> ({e['lpi']:.3f})</li>"
                for e in unit["top_examples"]
            )
            entered = ", ".join(f"seed {seed}: step {step}" for seed, step in unit["entered_top1pct"].items())
            extra.append(
                f'<section class="unit" id="{key}"><h3>#{unit["rank"]} {html.escape(_unit_name(unit))}</h3>'
                f"<p>entered the top-1%: {html.escape(entered)}; helps most:</p>"
                f'<div id="fig-{key}" class="figure"></div><ol>{examples}</ol></section>'
            )
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return TEMPLATE.format(
        plotly=get_plotlyjs(),
        config=html.escape(", ".join(f"{k}={v}" for k, v in config.items() if k not in ("cache_dir", "report_dir"))),
        summary=html.escape(summary),
        rows="\n".join(rows),
        extra="\n".join(extra),
        figures=json.dumps(figures).replace("</", "<\\/"),
    )


def write_html_report(out: Path, payload: dict) -> str:
    """index.html for `payload`, with the drill-downs found in `out` (units-*.json) that were made
    from the same series and steps (one left from another run or format is skipped)."""
    drill_downs = []
    for path in sorted(Path(out).glob("units-*.json")):
        try:
            found = json.loads(path.read_text())
            runs = payload["trajectories"].get(found["family"], [])
            if (
                runs
                and found["series"] == runs[0]["model"]
                and found["steps"] == runs[0]["steps"]
                and found["units"][0]["importance"]
            ):
                drill_downs.append(found)
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return html_report(payload, drill_downs)


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lpi-claims report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }} table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }} tr.claim {{ cursor: pointer; }}
tr.claim:hover {{ background: #f3f6fb; }} .verdict.replicated {{ background: #d9f2d9; }} \
.verdict.not-replicated {{ background: #f6d5d5; }}
.verdict.inconclusive {{ background: #fdf3cc; }} #claim-figure {{ min-height: 20px; }} .figure {{ max-width: 900px; }}
</style>
<script>{plotly}</script></head>
<body>
<h1>lpi-claims: claims vs measured</h1>
<p class="config">{config}</p>
<p class="summary">Verdicts: {summary}</p>
<p>Click a claim to see its trajectory (every family and seed; shaded: the replicates' 95% band).</p>
<div id="claim-title"></div><div id="claim-figure" class="figure"></div>
<table id="claims"><thead><tr><th>test</th><th>check</th><th>paper</th><th>tested [95% CI] (claimed side)</th>\
<th>check verdict (Holm)</th><th>unadjusted</th><th>seeds for 80% power</th><th>verdict (Holm)</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{extra}
<script type="application/json" id="figures">{figures}</script>
<script>
const FIGURES = JSON.parse(document.getElementById("figures").textContent);
function draw(target, key) {{ const f = FIGURES[key]; \
if (f) Plotly.newPlot(target, f.data, f.layout, {{responsive: true}}); }}
document.querySelectorAll("tr.claim").forEach(row => row.addEventListener("click", () => {{
  const test = row.dataset.test;
  document.getElementById("claim-title").textContent = test;
  if (FIGURES[test]) draw("claim-figure", test); \
else document.getElementById("claim-figure").textContent = "no figure for this claim";
}}));
for (const key of Object.keys(FIGURES)) {{ const el = document.getElementById("fig-" + key); if (el) draw(el, key); }}
</script>
</body></html>
"""
