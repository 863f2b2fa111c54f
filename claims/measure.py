"""A series' trajectories (point estimates and bootstrap replicates) from its checkpoint records,
and the quantities the claims test, each over a window of checkpoints."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lpi_core.metrics import ablation_drop, positive_gain_concentration, rho_avg, sigma_rel, topk_jaccard, resample_weights

from .records import ABLATIONS
from .windows import Window, nearest, select


@dataclass
class Quantity:
    """A measured number, its bootstrap replicates and the checkpoints it used."""

    value: float
    replicates: np.ndarray
    steps: list[int]


@dataclass
class Trajectory:
    """One number per checkpoint (or per consecutive pair, indexed by the pair's later step)."""

    steps: list[int]
    points: np.ndarray  # [len(steps)]
    replicates: np.ndarray  # [bootstrap, len(steps)]

    def as_dict(self) -> dict:
        return {"steps": self.steps, "values": [float(v) for v in self.points]}


@dataclass
class SeriesMeasurements:
    family: str
    name: str
    steps: list[int]
    total_steps: int
    jstab_ffn: Trajectory
    jstab_attn: Trajectory
    r_ffn: Trajectory
    r_attn: Trajectory
    profile_ffn: np.ndarray  # [checkpoints, layers]
    profile_attn: np.ndarray
    profile_ffn_reps: np.ndarray  # [bootstrap, checkpoints, layers]
    profile_attn_reps: np.ndarray
    hit: Trajectory
    drops: dict[str, Trajectory]
    units: dict[str, int] = field(default_factory=dict)

    # -- windows -------------------------------------------------------------------------------
    def window(self, window: Window) -> list[int]:
        return select(self.steps, self.total_steps, window, self.family)

    def at(self, paper_step: int) -> int:
        return nearest(self.steps, self.total_steps, paper_step, self.family)

    # -- quantities ----------------------------------------------------------------------------
    def pair_mean(self, trajectory: Trajectory, window: Window) -> Quantity:
        """Mean over consecutive pairs whose two checkpoints both lie in the window."""
        chosen = self.window(window)
        pairs = [i for i, s in enumerate(trajectory.steps) if s in chosen and self.steps[self.steps.index(s) - 1] in chosen]
        if not pairs:
            return Quantity(float("nan"), np.full(trajectory.replicates.shape[0], np.nan), chosen)
        return Quantity(float(np.mean(trajectory.points[pairs])), trajectory.replicates[:, pairs].mean(1), chosen)

    def pair_at(self, trajectory: Trajectory, paper_step: int) -> Quantity:
        """The pair value ending at the checkpoint nearest `paper_step` (-1: the last pair)."""
        step = self.at(paper_step)
        if step not in trajectory.steps:
            step = trajectory.steps[0]
        i = trajectory.steps.index(step)
        return Quantity(float(trajectory.points[i]), trajectory.replicates[:, i], [self.steps[self.steps.index(step) - 1], step])

    def profile_stat(self, kind: str, window: Window, statistic: str) -> Quantity:
        """ρ_avg or σ_rel of the FFN or ATTN layer profiles of the checkpoints in the window."""
        chosen = self.window(window)
        idx = [self.steps.index(s) for s in chosen]
        points = self.profile_ffn if kind == "ffn" else self.profile_attn
        reps = self.profile_ffn_reps if kind == "ffn" else self.profile_attn_reps
        fn = rho_avg if statistic == "rho" else sigma_rel
        if len(idx) < 2:
            return Quantity(float("nan"), np.full(reps.shape[0], np.nan), chosen)
        value = fn([torch.from_numpy(points[i]) for i in idx])
        replicates = np.array([fn([torch.from_numpy(r[i]) for i in idx]) for r in reps])
        return Quantity(value, replicates, chosen)

    def checkpoint_mean(self, trajectory: Trajectory, window: Window) -> Quantity:
        chosen = self.window(window)
        idx = [trajectory.steps.index(s) for s in chosen]
        return Quantity(float(np.nanmean(trajectory.points[idx])), np.nanmean(trajectory.replicates[:, idx], 1), chosen)


def _pairs(values: list[torch.Tensor], metric) -> np.ndarray:
    return np.array([metric(a, b) for a, b in zip(values[:-1], values[1:])])


def measure_series(family: str, name: str, total_steps: int, records: dict[int, dict]) -> SeriesMeasurements:
    """Every trajectory of a series, with bootstrap replicates (the same resamples at every checkpoint)."""
    steps = sorted(records)
    recs = [records[s] for s in steps]
    reps = recs[0]["boot_ffn"].shape[0]

    def pair_trajectory(key: str, boot_key: str, metric) -> Trajectory:
        points = _pairs([r[key] for r in recs], metric)
        replicates = np.stack([_pairs([r[boot_key][b] for r in recs], metric) for b in range(reps)]) if len(recs) > 1 else np.zeros((reps, 0))
        return Trajectory(steps[1:], points, replicates.reshape(reps, -1))

    hits = [r["hits"] for r in recs]
    n = hits[0]["base"].numel()
    counts = resample_weights(n, reps).numpy()

    def hit_rate(name: str) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.stack([h[name].numpy().astype(float) for h in hits], 1)  # [examples, checkpoints]
        return matrix.mean(0), (counts @ matrix) / n  # sums of integers: exact in any order

    base, base_reps = hit_rate("base")
    drops = {}
    for ablation in ABLATIONS:
        after, after_reps = hit_rate(ablation)
        points = np.array([ablation_drop(b, a) for b, a in zip(base, after)])
        replicates = np.vectorize(ablation_drop)(base_reps, after_reps)
        drops[ablation] = Trajectory(steps, points, replicates)
    return SeriesMeasurements(
        family=family,
        name=name,
        steps=steps,
        total_steps=total_steps,
        jstab_ffn=pair_trajectory("ffn", "boot_ffn", topk_jaccard),
        jstab_attn=pair_trajectory("attn", "boot_attn", topk_jaccard),
        r_ffn=pair_trajectory("ffn", "boot_ffn", positive_gain_concentration),
        r_attn=pair_trajectory("attn", "boot_attn", positive_gain_concentration),
        profile_ffn=np.stack([r["ffn_layer"].numpy() for r in recs]),
        profile_attn=np.stack([r["attn_layer"].numpy() for r in recs]),
        profile_ffn_reps=np.stack([r["boot_ffn_layer"].numpy() for r in recs], 1),
        profile_attn_reps=np.stack([r["boot_attn_layer"].numpy() for r in recs], 1),
        hit=Trajectory(steps, base, base_reps),
        drops=drops,
        units={"ffn": recs[0]["ffn"].numel(), "attn": recs[0]["attn"].numel(), "heads": recs[0]["heads"].numel()},
    )
