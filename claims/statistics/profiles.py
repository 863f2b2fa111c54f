"""Statistics of layer-importance profiles beside the paper's ρ_avg and σ_rel (lpi_core.metrics).

Each takes the profiles of a window's checkpoints, [R, checkpoints, layers] (R replicates), and
returns [R]; all in float64.

- σ_norm, the robust consolidation statistic: per layer the standard deviation over the
  checkpoints, averaged over the layers, divided by the profile's mean absolute importance
  (over layers and checkpoints): σ_norm = mean_l std_t(I_{l,t}) / mean_{l,t} |I_{l,t}|. The paper's
  σ_rel divides each layer by its own |mean|, so one layer whose mean is near 0 sets it alone.
- σ_rel's largest share: max_l c_l / Σ_l c_l of σ_rel's terms c_l = std_t / |mean_t|: above 1/2,
  one layer makes most of σ_rel.
- lock-in ρ: the Pearson correlation of the first checkpoint's profile with each later one,
  averaged ("once formed, the profile stays"), where ρ_avg only compares neighbours.
"""

from __future__ import annotations

import numpy as np

from lpi_core.metrics import pearson_rows


def sigma_norm_rows(profiles: np.ndarray) -> np.ndarray:
    """σ_norm of each row of [R, checkpoints, layers] (module docstring); NaN where the profile is all 0."""
    scale = np.abs(profiles).mean(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, profiles.std(1).mean(1) / np.where(scale > 0, scale, 1), np.nan)


def sigma_rel_largest_share_rows(profiles: np.ndarray) -> np.ndarray:
    """The largest layer's share of σ_rel's sum of per-layer terms, per row of [R, checkpoints, layers]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = profiles.std(1) / np.abs(profiles.mean(1))
        return terms.max(1) / terms.sum(1)


def lock_in_rho_rows(profiles: np.ndarray) -> np.ndarray:
    """Mean over t ≥ 1 of Pearson(profile_0, profile_t), per row of [R, checkpoints, layers] (≥ 2 checkpoints)."""
    if profiles.shape[1] < 2:
        raise ValueError(f"the lock-in correlation needs at least 2 checkpoints, not {profiles.shape[1]}")
    return np.mean([pearson_rows(profiles[:, 0], profiles[:, t]) for t in range(1, profiles.shape[1])], axis=0)
