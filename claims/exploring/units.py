"""`lpi-claims units`: a drill-down into the top units of a family's last checkpoint.

For each of the `top` units (FFN or attention neurons, ranked as the run ranks its top-1% sets:
|mean I| with --rank-by abs, mean I with positive; the mean over seeds at the last step), from the
cache: its importance at every step (per seed and the seeds' mean) and the step at which it first
entered its seed's top-1%; computed on demand: its expert's routing frequency at every step (MoE
FFN units; the fraction of the evaluation prompts' tokens routed to the expert, seeds' mean) and
the evaluation prompts it helps most (its per-example Gated-LPI at the last checkpoint of the
first seed).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from tabulate import tabulate

from claims.exploring.labelled import load_series
from claims.fixtures.series import Announcer, silent
from claims.running.suite import SuiteConfig
from lpi_core import attribute
from lpi_core.routing import routing_frequency
from lpi_core.tokenization import target_token_ids

KINDS = {"ffn": ("expert", "neuron"), "attn": ("head", "dim")}


def ranking_scores(ds: xr.Dataset, kind: str, rank_by: str) -> xr.DataArray:
    """The score units are ranked by, per seed and step, over the stacked dimension `unit`."""
    scores = ds[kind].stack(unit=("layer", *KINDS[kind]))
    return abs(scores) if rank_by == "abs" else scores


def top_units(ds: xr.Dataset, kind: str = "ffn", top: int = 20, rank_by: str = "abs") -> list[dict]:
    """The `top` units at the last step with their importance trajectories and top-1% entry steps."""
    ranked = ranking_scores(ds, kind, rank_by)
    last = ranked.isel(step=-1).mean("seed")
    order = np.argsort(-last.values, kind="stable")[:top]
    cutoff = max(1, round(0.01 * ranked.sizes["unit"]))
    values = ranked.transpose("seed", "step", "unit").values
    in_top = np.zeros(values.shape, dtype=bool)  # [seed, step, unit]: in that seed's top-1% at that step
    np.put_along_axis(in_top, np.argsort(-values, axis=-1, kind="stable")[..., :cutoff], True, axis=-1)
    steps, seeds = ds.step.values.tolist(), ds.seed.values.tolist()
    units = []
    for position in order:
        layer, inner, index = (int(v) for v in ranked.unit.values[position])
        module = str(
            ds[f"{kind}_module"].sel(layer=layer).values[inner]
            if kind == "ffn"
            else ds.attn_module.sel(layer=layer).item()
        )
        trajectory = ds[kind].stack(unit=("layer", *KINDS[kind])).isel(unit=position)
        entered = {}
        for s, seed in enumerate(seeds):
            hits = np.flatnonzero(in_top[s, :, position])
            entered[seed] = steps[hits[0]] if hits.size else None
        units.append(
            {
                "rank": len(units) + 1,
                "kind": kind,
                "layer": layer,
                KINDS[kind][0]: inner,
                KINDS[kind][1]: index,
                "module": module,
                "score": float(last.values[position]),
                "importance": {int(step): float(v) for step, v in zip(steps, trajectory.mean("seed").values)},
                "importance_per_seed": {
                    int(seed): [float(v) for v in trajectory.sel(seed=seed).values] for seed in seeds
                },
                "entered_top1pct": entered,
            }
        )
    return units


def drill_down(
    config: SuiteConfig, family: str, kind: str = "ffn", top: int = 20, examples: int = 5, announce: Announcer = silent
) -> dict:
    """The drill-down of `family`'s top units (module docstring), as JSON-ready data."""
    if kind not in KINDS:
        raise ValueError(f"--kind must be ffn or attn, not {kind!r}")
    ds = load_series(config, family)
    units = top_units(ds, kind, top, config.rank_by)
    series_list = config.series(family, build=False)
    data, options = config.data(), config.run_options()
    device, dtype = options.device, options.torch_dtype()
    if kind == "ffn" and ds.sizes["expert"] > 1:
        frequency: dict[int, list[torch.Tensor]] = {}
        for series in series_list:
            for checkpoint in series.checkpoints:
                announce(f"units: routing of {checkpoint.label}")
                frequency.setdefault(checkpoint.step, []).append(
                    routing_frequency(checkpoint.load(device, dtype), data.prompts)
                )
        for unit in units:
            unit["routing"] = {
                step: float(torch.stack(f).mean(0)[unit["layer"], unit["expert"]]) for step, f in frequency.items()
            }
    final = series_list[0].checkpoints[-1]
    announce(f"units: per-example scores of {final.label}")
    lm = final.load(device, dtype)
    target_ids = target_token_ids(lm.tokenizer, data.answers) if config.target == "answer" else None
    per_example = getattr(
        attribute(
            lm,
            data.prompts,
            target_ids=target_ids,
            reduce="none",
            mode=config.lpi_mode,
            attn_positions=config.attn_positions,
        ),
        kind,
    )
    for unit in units:
        lpi = per_example[:, unit["layer"], unit[KINDS[kind][0]], unit[KINDS[kind][1]]]
        best = torch.argsort(lpi, descending=True, stable=True)[:examples]
        unit["top_examples"] = [
            {"prompt": data.prompts[i], "answer": data.answers[i], "lpi": float(lpi[i])} for i in best.tolist()
        ]
    return {
        "family": family,
        "kind": kind,
        "series": ds.attrs["series"],
        "steps": ds.step.values.tolist(),
        "seeds": ds.seed.values.tolist(),
        "rank_by": config.rank_by,
        "units": units,
    }


def units_table(found: dict) -> str:
    """The drill-down as a text table: one row per unit."""
    first, last = found["steps"][0], found["steps"][-1]
    rows = []
    for unit in found["units"]:
        where = (
            f"{unit['module']}[{unit.get('neuron', unit.get('dim'))}]"
            if found["kind"] == "ffn"
            else f"{unit['module']}[head {unit['head']}, dim {unit['dim']}]"
        )
        routing = unit.get("routing")
        best = unit["top_examples"][0] if unit["top_examples"] else None
        rows.append(
            [
                unit["rank"],
                where,
                f"{unit['importance'][first]:.4f} → {unit['importance'][last]:.4f}",
                ", ".join(str(s) for s in unit["entered_top1pct"].values()),
                f"{routing[first]:.2f} → {routing[last]:.2f}" if routing else "",
                f"{best['prompt']} → {best['answer']} ({best['lpi']:.3f})" if best else "",
            ]
        )
    headers = ["#", "unit", f"I step {first} → {last}", "entered top-1% (per seed)", "routing", "helps most"]
    return tabulate(rows, headers=headers)
