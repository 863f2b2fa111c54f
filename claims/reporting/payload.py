"""claims.json: the run's context, every check of every test, and the trajectories (data only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

from claims.catalogue.evaluate import ClaimResult
from claims.statistics.measure import SeriesMeasurements
from lpi_core.metrics import random_set_jaccard


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
        "seed": m.seed,
        "total_steps": m.total_steps,
        "steps": m.steps,
        "onset": m.onset,
        "jstab_ffn": m.jstab_ffn.as_dict(),
        "jstab_attn": m.jstab_attn.as_dict(),
        "stability_beyond_noise_ffn": m.stability_ffn.as_dict(),
        "stability_beyond_noise_attn": m.stability_attn.as_dict(),
        "stability_gap_normalised_ffn": m.stability_ffn_gap.as_dict(),
        "stability_gap_normalised_attn": m.stability_attn_gap.as_dict(),
        "reference_gap": m.reference_gap,
        "r_ffn": m.concentration["ffn/layer"].as_dict(),
        "r_attn": m.concentration["attn/layer"].as_dict(),
        "r": {k: t.as_dict() for k, t in m.concentration.items()},
        "r_held_out": {k: t.as_dict() for k, t in m.concentration_held_out.items()},
        "r_null": {k: t.as_dict() for k, t in m.concentration_null.items()},
        "split_half_ceiling_ffn": m.ceiling_ffn.as_dict(),
        "split_half_ceiling_attn": m.ceiling_attn.as_dict(),
        "layer_profile_ffn": m.profile_ffn.tolist(),
        "layer_profile_attn": m.profile_attn.tolist(),
        "hit_at_10": m.hit.as_dict(),
        "ablation_drops": {k: t.as_dict() for k, t in m.drops.items()},
        "ablation_drops_at_1": {k: t.as_dict() for k, t in m.drops_at_1.items()},
        "units": m.units,
        "random_set_jaccard": {k: random_set_jaccard(m.units[k]) for k in ("ffn", "attn")},
    }


def _decided(entry: dict) -> dict:
    """`verdict` the Holm-adjusted one (it decides), `verdict_unadjusted` the check's or test's own."""
    out = {k: v for k, v in entry.items() if k != "holm_verdict"}
    out["verdict_unadjusted"] = entry["verdict"]
    out["verdict"] = entry.get("holm_verdict") or entry["verdict"]
    return out


def payload(
    results: Sequence[ClaimResult], measured: dict[str, list[SeriesMeasurements]], context: dict, mode: str
) -> dict:
    claims = []
    for r in results:
        entry = _decided({**asdict(r), "test_id": r.test_id, "scores": mode})
        entry["checks"] = [_decided(c) for c in entry["checks"]]
        claims.append(entry)
    return finite_or_null(
        {
            "context": context,
            "claims": claims,
            "trajectories": {f: [trajectories(m) for m in series] for f, series in measured.items()},
        }
    )
