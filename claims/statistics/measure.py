"""One series' trajectories, point estimates and bootstrap replicates, from its checkpoint records.

Every replicate row r uses row r of `resample_weights(examples, bootstrap)` at every checkpoint of
every series, so a MoE and a dense series of one seed (one token stream, one evaluation set) are
resampled identically and their difference is paired; likewise split s of `split_half_weights`.
A set statistic θ (J_stab, R_t) also gets its split-half deviations (θ(A_s) - θ(B_s)) / √2 over
the splits into halves A_s, B_s (see lpi_core.metrics.centred_percentile_interval). S_t is read
from `st_<kind>` where a record holds it (mean |I|), else from the signed scores (|mean I|).
Set stability beyond noise (`stability_beyond_noise`: the overlap of top sets from opposite
halves of the examples at t-1 and t over the overlap of the two halves at one checkpoint) is also
carried to the series' median checkpoint gap, so that a change between pairs of unequal gaps is
not a change of gap, nor of the scores' noise. R_t is read three ways
(`READINGS`): per layer (the paper's Eq. 8), with the layers pooled, and (FFN) among the units
routed at t or t-1, pooled; each in-sample (the paper's), beside its split-half null (the same
statistic between the two halves of one checkpoint), and cross-fitted (the units chosen on one
half of the examples, their share scored on the other: the tested one). All reductions are numpy
float64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from claims.statistics.intervals import Estimate
from lpi_core.metrics import (
    ablation_drop,
    complement_means,
    held_out_gain_concentration_rows,
    jaccard_rows,
    knowledge_onset,
    pooled_gain_concentration_rows,
    positive_gain_concentration_rows,
    resample_weights,
    stability_beyond_noise,
    top_fraction_mask,
)

HIT_K = 10
READINGS = {"ffn": ("layer", "pooled", "routed"), "attn": ("layer", "pooled")}  # how R_t is read (module docstring)


@dataclass
class Trajectory:
    """One number per checkpoint, or per consecutive pair (indexed by the pair's later step)."""

    steps: list[int]
    points: np.ndarray  # [len(steps)]
    replicates: np.ndarray  # [R, len(steps)]
    split_half: np.ndarray | None = None  # [S, len(steps)]: split-half deviations of a set statistic

    def combined(self, idx: list[int], weights: np.ndarray, steps: list[int]) -> Estimate:
        """The weighted sum of the points at `idx`, with the same sum of each replicate and split-half deviation."""
        halves = None if self.split_half is None else self.split_half[:, idx] @ weights
        return Estimate(float(self.points[idx] @ weights), self.replicates[:, idx] @ weights, steps, split_half=halves)

    def as_dict(self) -> dict:
        """Steps, point values, and each step's 2.5-97.5 percentile band of the replicates (for plots)."""
        with warnings.catch_warnings():  # a step whose replicates are all undefined has an undefined band
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = (
                np.nanpercentile(self.replicates, q, axis=0) if self.replicates.size else self.points
                for q in (2.5, 97.5)
            )
        return {
            "steps": self.steps,
            "values": [float(v) for v in self.points],
            "low": [float(v) for v in low],
            "high": [float(v) for v in high],
        }


@dataclass
class SeriesMeasurements:
    family: str
    name: str
    seed: int
    steps: list[int]
    total_steps: int
    chance: float  # HIT@10 by chance: 10 / vocabulary size
    jstab_ffn: Trajectory
    jstab_attn: Trajectory
    stability_ffn: Trajectory  # set stability beyond noise per pair (stability_beyond_noise)
    stability_attn: Trajectory
    stability_ffn_gap: Trajectory  # the same carried to `reference_gap` steps (constant turnover)
    stability_attn_gap: Trajectory
    reference_gap: int  # the median step gap of consecutive checkpoints
    concentration: dict[str, Trajectory]  # R_t per pair, keyed "<kind>/<reading>" (READINGS)
    concentration_null: dict[
        str, Trajectory
    ]  # the same between two disjoint halves of one checkpoint, mean over splits (no replicates)
    concentration_held_out: dict[str, Trajectory]  # cross-fitted R_t per pair (the tested one), same keys
    ceiling_ffn: (
        Trajectory  # J of the top-1% sets of two disjoint halves at each checkpoint, mean over splits (no replicates)
    )
    ceiling_attn: Trajectory
    profile_ffn: np.ndarray  # [checkpoints, layers]
    profile_attn: np.ndarray
    profile_ffn_reps: np.ndarray  # [R, checkpoints, layers]
    profile_attn_reps: np.ndarray
    hit: Trajectory
    drops: dict[
        str, Trajectory
    ]  # HIT@10 drop per masked set: `<ablation>` (in-sample), `held-out/…`, `random/…` (ablations.py)
    drops_at_1: dict[str, Trajectory]  # the same for HIT@1
    units: dict[str, int]  # ffn, attn, heads, layers
    routed_ffn: list[int]  # per checkpoint: the FFN units with a non-zero score (a MoE's routed ones)
    onset: (
        int | None
    )  # the knowledge onset: the series' recorded one, else the first checkpoint with half its final HIT@10 gain

    @property
    def replicates(self) -> int:
        return self.hit.replicates.shape[0]

    def profile(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        return (
            (self.profile_ffn, self.profile_ffn_reps) if kind == "ffn" else (self.profile_attn, self.profile_attn_reps)
        )


def _pair_trajectory(
    steps: list[int],
    points: list[np.ndarray],
    reps: list[np.ndarray],
    halves: list[tuple[np.ndarray, np.ndarray]],
    metric,
    metric_at=None,
) -> Trajectory:
    """metric(checkpoint t-1, checkpoint t) per consecutive pair: point, replicates, split-half deviations;
    `metric_at(i)`, where given, is the metric of the pair ending at checkpoint i instead."""
    at = metric_at or (lambda i: metric)
    pairs = lambda xs: list(enumerate(zip(xs[:-1], xs[1:]), 1))  # noqa: E731
    stacked = lambda rows, count: np.stack(rows, 1) if rows else np.zeros((count, 0))  # noqa: E731
    values = [at(i)(a[None], b[None])[0] for i, (a, b) in pairs(points)]
    replicates = [at(i)(a, b) for i, (a, b) in pairs(reps)]
    split_half = [(at(i)(a[0], b[0]) - at(i)(a[1], b[1])) / np.sqrt(2) for i, (a, b) in pairs(halves)]
    return Trajectory(
        steps[1:],
        np.array(values, dtype=float),
        stacked(replicates, reps[0].shape[0]),
        stacked(split_half, halves[0][0].shape[0]),
    )


def _split_rows(per_split: np.ndarray, replicates: int) -> np.ndarray:
    """[replicates]: row r is split r mod S's value (one partition of the examples for every series)."""
    return per_split[np.arange(replicates) % per_split.size]


def _stability(steps: list[int], halves: list[tuple[np.ndarray, np.ndarray]], replicates: int) -> Trajectory:
    """Set stability beyond noise per consecutive pair (`stability_beyond_noise`), its splits as replicates."""
    values, rows = [], []
    for (prev_a, prev_b), (cur_a, cur_b) in zip(halves[:-1], halves[1:]):
        point, per_split = stability_beyond_noise(prev_a, prev_b, cur_a, cur_b)
        values.append(point)
        rows.append(_split_rows(per_split, replicates))
    return Trajectory(
        steps[1:], np.array(values, dtype=float), np.stack(rows, 1) if rows else np.zeros((replicates, 0))
    )


def _gap_normalised(trajectory: Trajectory, steps: list[int], reference: int) -> Trajectory:
    """Stability beyond noise (≈ ρ^gap under a constant turnover ρ a step) carried to `reference` steps."""
    power = reference / np.diff(np.asarray(steps, dtype=float))
    carry = lambda x: np.clip(x, 0, None) ** power  # noqa: E731
    return Trajectory(trajectory.steps, carry(trajectory.points), carry(trajectory.replicates))


def _routed(points: list[np.ndarray], i: int) -> np.ndarray:
    """The units routed (non-zero) at checkpoint i - 1 or i."""
    return (points[i - 1] != 0) | (points[i] != 0)


def _held_out_pairs(steps: list[int], points, halves, replicates: int, reading: str) -> Trajectory:
    """Cross-fitted R_t (`held_out_gain_concentration_rows`) per consecutive pair, mean over the splits;
    its splits as replicates, paired across series as resamples are: their spread given the sample,
    which can miss part of the sample's own (docs/method.md)."""
    values, rows = [], []
    for i in range(1, len(steps)):
        (prev_a, prev_b), (cur_a, cur_b) = halves[i - 1], halves[i]
        counted = _routed(points, i) if reading == "routed" else None
        per_split = held_out_gain_concentration_rows(
            prev_a, cur_a, prev_b, cur_b, counted=counted, pooled=reading == "pooled"
        )
        values.append(float(np.nanmean(per_split)) if np.isfinite(per_split).any() else float("nan"))
        rows.append(_split_rows(per_split, replicates))
    reps = np.stack(rows, 1) if rows else np.zeros((replicates, 0))
    return Trajectory(steps[1:], np.array(values, dtype=float), reps)


def _top_sets(points: list[np.ndarray], reps: list[np.ndarray], halves: list[tuple[np.ndarray, np.ndarray]]):
    """The top-1% masks (S_t) of each checkpoint's point, replicates and split halves, computed once."""
    return (
        [top_fraction_mask(p[None])[0] for p in points],
        [top_fraction_mask(r) for r in reps],
        [(top_fraction_mask(a), top_fraction_mask(b)) for a, b in halves],
    )


def measure_series(
    family: str, name: str, seed: int, total_steps: int, records: dict[int, dict], onset: int | None = None
) -> SeriesMeasurements:
    """Every trajectory of a series, with its bootstrap replicates. `onset`: the knowledge onset the
    series recorded over all 906 prompts (a miniature series); None: found from the records' HIT@10
    (over the run's examples, at the attributed checkpoints)."""
    steps = sorted(records)
    recs = [records[s] for s in steps]
    array = lambda r, key: r[key].double().numpy()  # noqa: E731
    n = recs[0]["hits"]["base"].numel()

    def unit_arrays(key: str) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
        """Points, bootstrap replicates and (A, B) split halves of `key` at every checkpoint."""
        points = [array(r, key) for r in recs]
        halves = [array(r, f"split_{key}") for r in recs]
        boot = [r[f"boot_{key}"].numpy() for r in recs]  # float32: selection and gains only (memory)
        return points, boot, [(h, complement_means(p, h, n)) for p, h in zip(points, halves)]

    ffn, attn = unit_arrays("ffn"), unit_arrays("attn")
    st_scores = lambda kind, signed: unit_arrays(f"st_{kind}") if f"st_{kind}" in recs[0] else signed  # noqa: E731
    sets_ffn, sets_attn = _top_sets(*st_scores("ffn", ffn)), _top_sets(*st_scores("attn", attn))
    reps = ffn[1][0].shape[0]
    counts = resample_weights(n, reps).double().numpy()

    def hit_rate(hits: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.stack([r[hits][key].numpy().astype(np.float64) for r in recs], 1)  # [examples, checkpoints]
        return matrix.sum(0) / n, (counts @ matrix) / n  # sums of integers: exact in any order

    def ablation_drops(hits: str) -> dict[str, Trajectory]:
        """The relative drop of every masked set's hit rate (`hits`: HIT@10 or HIT@1) from the unmasked one."""
        base, base_reps = hit_rate(hits, "base")
        drops = {}
        for key in (k for k in recs[0][hits] if k != "base"):
            after, after_reps = hit_rate(hits, key)
            points = np.array([ablation_drop(b, a) for b, a in zip(base, after)])
            with np.errstate(invalid="ignore", divide="ignore"):
                replicates = np.where(
                    base_reps > 0, 100.0 * (base_reps - after_reps) / np.where(base_reps > 0, base_reps, 1), np.nan
                )
            drops[key] = Trajectory(steps, points, replicates)
        return drops

    base, base_reps = hit_rate("hits", "base")

    def over_halves(halves: list[tuple[np.ndarray, np.ndarray]], metric) -> Trajectory:
        """metric(half A, half B) at each checkpoint, averaged over the splits (NaNs left out)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.array([np.nanmean(metric(a, b)) for a, b in halves])
        return Trajectory(steps, values, np.zeros((0, len(steps))))

    def held_out(kind: str, arrays) -> dict[str, Trajectory]:
        """Cross-fitted R_t of `kind` under each reading (READINGS), per pair."""
        points, _, halves = arrays
        return {f"{kind}/{r}": _held_out_pairs(steps, points, halves, reps, r) for r in READINGS[kind]}

    def concentration(kind: str, arrays) -> tuple[dict[str, Trajectory], dict[str, Trajectory]]:
        """R_t of `kind` under each reading (READINGS), per pair and between the halves of each checkpoint."""
        points, _, halves = arrays
        pooled = lambda a, b: pooled_gain_concentration_rows(a, b)  # noqa: E731
        per_pair = {"layer": _pair_trajectory(steps, *arrays, positive_gain_concentration_rows)}
        null = {"layer": over_halves(halves, positive_gain_concentration_rows)}
        per_pair["pooled"], null["pooled"] = _pair_trajectory(steps, *arrays, pooled), over_halves(halves, pooled)
        if "routed" in READINGS[kind]:
            routed_at = lambda i: lambda a, b: pooled_gain_concentration_rows(a, b, _routed(points, i))  # noqa: E731
            per_pair["routed"] = _pair_trajectory(steps, *arrays, None, routed_at)
            null["routed"] = Trajectory(
                steps,
                np.array(
                    [np.nanmean(pooled_gain_concentration_rows(a, b, p != 0)) for p, (a, b) in zip(points, halves)]
                ),
                np.zeros((0, len(steps))),
            )
        return {f"{kind}/{r}": t for r, t in per_pair.items()}, {f"{kind}/{r}": t for r, t in null.items()}

    (r_ffn, null_ffn), (r_attn, null_attn) = concentration("ffn", ffn), concentration("attn", attn)
    gap = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    stability = {kind: _stability(steps, sets[2], reps) for kind, sets in (("ffn", sets_ffn), ("attn", sets_attn))}
    chance = HIT_K / recs[0]["meta"]["vocab"]
    return SeriesMeasurements(
        family=family,
        name=name,
        seed=seed,
        steps=steps,
        total_steps=total_steps,
        chance=chance,
        jstab_ffn=_pair_trajectory(steps, *sets_ffn, jaccard_rows),
        jstab_attn=_pair_trajectory(steps, *sets_attn, jaccard_rows),
        stability_ffn=stability["ffn"],
        stability_attn=stability["attn"],
        stability_ffn_gap=_gap_normalised(stability["ffn"], steps, gap),
        stability_attn_gap=_gap_normalised(stability["attn"], steps, gap),
        reference_gap=gap,
        concentration=r_ffn | r_attn,
        concentration_null=null_ffn | null_attn,
        concentration_held_out=held_out("ffn", ffn) | held_out("attn", attn),
        ceiling_ffn=over_halves(sets_ffn[2], jaccard_rows),
        ceiling_attn=over_halves(sets_attn[2], jaccard_rows),
        profile_ffn=np.stack([array(r, "ffn_layer") for r in recs]),
        profile_attn=np.stack([array(r, "attn_layer") for r in recs]),
        profile_ffn_reps=np.stack([array(r, "boot_ffn_layer") for r in recs], 1),
        profile_attn_reps=np.stack([array(r, "boot_attn_layer") for r in recs], 1),
        hit=Trajectory(steps, base, base_reps),
        drops=ablation_drops("hits"),
        drops_at_1=ablation_drops("hits_at_1"),
        units={
            "ffn": int(ffn[0][0].size),
            "attn": int(attn[0][0].size),
            "heads": int(recs[0]["heads"].numel()),
            "layers": int(ffn[0][0].shape[0]),
        },
        routed_ffn=[int(np.count_nonzero(f)) for f in ffn[0]],
        onset=onset if onset is not None else knowledge_onset(steps, [float(v) for v in base], chance),
    )
