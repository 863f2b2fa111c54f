"""One series' trajectories, point estimates and bootstrap replicates, from its checkpoint records.

Every replicate row r uses row r of `resample_weights(examples, bootstrap)` at every checkpoint of
every series, so a MoE and a dense series of one seed (one token stream, one evaluation set) are
resampled identically and their difference is paired. All reductions are numpy float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpi_core.metrics import (
    ablation_drop,
    jaccard_rows,
    knowledge_onset,
    positive_gain_concentration_rows,
    resample_weights,
    top_fraction_mask,
)

from .records import ABLATIONS

HIT_K = 10


@dataclass
class Trajectory:
    """One number per checkpoint, or per consecutive pair (indexed by the pair's later step)."""

    steps: list[int]
    points: np.ndarray  # [len(steps)]
    replicates: np.ndarray  # [R, len(steps)]

    def as_dict(self) -> dict:
        return {"steps": self.steps, "values": [float(v) for v in self.points]}


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
    r_ffn: Trajectory
    r_attn: Trajectory
    ceiling_ffn: Trajectory  # split-half J of the top-1% sets at each checkpoint (no replicates)
    ceiling_attn: Trajectory
    profile_ffn: np.ndarray  # [checkpoints, layers]
    profile_attn: np.ndarray
    profile_ffn_reps: np.ndarray  # [R, checkpoints, layers]
    profile_attn_reps: np.ndarray
    hit: Trajectory
    drops: dict[str, Trajectory]
    units: dict[str, int]  # ffn, attn, heads, layers, routed_ffn (FFN units with a non-zero score)

    @property
    def replicates(self) -> int:
        return self.hit.replicates.shape[0]

    @property
    def onset(self) -> int | None:
        """The first checkpoint whose HIT@10 has made half of its final gain over chance."""
        return knowledge_onset(self.steps, list(self.hit.points), self.chance)

    def profile(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.profile_ffn, self.profile_ffn_reps) if kind == "ffn" else (self.profile_attn, self.profile_attn_reps)


def _pair_trajectory(steps: list[int], points: list[np.ndarray], reps: list[np.ndarray], metric) -> Trajectory:
    values = [metric(a[None], b[None])[0] for a, b in zip(points[:-1], points[1:])]
    replicates = [metric(a, b) for a, b in zip(reps[:-1], reps[1:])]
    return Trajectory(steps[1:], np.array(values, dtype=float), np.stack(replicates, 1) if replicates else np.zeros((reps[0].shape[0], 0)))


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return jaccard_rows(top_fraction_mask(a), top_fraction_mask(b))


def measure_series(family: str, name: str, seed: int, total_steps: int, records: dict[int, dict]) -> SeriesMeasurements:
    """Every trajectory of a series, with its bootstrap replicates."""
    steps = sorted(records)
    recs = [records[s] for s in steps]
    array = lambda r, key: r[key].double().numpy()  # noqa: E731
    ffn, attn = [array(r, "ffn") for r in recs], [array(r, "attn") for r in recs]
    boot_ffn, boot_attn = [r["boot_ffn"].numpy() for r in recs], [r["boot_attn"].numpy() for r in recs]  # float32: selection only
    reps = boot_ffn[0].shape[0]
    n = recs[0]["hits"]["base"].numel()
    counts = resample_weights(n, reps).double().numpy()

    def hit_rate(ablation: str) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.stack([r["hits"][ablation].numpy().astype(np.float64) for r in recs], 1)  # [examples, checkpoints]
        return matrix.sum(0) / n, (counts @ matrix) / n  # sums of integers: exact in any order

    base, base_reps = hit_rate("base")
    drops = {}
    for ablation in ABLATIONS:
        after, after_reps = hit_rate(ablation)
        points = np.array([ablation_drop(b, a) for b, a in zip(base, after)])
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = np.where(base_reps > 0, 100.0 * (base_reps - after_reps) / np.where(base_reps > 0, base_reps, 1), np.nan)
        drops[ablation] = Trajectory(steps, points, replicates)

    def ceiling(kind: str) -> Trajectory:
        halves = [array(r, f"half_{kind}") for r in recs]
        values = np.array([_jaccard(h[0][None], h[1][None])[0] for h in halves])
        return Trajectory(steps, values, np.zeros((0, len(steps))))

    return SeriesMeasurements(
        family=family,
        name=name,
        seed=seed,
        steps=steps,
        total_steps=total_steps,
        chance=HIT_K / recs[0]["meta"]["vocab"],
        jstab_ffn=_pair_trajectory(steps, ffn, boot_ffn, _jaccard),
        jstab_attn=_pair_trajectory(steps, attn, boot_attn, _jaccard),
        r_ffn=_pair_trajectory(steps, ffn, boot_ffn, positive_gain_concentration_rows),
        r_attn=_pair_trajectory(steps, attn, boot_attn, positive_gain_concentration_rows),
        ceiling_ffn=ceiling("ffn"),
        ceiling_attn=ceiling("attn"),
        profile_ffn=np.stack([array(r, "ffn_layer") for r in recs]),
        profile_attn=np.stack([array(r, "attn_layer") for r in recs]),
        profile_ffn_reps=np.stack([array(r, "boot_ffn_layer") for r in recs], 1),
        profile_attn_reps=np.stack([array(r, "boot_attn_layer") for r in recs], 1),
        hit=Trajectory(steps, base, base_reps),
        drops=drops,
        units={
            "ffn": int(ffn[0].size),
            "attn": int(attn[0].size),
            "heads": int(recs[0]["heads"].numel()),
            "layers": int(ffn[0].shape[0]),
            "routed_ffn": int(np.median([np.count_nonzero(f) for f in ffn])),
        },
    )
